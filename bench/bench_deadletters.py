"""What refused input costs: a huge refused batch at the ingest, and a flood of distinct
bad device messages at the gateway.

batch   one `up` batch of N rows (default 1,260,000: what fits the 64 MiB the wire allows
        inflated) that the ingest refuses row by row (an asset the site model lacks, as
        from a gateway configured ahead of the ingest), through the real decoder,
        Validator, InfluxStore and DeadLetters, inside an event loop with a 10 ms
        heartbeat: how long decoding and storing took, the longest the loop stood still
        (no health, no SIGTERM meanwhile), peak RSS, letters kept, the store's size.
        `--old` also times the letters written as before (a commit per row, on the loop)
        for 2,000 rows and extrapolates. The collector is tuned as `facility ingest run`
        tunes it.
flood   10,000 distinct bad device messages of 60 kB each (a map value the profile does
        not know, each different) into the gateway's MQTT device subscriber's handle():
        RSS before and after, bytes logged, size of the rejection counter.

    .venv/bin/python -m bench.bench_deadletters [--only batch,flood] [--rows N] [--old]

Each section runs in a fresh process (peak RSS is per process). No services needed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import DEMO, ROOT, memory_mb, print_header
from facility.clock import now_ms
from facility.config import load_site_config
from facility.wire import encode_rows


def refused_batch(rows: int) -> bytes:
    now = now_ms()
    body = [
        json.dumps(
            ["v", "pump_9", "flow_m3h", now - rows + i, 12.5 + i % 7, "g"], separators=(",", ":")
        )
        for i in range(rows)
    ]
    header = {
        "site": "fengshou",
        "station": "xiba",
        "boot": 1,
        "seq": 1,
        "lane": "backfill",
        "sent_ms": now,
    }
    return encode_rows(header, body, level=9)


class _NoWriter:
    async def write(self, lines: object) -> object:
        raise AssertionError("every row is refused: nothing to write")


async def _heartbeat(stalls: list[float]) -> None:
    last = time.perf_counter()
    while True:
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        stalls.append(now - last - 0.01)
        last = now


async def batch_section(rows: int, old: bool) -> dict[str, object]:
    from ingest.commands import tune_gc
    from ingest.deadletters import DeadLetters
    from ingest.receiver import decode
    from ingest.store import InfluxStore
    from ingest.validate import Validator

    config = load_site_config(DEMO)
    payload = refused_batch(rows)
    tune_gc()
    work = Path(tempfile.mkdtemp(prefix="bench-dl-"))
    dead = DeadLetters(work / "dead.sqlite")
    store = InfluxStore(Validator(config), _NoWriter(), dead)  # type: ignore[arg-type]
    base_rss = memory_mb()
    stalls: list[float] = []
    beat = asyncio.create_task(_heartbeat(stalls))
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    batch, bad = await decode(payload)  # as the receiver decodes
    t1 = time.perf_counter()
    decode_stall = max(stalls)
    late = sum(1 for s in stalls if s > 0.1)
    stalls.clear()
    result = await store(batch, bad)
    t2 = time.perf_counter()
    await asyncio.sleep(0.05)
    beat.cancel()
    out: dict[str, object] = {
        "rows": rows,
        "payload_mb": round(len(payload) / 1e6, 1),
        "decode_s": round(t1 - t0, 2),
        "store_s": round(t2 - t1, 2),
        "loop_max_stall_decode_s": round(decode_stall, 3),
        "loop_max_stall_store_s": round(max(stalls), 3),
        "loop_stalls_over_100ms": sum(1 for s in stalls if s > 0.1) + late,
        "rss_start_mb": round(base_rss),
        "rss_peak_mb": round(memory_mb(key="VmHWM")),
        "letters": dead.count(),
        "refused": result.refused,
        "store_file_mb": round(sum(p.stat().st_size for p in work.iterdir()) / 1e6, 1),
    }
    dead.close()
    if old:
        out["old_per_row_s"] = _old_way(work / "old.sqlite", batch, store, rows)
    return out


def _old_way(path: Path, batch: object, store: object, rows: int) -> dict[str, float]:
    """The letters as they were written before: autocommit, so every row its own commit."""
    from ingest.deadletters import LETTER_TABLE

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for statement in LETTER_TABLE:
        db.execute(statement)
    sample = 2_000
    t0 = time.perf_counter()
    for i in range(sample):
        db.execute(
            "INSERT INTO dead_letter (received_ms, site, station, kind, body, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (0, "fengshou", "xiba", "row", json.dumps(["v", "pump_9", "x", i, 1.0, "g"]), "x"),
        )
    took = time.perf_counter() - t0
    db.close()
    return {
        "sample_rows": sample,
        "sample_s": round(took, 2),
        "extrapolated_s": round(took * rows / sample, 1),
    }


def flood_section(messages: int, size: int) -> dict[str, object]:
    from facility.profile import MqttProfile
    from gateway.mqtt_devices.subscriber import MqttDevices, routes_for

    config = load_site_config(DEMO)
    profiles = {
        a.id: config.profiles[a.profile or ""]
        for a in config.site("wanda").station("wanda_lot").assets
        if isinstance(config.profiles.get(a.profile or ""), MqttProfile)
    }
    routes = routes_for("wanda", "wanda_lot", profiles)  # type: ignore[arg-type]
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    devices = MqttDevices("127.0.0.1", 1, "bench", routes, lambda readings: True)
    topic = next(t for t in routes if t.endswith("/state"))
    filler = "x" * (size - 40)
    before = memory_mb()
    t0 = time.perf_counter()
    for i in range(messages):
        devices.handle(topic, json.dumps({"barrier": f"{i}{filler}"}).encode())
    took = time.perf_counter() - t0
    import gc

    gc.collect()
    return {
        "messages": messages,
        "message_kb": size // 1000,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(memory_mb(), 1),
        "logged_kb": round(len(logged.getvalue()) / 1000, 1),
        "counter_keys": len(devices.rejected),
        "us_per_message": round(took / messages * 1e6),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--only", default="batch,flood")
    parser.add_argument("--rows", type=int, default=1_260_000)
    parser.add_argument("--old", action="store_true")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.section == "batch":
        print(json.dumps(asyncio.run(batch_section(args.rows, args.old))))
        return
    if args.section == "flood":
        print(json.dumps(flood_section(10_000, 60_000)))
        return
    print_header("sqlite")
    for section in args.only.split(","):
        extra = ["--rows", str(args.rows)] + (["--old"] if args.old else [])
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_deadletters", "--section", section, *extra],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        print(section, out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main(sys.argv[1:])
