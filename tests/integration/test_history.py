"""`facility history`: a simulated day delivered through the ingest's store and alarm
pipeline into a real InfluxDB (the session's `simulated_day`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.site import AssetKind
from ingest.config import Retention
from ingest.influx import InfluxV1Writer
from ingest.schema import init_database, measurements, rollup_range
from tests.history import HOUR_MS, SimulatedDay
from wiring.services import InfluxDB


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


def test_a_rollup_statement_per_measurement_gives_the_same_rows(influxdb: InfluxDB) -> None:
    """The simulated day rolls up a measurement a statement (half of influxd's CPU): the
    rows equal those of the one `FROM /.*/` statement (the continuous queries' form), for
    floats, integers, booleans and strings, points within a minute, several tag sets."""
    start = now_ms() - now_ms() % HOUR_MS - 24 * HOUR_MS  # within the raw retention
    lines = [
        f"pump,site=a,station=s{i % 2},asset=p{i % 3} flow=1.{i},starts={i}i,running={i % 2 == 0},"
        f'state="x{i}" {start + i * 7_000}'
        for i in range(900)
    ] + [f"tank,site=a,station=s0,asset=t level={i / 10} {start + i * 60_000}" for i in range(90)]

    async def rolled(database: str, per_measurement: bool) -> list[dict[str, Any]]:
        async with InfluxV1Writer(influxdb.url, database) as writer:
            await init_database(writer, database, Retention())
            await writer.write(lines)
            names = await measurements(writer, database) if per_measurement else []
            assert not per_measurement or names == ["pump", "tank"]
            await rollup_range(writer, database, start, start + 2 * HOUR_MS, HOUR_MS, names)
            answers = []
            for rp in ("rollup_1m", "rollup_1h"):
                q = f'SELECT * FROM "{rp}"./.*/ GROUP BY *'
                answers += (await writer.query(q))["results"][0]["series"]
            return answers

    one, each = asyncio.run(rolled("one", False)), asyncio.run(rolled("each", True))
    assert one == each
    # both policies: the pump's six tag sets and the tank's one, every minute with data
    assert [s["name"] for s in one].count("pump") == 2 * 6 and len(one) == 2 * 7
    assert sum(len(s["values"]) for s in one if s["name"] == "tank") == 90 + 2
    assert {"mean_flow", "max_starts", "min_running"} <= set(one[0]["columns"])
