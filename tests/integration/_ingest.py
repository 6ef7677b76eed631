"""Wiring for ingest tests: an ingest config file pointed at private servers, the
`facility ingest run` process, and what InfluxDB holds for a station."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from facility.config import SiteConfig
from facility.wire import Reading
from ingest.deadletters import DeadLetters
from ingest.influx import InfluxV1Writer
from ingest.receiver import Receiver
from ingest.store import InfluxStore
from ingest.validate import Validator

DB = "facility"
SITE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo"
NOT_READINGS = frozenset(("device_status", "gateway_health", "ingest_health"))
TAGS = frozenset(("site", "station", "asset"))
StoredKey = tuple[str, str, int]  # asset, signal, ts_ms


def write_ingest_config(
    folder: Path,
    broker_port: int,
    influx_url: str,
    client_id: str = "ingest-test",
    sites: Sequence[str] = (),
    shared_group: str | None = None,
    site_dir: Path = SITE_DIR,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subscription: dict[str, object] = {"sites": list(sites)}
    if shared_group:
        subscription["shared_group"] = shared_group
    settings = {
        "site_config": str(site_dir),
        "client_id": client_id,
        "broker": {"host": "127.0.0.1", "port": broker_port},
        "subscription": subscription,
        "influxdb": {"api": "v1", "url": influx_url, "database": DB},
        "write": {"max_retries": 2, "backoff_cap_s": 0.5, "timeout_s": 5},
        "data_dir": str(folder / "data"),
        "health_every_s": 1,
    }
    path = folder / "ingest.yaml"
    path.write_text(yaml.safe_dump({"ingest": settings}))
    return path


def start_ingest(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "wiring.cli", "ingest", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def read_log_until(process: subprocess.Popen[bytes], text: str, timeout_s: float) -> str:
    """The process's stderr up to and including `text` (its signal handlers are in place
    once it logs that it serves): a fixed sleep loses to a slow start on a busy machine."""
    assert process.stderr is not None
    fd, seen = process.stderr.fileno(), b""
    deadline = time.monotonic() + timeout_s
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or process.poll() is not None:
            raise AssertionError(f"{text!r} not logged in {timeout_s} s:\n{seen.decode()}")
        if select.select([fd], [], [], min(left, 0.5))[0]:
            seen += os.read(fd, 65536)
    return seen.decode()


async def stored_readings(writer: InfluxV1Writer, station: str) -> dict[StoredKey, object]:
    """Every field value InfluxDB holds for a station's assets, by (asset, signal, ts)."""
    answer = await writer.query(f"SELECT * FROM /.*/ WHERE \"station\" = '{station}'")
    out: dict[StoredKey, object] = {}
    for series in answer["results"][0].get("series", []):
        if series["name"] in NOT_READINGS:
            continue
        columns = series["columns"]
        for row in series["values"]:
            asset = row[columns.index("asset")]
            for name, value in zip(columns[1:], row[1:], strict=True):
                if name not in TAGS and value is not None:
                    out[(asset, name, row[0])] = value
    return out


def acquired(readings: list[Reading]) -> dict[StoredKey, object]:
    """What the gateway acquired that InfluxDB should hold: values, not status/health."""
    return {
        (r.asset, r.signal, r.ts_ms): r.value
        for r in readings
        if r.kind == "v" and r.value is not None
    }


async def ingest_into_influx(
    config: SiteConfig, broker_port: int, influx_url: str, dead: DeadLetters
) -> tuple[InfluxV1Writer, Receiver]:
    """A real ingest on a fresh `facility` database, refusals into `dead`; not started."""
    writer = InfluxV1Writer(influx_url, "facility", max_retries=0)
    await writer.create_database("facility")
    store = InfluxStore(Validator(config), writer, dead)
    return writer, Receiver("127.0.0.1", broker_port, store, quarantine=dead.add_batch)
