"""When an MQTT device's reading happened: the device's own clock if the profile names it
and it is believable, else the gateway's receipt stamp, never twice the same per series."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from facility.profile import MqttSignal, MqttTimestamp
from gateway.mqtt_devices.subscriber import (
    MAX_AHEAD_MS,
    ReceiptStamps,
    TopicRoute,
    map_message,
)

NOW = 1_780_000_000_000  # 2026-05-28T20:26:40Z
DAY = 86_400_000
SIGNAL = MqttSignal(name="occupied", topic="t", json_path="$.occupied", type="int")


def route(unit: str) -> TopicRoute:
    return TopicRoute("lot", [SIGNAL], MqttTimestamp(json_path="$.ts", unit=unit))


def read(unit: str, ts: object) -> tuple[int | None, str]:
    mapped = map_message(route(unit), json.dumps({"ts": ts, "occupied": 3}).encode(), NOW, DAY)
    return mapped.device_ms, mapped.clock_problem[1] if mapped.clock_problem else ""


@pytest.mark.parametrize(
    "unit, ts, expected",
    [
        ("ms", NOW - 1234, NOW - 1234),
        ("ms", float(NOW - 1234) + 0.4, NOW - 1234),
        ("s", (NOW - 3000) // 1000, NOW - 3000),
        ("s", (NOW - 2500) / 1000, NOW - 2500),
        ("iso8601", "2026-05-28T20:26:39.250Z", NOW - 750),
        ("iso8601", "2026-05-29T04:26:39.250+08:00", NOW - 750),
        ("ms", NOW + MAX_AHEAD_MS, NOW + MAX_AHEAD_MS),  # at the bound: still believed
    ],
)
def test_a_believable_device_clock_is_used(unit: str, ts: object, expected: int) -> None:
    assert read(unit, ts) == (expected, "")


@pytest.mark.parametrize(
    "unit, ts, reason",
    [
        ("ms", NOW + MAX_AHEAD_MS + 1, "device clock 60.0 s ahead of the gateway's (limit 60.0 s)"),
        ("ms", NOW - 3 * DAY, "device clock 3 days behind the gateway's (limit 24 h)"),
        ("ms", 0, "device clock 20601 days behind the gateway's (limit 24 h)"),
        ("ms", 10**300, "device clock over a million days ahead"),
        ("s", NOW, "device clock over a million days ahead"),  # ms sent as s
        ("ms", True, "timestamp $.ts: expected epoch ms, got bool"),
        ("ms", "1780000000000", "timestamp $.ts: expected epoch ms, got str"),
        ("ms", None, "timestamp $.ts: expected epoch ms, got NoneType"),
        ("iso8601", "2026-05-28T20:26:39", "has no UTC offset"),
        ("iso8601", "yesterday", "'yesterday' is not ISO 8601"),
        ("iso8601", "2" * 500, "timestamp $.ts: expected ISO 8601 text"),
        ("iso8601", NOW, "timestamp $.ts: expected ISO 8601 text"),
    ],
)
def test_an_absurd_or_unreadable_device_clock_says_why(unit: str, ts: object, reason: str) -> None:
    device_ms, problem = read(unit, ts)
    assert device_ms is None
    assert reason in problem


def test_infinity_and_a_missing_clock_are_named() -> None:
    payload = b'{"ts": 1e400, "occupied": 3}'
    mapped = map_message(route("ms"), payload, NOW, DAY)
    assert mapped.clock_problem == ("unreadable", "timestamp $.ts: not a finite number")
    mapped = map_message(route("ms"), b'{"occupied": 3}', NOW, DAY)
    assert mapped.clock_problem == ("missing", "no timestamp at $.ts")
    assert [(r.signal, r.ts_ms, r.value) for r in mapped.readings("lot", NOW)] == [
        ("occupied", NOW, 3)
    ]


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 50)), max_size=200))
def test_receipt_stamps_strictly_increase_per_series(arrivals: list[tuple[str, int]]) -> None:
    """However many readings arrive in one ms (or the clock steps back), a series never
    gets the same stamp twice, and a stamp is never before its receipt."""
    stamps = ReceiptStamps()
    given_out: dict[str, list[int]] = {"a": [], "b": []}
    for signal, now in arrivals:
        ts = stamps.stamp("lot", signal, NOW + now)
        assert ts >= NOW + now
        given_out[signal].append(ts)
    for series in given_out.values():
        assert series == sorted(set(series))
