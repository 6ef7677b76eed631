"""A helper process: the ingest's Receiver acking every batch it gets, storing nothing.

Its status file counts readings, batches and readings per station; for readings of
assets named `live_...` it keeps acquisition -> received delays, written out at stop.

    python -m bench.acking_receiver --port PORT --status FILE
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from bench.common import until_stopped, write_status
from facility.clock import now_ms
from facility.wire import BadRow, Batch
from ingest.receiver import Receiver

MODULE = "bench.acking_receiver"
LIVE_PREFIX = "live_"  # assets whose delays the receiver keeps


def command(broker_port: int) -> list[str]:
    """The command line (Child adds --status)."""
    return [sys.executable, "-m", MODULE, "--port", str(broker_port)]


async def receive(port: int, status: Path) -> None:
    delays: list[int] = []

    async def store(batch: Batch, rejected: list[BadRow]) -> None:
        now = now_ms()
        delays.extend(now - r.ts_ms for r in batch.readings if r.asset.startswith(LIVE_PREFIX))

    receiver = Receiver("127.0.0.1", port, store, client_id=f"bench-ingest-{os.getpid()}")
    await receiver.start()

    def body() -> dict[str, Any]:
        return {
            "ready": True,
            "readings": receiver.readings,
            "batches": receiver.batches,
            "live": len(delays),
            "per_station": {f"{a}/{b}": n for (a, b), n in receiver.per_station.items()},
            "malformed": sum(receiver.malformed.values()),
        }

    try:
        await until_stopped(0.1, lambda: write_status(status, body()))
    finally:
        await receiver.stop()
        write_status(status, {**body(), "delays_ms": delays, "final": True})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(receive(args.port, args.status))


if __name__ == "__main__":
    main()
