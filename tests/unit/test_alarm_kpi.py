"""Alarm KPIs (EEMUA 191 / ISA-18.2) computed from a real alarm book: per operator
position (the crews of the demo notify.yaml) and per site, and as InfluxDB points."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.alarms.book import AlarmBook
from ingest.alarms.kpi import CrewOf, PositionRule, Positions, compute, kpi_lines
from ingest.alarms.model import AlarmKey, ConditionChange, Priority
from ingest.alarms.notify import NotifyConfig, load_notify_config
from ingest.alarms.notify.dispatch import route_for
from tests.conftest import ROOT

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


def _routes(config: NotifyConfig) -> CrewOf:
    """The notifier's routing, as the service hands it to the KPIs."""

    def crew_of(key: AlarmKey, priority: Priority) -> str | None:
        route = route_for(config, key, priority)
        return route.crew if route is not None else None

    return crew_of


def _parking_burst(book: AlarmBook) -> None:
    """Six gate alarms at Wanda and six lot-full alarms at Xingshui in one 10 minutes:
    no flood at either site, a flood for the one car-park crew that answers both."""
    gate = AlarmKey("wanda", "wanda_lot", "gate_1", "gate_stuck_open")
    for n in range(6):  # chattering too: 3 raises within a minute
        book.apply(change(gate, True, T0 + n * 25_000, Priority.MEDIUM))
        book.apply(change(gate, False, T0 + n * 25_000 + 5_000, Priority.MEDIUM))
    for n in range(6):
        lot = AlarmKey("xingshui", "xingshui_lot", f"lot_{n}", "lot_full")
        book.apply(change(lot, True, T0 + 200_000 + n * 30_000, Priority.LOW))


def test_positions_are_the_crews_the_notifier_routes_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACILITY_ACK_SECRET", "a-secret-for-the-kpi-test")
    notify = load_notify_config(ROOT / "deploy" / "alarms" / "notify.yaml")
    clock = Clock()
    book = AlarmBook(tmp_path / "alarms.sqlite", now_ms=clock)
    _parking_burst(book)
    tank = AlarmKey("fengshou", "xiba", "tank_no4", "tank_level_low")
    book.apply(change(tank, True, T0 + 60 * MIN))
    clock.now_ms = T0 + 62 * MIN
    book.acknowledge(tank, "li")
    # a site added before its route: the default route takes its high alarm to the
    # Fengshou crew; its low one no crew is told of, so it counts for the site
    book.apply(change(AlarmKey("gucheng", "well", "pump_1", "pump_trip"), True, T0 + 70 * MIN))
    local = AlarmKey("gucheng", "well", "pump_1", "pump_local_control")
    book.apply(change(local, True, T0 + 70 * MIN, Priority.LOW))
    crews = tuple(notify.crews)
    positions = Positions(crew_of=_routes(notify), known=crews)

    kpis = compute(book, until_ms=T0 + 24 * 60 * MIN, positions=positions, sites=["wanda"])
    by_position = {p.position: p for p in kpis.positions}
    assert set(by_position) == {*crews, "gucheng"}
    parking = by_position["parking"]
    assert (parking.alarms, parking.per_10min_peak, parking.flood_periods) == (12, 12, 1)
    assert parking.time_in_flood_pct == round(100 / 144, 2)
    assert parking.chattering == 1 and parking.raised == {
        "critical": 0,
        "high": 0,
        "medium": 6,
        "low": 6,
    }
    water = by_position["fengshou_water"]
    assert (water.alarms, water.acknowledged, water.ack_median_s) == (2, 1, 120.0)
    assert by_position["gucheng"].raised == {"critical": 0, "high": 0, "medium": 0, "low": 1}
    quiet = by_position["south_water"]
    assert (quiet.alarms, quiet.per_10min_average, quiet.ack_median_s) == (0, 0.0, None)
    # per site the same alarms are no flood: what the site dashboards keep showing
    by_site = {s.position: s for s in kpis.sites}
    assert (by_site["wanda"].alarms, by_site["wanda"].flood_periods) == (6, 0)
    assert (by_site["xingshui"].alarms, by_site["xingshui"].flood_periods) == (6, 0)
    assert "crew" in kpis.position_basis

    # the config's positions come first: the Wanda gate has a desk of its own
    desk = PositionRule("wanda_gate_desk", site=("wanda",), rule=("gate_*",))
    split = Positions((desk,), _routes(notify), crews)
    by_position = {
        p.position: p for p in compute(book, T0 + 24 * 60 * MIN, positions=split).positions
    }
    assert by_position["wanda_gate_desk"].alarms == 6
    assert (by_position["parking"].alarms, by_position["parking"].flood_periods) == (6, 0)
    book.close()


def test_rates_count_clock_intervals_whatever_the_window(tmp_path: Path) -> None:
    """11 alarms from 10:05 to 10:15 are 5 + 6 in the intervals 10:00 and 10:10, asked
    at 10:17 or at 10:21: a report and a dashboard agree on the peak."""
    book = AlarmBook(tmp_path / "alarms.sqlite", now_ms=Clock())
    start = T0 + 5 * MIN
    for i in range(11):
        key = AlarmKey("fengshou", "xiba", f"tank_{i}", "tank_level_low")
        book.apply(change(key, True, start + i * MIN))
    for end in (T0 + 17 * MIN, T0 + 21 * MIN, T0 + 24 * 60 * MIN):
        (site,) = compute(book, until_ms=end).sites
        assert (site.alarms, site.per_10min_peak, site.flood_periods) == (11, 6, 0)
    book.close()


def test_kpi_points_keep_each_fields_type(tmp_path: Path) -> None:
    """InfluxDB refuses a float where it stored an int: counts are always ints, rates and
    times always floats (60 s is 60.0), and no acknowledgement means no time field."""
    clock = Clock()
    book = AlarmBook(tmp_path / "alarms.sqlite", now_ms=clock)
    trip = AlarmKey("fengshou", "sankeshu", "pump_1", "pump_trip")
    book.apply(change(trip, True, T0, Priority.CRITICAL))
    clock.now_ms = T0 + 60_000
    book.acknowledge(trip, "li")
    book.apply(change(AlarmKey("wanda", "wanda_lot", "gate_1", "gate_stuck_open"), True, T0))
    kpis = compute(book, until_ms=T0 + 60 * MIN, sites=["fengshou", "wanda", "xingshui"])

    points = {line.split(" ", 1)[0]: _fields_of(line) for line in kpi_lines(kpis)}
    assert set(points) == {
        "alarm_kpi,site=fengshou",
        "alarm_kpi,site=wanda",
        "alarm_kpi,site=xingshui",
        "alarm_kpi_position,position=fengshou",
        "alarm_kpi_position,position=wanda",
    }
    fengshou = points["alarm_kpi,site=fengshou"]
    assert fengshou["raised_critical"] == "1i" and fengshou["raised_high"] == "0i"
    assert fengshou["ack_median_s"] == "60.0" and fengshou["ack_p90_s"] == "60.0"
    assert fengshou["acknowledged"] == "1i"
    quiet = points["alarm_kpi,site=xingshui"]
    assert "ack_median_s" not in quiet and "ack_p90_s" not in quiet
    for fields in points.values():
        for name in FLOAT_FIELDS & fields.keys():
            assert not fields[name].endswith("i") and "." in fields[name], (name, fields)
        for name in fields.keys() - FLOAT_FIELDS:
            assert fields[name].endswith("i"), (name, fields)
    book.close()


FLOAT_FIELDS = {"per_10min_average", "time_in_flood_pct", "ack_median_s", "ack_p90_s"}


def _fields_of(line: str) -> dict[str, str]:
    _, body, _ = line.split(" ")
    return dict(pair.split("=", 1) for pair in body.split(","))


@pytest.mark.parametrize(
    ("window_min", "alarms", "average"),
    [(19, 3, 3 / 1.9), (10, 3, 3.0), (5, 1, 2.0), (25, 14, 14 / 2.5), (24 * 60, 3, 3 / 144)],
)
def test_alarms_per_10_minutes_divides_by_the_windows_true_length(
    tmp_path: Path, window_min: int, alarms: int, average: float
) -> None:
    """3 alarms in 19 minutes are 1.58 per 10 minutes, not 3 per one whole period (the
    remainder's alarms were counted, its length was not); floods stay clock intervals
    and the time in flood never passes 100 %."""
    book = AlarmBook(tmp_path / "alarms.sqlite", now_ms=Clock())
    until = T0 + 24 * 60 * MIN
    since = until - window_min * MIN
    for i in range(alarms):
        key = AlarmKey("fengshou", "xiba", f"tank_{i}", "tank_level_low")
        book.apply(change(key, True, since + 1 + i * (window_min * MIN // alarms)))
    kpis = compute(book, until_ms=until, window_ms=window_min * MIN)
    [fengshou] = kpis.positions
    assert fengshou.alarms == alarms
    assert fengshou.per_10min_average == pytest.approx(average, abs=0.001)
    assert 0 <= fengshou.time_in_flood_pct <= 100
    book.close()


def test_a_flood_in_a_short_window_is_all_of_its_time_at_most(tmp_path: Path) -> None:
    book = AlarmBook(tmp_path / "alarms.sqlite", now_ms=Clock())
    until = T0 + 24 * 60 * MIN
    for i in range(12):
        key = AlarmKey("fengshou", "xiba", f"tank_{i}", "tank_level_low")
        book.apply(change(key, True, until - 4 * MIN + i * 1000))
    [fengshou] = compute(book, until_ms=until, window_ms=5 * MIN).positions
    assert (fengshou.flood_periods, fengshou.time_in_flood_pct) == (1, 100.0)
    assert fengshou.per_10min_average == 24.0
    book.close()
