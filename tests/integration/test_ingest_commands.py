"""`facility ingest init | rollup | dead-letters list | replay` against a real InfluxDB."""

from __future__ import annotations

import asyncio
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from facility.clock import now_ms
from facility.wire import Batch, Reading
from ingest.config import load_ingest_config
from ingest.deadletters import DeadLetters, LetterKind
from ingest.influx import InfluxV1Writer
from ingest.store import InfluxStore
from ingest.validate import Validator
from tests.integration._ingest import DB, SITE_DIR, write_ingest_config
from wiring.cli import app
from wiring.services import InfluxDB

cli = CliRunner()
NOW = now_ms() // 3_600_000 * 3_600_000 - 3 * 3_600_000  # a whole hour


def ingest(*args: str) -> Any:
    result = cli.invoke(app, ["ingest", *args])
    assert result.exit_code == 0, result.output
    return result


def query(url: str, q: str) -> list[Any]:
    async def run() -> list[Any]:
        async with InfluxV1Writer(url, DB) as writer:
            answer = await writer.query(q)
        series = answer["results"][0].get("series", [])
        return [row for s in series for row in s["values"]]

    return asyncio.run(run())


def test_init_creates_policies_and_rollup_queries_and_a_rerun_changes_nothing(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    config = write_ingest_config(tmp_path, 1883, influxdb.url)
    first = ingest("init", "--config", str(config)).output
    assert "6 statement(s)" in first and "CREATE CONTINUOUS QUERY" in first
    policies = {row[0]: (row[1], row[4]) for row in query(influxdb.url, "SHOW RETENTION POLICIES")}
    assert policies["raw"] == ("2160h0m0s", True)  # 90 days, the default
    assert policies["rollup_1m"] == ("9600h0m0s", False)  # 400 days
    assert policies["rollup_1h"] == ("0s", False)  # forever
    queries = query(influxdb.url, "SHOW CONTINUOUS QUERIES")
    assert sorted(name for name, _ in queries) == ["rollup_1h", "rollup_1m"]
    assert "1 statement(s)" in ingest("init", "--config", str(config)).output

    text = yaml.safe_load(config.read_text())
    text["ingest"]["retention"] = {"raw_days": 30}
    config.write_text(yaml.safe_dump(text))
    changed = ingest("init", "--config", str(config)).output
    assert 'ALTER RETENTION POLICY "raw"' in changed and "2 statement(s)" in changed


def test_rollup_fills_1_minute_and_1_hour_means_for_a_late_backlog(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    config = write_ingest_config(tmp_path, 1883, influxdb.url)
    ingest("init", "--config", str(config))
    # two hours of one pump at 1 Hz: minute m has flow m (0..119), running true throughout
    lines = [
        f"pump,site=fengshou,station=xiba,asset=pump_1 flow_m3h={s // 60}.0,running=true "
        f"{NOW + s * 1000}"
        for s in range(7200)
    ]

    async def write() -> None:
        async with InfluxV1Writer(influxdb.url, DB) as writer:
            assert (await writer.write(lines)).written == len(lines)

    asyncio.run(write())
    since, until = _iso(NOW), _iso(NOW + 7_200_000)
    out = ingest("rollup", "--config", str(config), "--since", since, "--until", until).output
    assert "122 rollup points written" in out  # 120 minutes + 2 hours
    minutes = query(
        influxdb.url,
        'SELECT "mean_flow_m3h", "max_running" FROM "rollup_1m"."pump" WHERE "asset" = \'pump_1\'',
    )
    assert [row[1] for row in minutes] == [float(m) for m in range(120)]
    assert all(row[2] is True for row in minutes)
    hours = query(influxdb.url, 'SELECT "mean_flow_m3h", "max_flow_m3h" FROM "rollup_1h"."pump"')
    assert [row[1:] for row in hours] == [[29.5, 59.0], [89.5, 119.0]]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000))


def test_dead_letters_are_listed_and_replayed_once_their_cause_is_fixed(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    """Three letters: a reading of an asset the site model lacks, a line InfluxDB refuses
    (the field exists with another type), an undecodable batch. Fix the first two (put
    the asset back, drop the old series) and replay: they land, the third stays."""
    site_dir = tmp_path / "site"
    shutil.copytree(SITE_DIR, site_dir)
    fengshou = site_dir / "fengshou.yaml"
    original = fengshou.read_text()
    fengshou.write_text(_without_pump_2(original))
    config_file = write_ingest_config(tmp_path, 1883, influxdb.url, site_dir=site_dir)
    config = load_ingest_config(config_file)
    asyncio.run(_make_letters(config.dead_letters_path, config.site, influxdb.url))

    listed = ingest("dead-letters", "list", "--config", str(config_file)).output
    assert "unknown asset 'pump_2'" in listed and "3 pending" in listed
    assert "field type conflict" in listed and "not zlib-compressed JSON" in listed

    fengshou.write_text(original)
    query(influxdb.url, 'DROP MEASUREMENT "transformer"')
    result = cli.invoke(app, ["ingest", "dead-letters", "replay", "--config", str(config_file)])
    assert result.exit_code == 1 and "2 replayed, 1 refused again" in result.output
    assert query(influxdb.url, 'SELECT "flow_m3h" FROM "pump"') == [[NOW, 55.5]]
    assert query(influxdb.url, 'SELECT "load_pct" FROM "transformer"') == [[NOW, 42.5]]
    dead = DeadLetters(config.dead_letters_path)
    [left] = dead.latest(pending_only=True)
    assert left.kind is LetterKind.BATCH and dead.count(pending_only=False) == 3
    again = ingest("dead-letters", "list", "--config", str(config_file), "--all").output
    assert "1 pending, 3 in all" in again


def _without_pump_2(text: str) -> str:
    start = text.index("      - {id: pump_2")
    end = text.index("      - {id: pump_3")
    return text[:start] + text[end:]


async def _make_letters(path: Path, site: Any, url: str) -> None:
    async with InfluxV1Writer(url, DB) as writer:
        await writer.create_database(DB)
        await writer.write(
            [f"transformer,asset=transformer,site=fengshou,station=xiba load_pct=1i {NOW - 1}"]
        )
        store = InfluxStore(Validator(site), writer, DeadLetters(path))
        batch = Batch(
            "fengshou",
            "xiba",
            1,
            1,
            "live",
            NOW,
            [
                Reading("pump_2", "flow_m3h", NOW, 55.5),
                Reading("transformer", "load_pct", NOW, 42.5),
            ],
        )
        await store(batch)
        store.dead_letters.add_batch(
            "fengshou", "xiba", zlib.compress(b"{oops"), "not zlib-compressed JSON: oops"
        )
