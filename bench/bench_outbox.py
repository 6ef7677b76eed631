"""How fast the gateway outbox stores and drains readings, and what they cost on disk.

Prints: put throughput (readings/s, one core) for chunks of 50 and 500 readings under
each sync policy; the backfill drain rate (take + ack); a live-lane take behind a large
backlog; open and stats() times with that backlog; file size per million readings.
The readings look like a station's: 50 signals a device, values with two decimals,
timestamps a poll apart. Runs in well under a minute.

    .venv/bin/python -m bench.bench_outbox
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import print_header, scratch_dir
from facility.wire import Reading
from gateway.outbox import Outbox, OutboxConfig

START_MS = 1_780_264_800_000
PUT_SECONDS = 1.5  # per measurement: enough for a steady rate, short enough for the budget
BACKLOG = 1_000_000


def polls(size: int, seed: int = 1) -> Iterator[list[Reading]]:
    """Endless device polls of `size` signals each, 5 s apart per device."""
    rnd = random.Random(seed)
    level = [rnd.uniform(0, 500) for _ in range(size)]
    ts = START_MS
    device = 0
    while True:
        device = (device + 1) % 20
        ts += 250  # 20 devices polled every 5 s
        for i in range(size):
            level[i] += rnd.gauss(0, 1)
        yield [
            Reading(f"pump_{device}", f"signal_{i:02d}", ts + i % 7, round(level[i], 2))
            for i in range(size)
        ]


def put_rate(tmp: Path, size: int, sync: str, compress: bool = True) -> float:
    source = polls(size)
    chunks = [next(source) for _ in range(400)]  # built before timing: only put() is timed
    path = tmp / f"put-{size}-{sync}-{compress}.db"
    config = OutboxConfig(sync=sync, compress=compress)  # type: ignore[arg-type]
    with Outbox(path, config, clock=lambda: START_MS) as outbox:
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < PUT_SECONDS:
            for chunk in chunks[:50]:
                outbox.put(chunk)
            count += 50 * size
            chunks.append(chunks.pop(0))
        return count / (time.perf_counter() - t0)


def fill(path: Path, size: int, readings: int, compress: bool = True) -> None:
    config = OutboxConfig(sync="off", compress=compress, max_bytes=2**40)
    source = polls(size)
    with Outbox(path, config, clock=lambda: START_MS) as outbox:
        for _ in range(readings // size):
            outbox.put(next(source))


def file_size(tmp: Path, size: int, compress: bool) -> tuple[float, float]:
    """MB of file per million readings, and file size over the bytes max_bytes counts."""
    path = tmp / f"size-{size}-{compress}.db"
    fill(path, size, 200_000, compress)
    on_disk = path.stat().st_size  # closed: checkpointed, no -wal left
    with Outbox(path, OutboxConfig(max_bytes=2**40, compress=compress)) as outbox:
        counted = outbox.stats().bytes
    return on_disk / 1e6 * 5, on_disk / counted


def backlog_figures(tmp: Path) -> dict[str, float]:
    path = tmp / "backlog.db"
    fill(path, 50, BACKLOG)
    t0 = time.perf_counter()
    outbox = Outbox(path, OutboxConfig(max_bytes=2**40), clock=lambda: START_MS)
    figures = {"open_ms": (time.perf_counter() - t0) * 1000}
    t0 = time.perf_counter()
    outbox.stats()
    figures["stats_ms"] = (time.perf_counter() - t0) * 1000
    now = START_MS + BACKLOG // 50 * 250  # just after the newest poll
    t0 = time.perf_counter()
    live = outbox.take("live", 5000, now)
    figures["live_take_ms"] = (time.perf_counter() - t0) * 1000
    assert live is not None
    outbox.release(live.lease_id)
    figures["drain_per_s"] = drain_rate(outbox, now)
    outbox.close()
    return figures


def drain_rate(outbox: Outbox, now: int, seconds: float = 3.0) -> float:
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        lease = outbox.take("backfill", 5000, now)
        if lease is None:
            break
        count += outbox.ack(lease.lease_id)
    return count / (time.perf_counter() - t0)


def main() -> None:
    print_header("sqlite")
    with scratch_dir("bench-outbox-") as tmp:
        for size in (50, 500):
            for sync in ("full", "normal", "off"):
                print(
                    f"put, chunks of {size:3d}, sync={sync:6s}: "
                    f"{put_rate(tmp, size, sync):>9,.0f} readings/s"
                )
            print(
                f"put, chunks of {size:3d}, sync=normal, uncompressed: "
                f"{put_rate(tmp, size, 'normal', compress=False):>9,.0f} readings/s"
            )
        for size in (50, 500):
            for compress in (True, False):
                label = "zlib" if compress else "plain"
                mb, ratio = file_size(tmp, size, compress)
                print(
                    f"file size, chunks of {size:3d}, {label:5s}: {mb:6.1f} MB per million "
                    f"readings, {ratio:.2f}x the bytes max_bytes counts"
                )
        figures = backlog_figures(tmp)
        print(
            f"backlog of {BACKLOG:,} readings (chunks of 50): open {figures['open_ms']:.0f} ms, "
            f"stats() {figures['stats_ms']:.0f} ms, live take {figures['live_take_ms']:.1f} ms"
        )
        print(f"drain, take(backfill, 5000) + ack: {figures['drain_per_s']:,.0f} readings/s")


if __name__ == "__main__":
    main()
