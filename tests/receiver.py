"""The ingest's receiver with a store that keeps every reading, for gateway tests."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from facility.clock import now_ms
from facility.wire import BadRow, Batch
from ingest.receiver import Receiver as IngestReceiver

Key = tuple[str, str, str, str, int]  # station, kind, asset, signal, ts_ms


@dataclass
class Receiver:
    port: int
    batches: list[Batch] = field(default_factory=list)
    arrived_ms: list[int] = field(default_factory=list)  # wall clock, one per batch
    seen: Counter[Key] = field(default_factory=Counter)
    values: dict[Key, object] = field(default_factory=dict)
    receipts: dict[Key, list[tuple[int, bool]]] = field(default_factory=dict)  # (ns, acked)

    def __post_init__(self) -> None:
        self.ingest = IngestReceiver("127.0.0.1", self.port, self._keep, client_id="test-receiver")

    @property
    def bad(self) -> list[str]:
        return list(self.ingest.malformed)

    async def _keep(self, batch: Batch, rejected: list[BadRow]) -> None:
        self.batches.append(batch)
        self.arrived_ms.append(now_ms())
        for r in batch.readings:
            key = (batch.station, r.kind, r.asset, r.signal, r.ts_ms)
            self.seen[key] += 1
            self.values[key] = r.value
            self.receipts.setdefault(key, []).append((time.monotonic_ns(), self.ingest.acking))

    async def start(self) -> None:
        await self.ingest.start()

    async def stop(self) -> None:
        await self.ingest.stop()

    def received(self, kind: str = "v") -> set[Key]:
        return {k for k in self.seen if k[1] == kind}

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.05)
