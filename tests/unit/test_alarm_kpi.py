"""Alarm KPIs (EEMUA 191 / ISA-18.2) computed from a real alarm book."""

from __future__ import annotations

from pathlib import Path

from ingest.alarms.book import AlarmBook
from ingest.alarms.kpi import compute, kpi_lines
from ingest.alarms.model import AlarmKey, ConditionChange, Priority

T0 = 1_780_264_800_000
MIN = 60_000


class Clock:
    def __init__(self) -> None:
        self.now_ms = T0

    def __call__(self) -> int:
        return self.now_ms


def change(
    key: AlarmKey, active: bool, at_ms: int, priority: Priority = Priority.HIGH
) -> ConditionChange:
    return ConditionChange(key, active, at_ms, priority, key.rule)


def test_flood_chatter_stale_priorities_and_time_to_acknowledge(tmp_path: Path) -> None:
    clock = Clock()
    book = AlarmBook(tmp_path / "alarms.sqlite", now_ms=clock)
    # a flood at fengshou: 12 tanks' alarms within one 10-minute interval
    for i in range(12):
        book.apply(
            change(
                AlarmKey("fengshou", "xiba", f"tank_{i}", "tank_level_low"), True, T0 + i * 10_000
            )
        )
    # a chattering gate at wanda: raised three times within a minute
    gate = AlarmKey("wanda", "wanda_lot", "gate_1", "gate_stuck_open")
    for n in range(3):
        book.apply(change(gate, True, T0 + n * 20_000, Priority.MEDIUM))
        book.apply(change(gate, False, T0 + n * 20_000 + 5_000, Priority.MEDIUM))
    # acknowledged 30 s and 90 s after raising
    trip = AlarmKey("fengshou", "sankeshu", "pump_1", "pump_trip")
    book.apply(change(trip, True, T0 + 30 * MIN, Priority.CRITICAL))
    clock.now_ms = T0 + 30 * MIN + 30_000
    book.acknowledge(trip, "li")
    dry = AlarmKey("fengshou", "sankeshu", "pump_2", "pump_dry_run")
    book.apply(change(dry, True, T0 + 40 * MIN, Priority.CRITICAL))
    clock.now_ms = T0 + 40 * MIN + 90_000
    book.acknowledge(dry, "li")
    # standing for more than a day
    old = AlarmKey("huilongba", "nongken", "transformer", "transformer_overload_sustained")
    book.apply(change(old, True, T0 - 30 * 60 * MIN))

    kpis = compute(book, until_ms=T0 + 24 * 60 * MIN, window_ms=25 * 60 * MIN)
    fengshou = next(p for p in kpis.positions if p.position == "fengshou")
    assert (fengshou.alarms, fengshou.per_10min_peak, fengshou.flood_periods) == (14, 12, 1)
    assert fengshou.per_10min_average == round(14 / 150, 3)
    assert kpis.chattering == [str(gate)]
    assert kpis.stale == [str(old)]
    assert kpis.priorities == {"critical": 2, "high": 12, "medium": 3, "low": 0}
    assert kpis.acknowledged == 2 and kpis.ack_median_s == 60.0 and kpis.ack_p90_s == 90.0
    lines = kpi_lines(kpis)
    assert any(line.startswith("alarm_kpi,site=fengshou alarms=14i,") for line in lines)
    book.close()


def test_stale_alarms_are_those_standing_at_the_windows_end(tmp_path: Path) -> None:
    """A report on an earlier day lists what was stale then, not what is stale now."""
    clock = Clock()
    book = AlarmBook(tmp_path / "alarms.sqlite", now_ms=clock)
    until = T0 + 24 * 60 * MIN
    # stale at `until` (raised 54 h before it), cleared since: gone from today's list
    old = AlarmKey("huilongba", "nongken", "transformer", "transformer_overload_sustained")
    book.apply(change(old, True, T0 - 30 * 60 * MIN))
    book.apply(change(old, False, until + 60 * MIN))
    # raised 2 h before `until`: not stale then, though it is by the clock now
    young = AlarmKey("fengshou", "xiba", "tank_1", "tank_level_low")
    book.apply(change(young, True, until - 2 * 60 * MIN))
    # cleared before `until`: not standing then
    gone = AlarmKey("fengshou", "xiba", "pump_1", "pump_trip")
    book.apply(change(gone, True, T0 - 40 * 60 * MIN))
    book.apply(change(gone, False, until - 60 * MIN))
    clock.now_ms = until + 3 * 24 * 60 * MIN

    assert compute(book, until_ms=until).stale == [str(old)]
    # as of now the same reconstruction gives what the book's current state says
    now = compute(book, until_ms=clock.now_ms).stale
    assert now == [str(a.key) for a in book.active() if a.active] == [str(young)]
    book.close()
