"""`facility history`: a simulated day delivered through the ingest's store and alarm
pipeline into a real InfluxDB (the session's `simulated_day`)."""

from __future__ import annotations

from typing import Any

import pytest

from facility.config import SiteConfig
from facility.site import AssetKind
from tests.history import SimulatedDay


def query(day: SimulatedDay, q: str) -> list[dict[str, Any]]:
    return list(day.statement(q).get("series", []))


def between(day: SimulatedDay) -> str:
    return f"time >= {day.result.start_ms}ms AND time < {day.result.end_ms}ms"


def test_every_reading_of_the_day_is_stored(simulated_day: SimulatedDay) -> None:
    result = simulated_day.result
    assert result.readings > 1_000_000
    assert (result.stored, result.refused) == (result.readings, 0)


def test_each_pump_has_a_point_every_poll_and_a_rollup_every_minute(
    simulated_day: SimulatedDay, demo_config: SiteConfig
) -> None:
    pumps = [
        a
        for s in demo_config.sites
        for st in s.stations
        for a in st.assets
        if a.kind == AssetKind.PUMP
    ]
    polls = round(86_400 / simulated_day.poll_s)
    raw = query(
        simulated_day,
        f'SELECT count("flow_m3h") FROM "pump" WHERE {between(simulated_day)} '
        'GROUP BY "station", "asset"',
    )
    assert len(raw) == len(pumps)
    assert {s["values"][0][1] for s in raw} == {polls}
    rolled = query(
        simulated_day,
        f'SELECT count("mean_flow_m3h") FROM "rollup_1m"."pump" WHERE {between(simulated_day)}',
    )
    assert rolled[0]["values"][0][1] == len(pumps) * 1440


def test_stored_counters_end_where_the_physics_ended(simulated_day: SimulatedDay) -> None:
    last = query(
        simulated_day,
        f'SELECT last("run_hours") FROM "pump" WHERE {between(simulated_day)} '
        'GROUP BY "site", "station", "asset"',
    )
    assert last
    for series in last:
        tags = series["tags"]
        truth = simulated_day.result.truth_end[(tags["site"], tags["station"], tags["asset"])]
        assert series["values"][0][1] == pytest.approx(float(truth["run_hours"]), abs=0.1)


def test_the_days_incidents_are_alarm_events_acknowledged_by_the_crew(
    simulated_day: SimulatedDay,
) -> None:
    expected = {
        (e.alarm, e.asset or f.target.split("/")[2])
        for f in simulated_day.scenario.faults
        for e in f.expectations
    }
    raised = query(
        simulated_day,
        f'SELECT "message" FROM "alarm_event" WHERE "event" = \'raised\' '
        f'AND {between(simulated_day)} GROUP BY "rule", "asset"',
    )
    got = {(s["tags"]["rule"], s["tags"]["asset"]) for s in raised}
    assert got == expected
    acked = query(
        simulated_day,
        f'SELECT "user" FROM "alarm_event" WHERE "event" = \'acknowledged\' '
        f"AND {between(simulated_day)}",
    )
    assert {row[1] for row in acked[0]["values"]} == {"crew.simulated"}
