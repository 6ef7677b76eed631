"""Report by exception: what is sent, what is held back, and that silence has a limit."""

from __future__ import annotations

from facility.wire import Reading, Value
from gateway.normalise import ReportByException


def values(
    rbe: ReportByException, series: list[tuple[int, Value]], signal: str = "flow"
) -> list[Value]:
    out: list[Value] = []
    for ts, value in series:
        out += [r.value for r in rbe.filter([Reading("pump_1", signal, ts, value)])]
    return out


def test_off_passes_everything() -> None:
    rbe = ReportByException(enabled=False, max_silence_ms=1000)
    assert values(rbe, [(0, 1.0), (1, 1.0), (2, 1.0)]) == [1.0, 1.0, 1.0]


def test_deadband_holds_small_moves_and_sends_big_ones() -> None:
    rbe = ReportByException(True, 60_000, {("pump_1", "flow"): 0.5})
    sent = values(rbe, [(0, 10.0), (1, 10.3), (2, 10.49), (3, 10.6), (4, 10.7), (5, 11.2)])
    assert sent == [10.0, 10.6, 11.2]  # compared with the last value sent, not the last seen
    assert rbe.suppressed == 3


def test_max_silence_sends_an_unchanged_value_again() -> None:
    rbe = ReportByException(True, 1000, {("pump_1", "flow"): 0.5})
    sent = values(rbe, [(0, 5.0), (400, 5.0), (999, 5.0), (1000, 5.0), (1500, 5.0), (2000, 5.0)])
    assert sent == [5.0, 5.0, 5.0]


def test_without_deadband_any_change_is_sent() -> None:
    rbe = ReportByException(True, 60_000)
    assert values(rbe, [(0, True), (1, True), (2, False), (3, False), (4, "x")], "running") == [
        True,
        False,
        "x",
    ]


def test_status_and_health_always_pass() -> None:
    rbe = ReportByException(True, 60_000)
    readings = [Reading("pump_1", "comm_ok", t, True, "g", "s") for t in range(3)]
    readings += [Reading("gateway", "rss_mb", t, 40.0, "g", "h") for t in range(3)]
    assert rbe.filter(readings) == readings
