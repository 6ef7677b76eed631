"""`facility history` against a private InfluxDB: what it refuses is filed under the
station that sent it, whoever's batch flushed the pooled write; and a scenario's own
start is where the history begins."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from facility.clock import now_ms
from facility.config import SiteConfig
from ingest.config import Retention
from ingest.deadletters import DeadLetters, LetterKind
from ingest.influx import InfluxV1Writer
from ingest.schema import init_database
from simulators.scenario import NOMINAL, Scenario
from tests.conftest import DEMO_SITE, ROOT
from tests.integration._wire import subset_config
from wiring.history import InfluxTarget, SimulatedHistory, fill_influx, history_start
from wiring.services import InfluxDB

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
DB = "facility"


def hours_ago(n: int) -> int:
    return now_ms() // HOUR_MS * HOUR_MS - n * HOUR_MS


def query(influxdb: InfluxDB, q: str) -> list[dict[str, Any]]:
    params = {"db": DB, "q": q, "epoch": "ms"}
    answer = httpx.get(f"{influxdb.url}/query", params=params, timeout=30).json()
    return list(answer["results"][0].get("series", []))


async def clo2_as_text(influxdb: InfluxDB, at_ms: int) -> None:
    """A string where the history writes a float: InfluxDB refuses every ClO2 line of
    that shard (a field keeps one type), and only Chaheihai writes any here."""
    writer = InfluxV1Writer(influxdb.url, DB)
    try:
        await init_database(writer, DB, Retention())
        result = await writer.write(
            [f'water_quality,site=elsewhere,station=x,asset=y clo2_residual_mg_l="n/a" {at_ms}']
        )
        assert result.written == 1
    finally:
        await writer.close()


async def test_refused_lines_are_filed_under_their_own_station_whoever_flushed(
    influxdb: InfluxDB, demo_config: SiteConfig, tmp_path: Path
) -> None:
    """Chaheihai's ClO2 lines are refused; pooled writes of 500 lines are flushed by
    Chaheihai's batches and by Xingshui's (the car park, many gate passages): every
    refused line is a dead letter of chaheihai/chaheihai_intake, none of xingshui."""
    config = subset_config(
        demo_config, {"chaheihai": ["chaheihai_intake"], "xingshui": ["xingshui_lot"]}
    )
    start_ms = hours_ago(4)
    await clo2_as_text(influxdb, start_ms)
    history = SimulatedHistory(config, NOMINAL, start_ms, poll_s=60.0)
    target = InfluxTarget(influxdb.url, DB)
    result = await fill_influx(history, target, tmp_path, None, 3 * 3600, pool_lines=500)
    letters = DeadLetters(tmp_path / "dead-letters.sqlite")
    try:
        found = letters.latest(limit=10_000)
    finally:
        letters.close()
    assert len(found) == result.refused == 3 * 60  # one ClO2 point a poll
    assert {(d.site, d.station) for d in found} == {("chaheihai", "chaheihai_intake")}
    assert all(d.kind is LetterKind.LINE and "field type conflict" in d.reason for d in found)
    assert all(d.body.startswith("water_quality,") for d in found)
    stored = query(influxdb, 'SELECT count("occupied") FROM "parking_lot"')
    assert stored[0]["values"][0][1] > 100, "Xingshui's own lines landed"


SCENARIO = """
scenario: night_trip
start: "2026-06-01T02:00:00+08:00"
faults:
  - {kind: pump_trip, target: chaheihai/chaheihai_intake/pump_1, at: 20m, duration: 10m,
     params: {fault_code: 3}, expect: {alarm: pump_trip, priority: high, within: 1m}}
"""
PLUS_8 = timezone(timedelta(hours=8))


def test_facility_history_begins_at_the_scenarios_own_start(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    """The scenario starts at 02:00 (+08:00) on a day older than InfluxDB keeps raw
    data: the history runs at 02:00 on the last day it fits before now, and the trip
    20 minutes in is stored at the poll after 20 minutes from that start."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "chaheihai.yaml").write_text((DEMO_SITE / "chaheihai.yaml").read_text())
    scenario = tmp_path / "night_trip.yaml"
    scenario.write_text(SCENARIO)
    done = subprocess.run(
        [sys.executable, "-m", "wiring.cli", "history", str(site), "--influx-url",
         influxdb.url, "--scenario", str(scenario), "--duration", "1h", "--data-dir",
         str(tmp_path / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is older than the retention: the same time of day on" in done.stdout
    [first] = query(influxdb, 'SELECT first("flow_m3h") FROM "pump"')
    start_ms = first["values"][0][0]
    begun = datetime.fromtimestamp(start_ms / 1000, PLUS_8)
    assert (begun.hour, begun.minute, begun.second) == (2, 0, 0)
    assert 0 < now_ms() - (start_ms + HOUR_MS) < DAY_MS
    [trip] = query(influxdb, 'SELECT first("fault_code") FROM "pump" WHERE "fault_code" = 3')
    assert 20 * 60_000 <= trip["values"][0][0] - start_ms <= 21 * 60_000  # the next poll
    [last] = query(influxdb, 'SELECT last("flow_m3h") FROM "pump"')
    assert last["values"][0][0] == start_ms + 59 * 60_000


def test_where_a_history_starts() -> None:
    now = int(datetime(2026, 12, 6, 10, 30, tzinfo=UTC).timestamp() * 1000)
    old = Scenario.model_validate({"scenario": "s", "start": "2026-06-01T06:00:00+08:00"})
    recent = Scenario.model_validate({"scenario": "s", "start": "2026-12-01T06:00:00+08:00"})
    later = Scenario.model_validate({"scenario": "s", "start": "2026-12-06T17:00:00+08:00"})
    assert history_start(123, old, 3600, now).start_ms == 123  # --start wins
    assert history_start(None, NOMINAL, 3600, now).start_ms == now - HOUR_MS
    assert history_start(None, recent, DAY_MS / 1000, now) == history_start(
        None, recent, 86_400, now, keep_days=0
    )
    kept = history_start(None, recent, 86_400, now)
    assert kept.start_ms == int(datetime(2026, 12, 1, 6, tzinfo=PLUS_8).timestamp() * 1000)
    assert not kept.note
    moved = history_start(None, old, 86_400, now)  # 06:00 +08:00 on 12-05 ends 12-05 22:00Z
    assert moved.start_ms == int(datetime(2026, 12, 5, 6, tzinfo=PLUS_8).timestamp() * 1000)
    assert "older than the retention" in moved.note
    future = history_start(None, later, 3600, now)  # today 17:00 +08:00 is 09:00Z: ended
    assert future.start_ms == int(datetime(2026, 12, 6, 17, tzinfo=PLUS_8).timestamp() * 1000)
    tomorrow = history_start(None, later, 6 * 3600, now)  # would end 15:00Z: a day earlier
    assert tomorrow.start_ms == future.start_ms - DAY_MS and "in the future" in tomorrow.note
