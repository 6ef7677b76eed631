"""A minimal real receiver for gateway tests: the ingest side of the wire contract.

It subscribes to every gateway's `up` topic on a real broker, decodes batches with the
same contract module the ingest will use, keeps every reading, and acks each batch (as
the ingest does once InfluxDB has the data). Acks can be paused to simulate an ingest
that is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

import aiomqtt

from facility.wire import Batch, WireError, decode_batch, encode_ack, parse_topic, topic

Key = tuple[str, str, str, str, int, str]  # station, kind, asset, signal, ts, ...


@dataclass
class Receiver:
    port: int
    acking: bool = True
    batches: list[Batch] = field(default_factory=list)
    arrived_ms: list[int] = field(default_factory=list)  # wall clock, one per batch
    seen: Counter[tuple[str, str, str, str, int]] = field(default_factory=Counter)
    values: dict[tuple[str, str, str, str, int], object] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier="test-receiver", clean_session=False
                ) as client:
                    await client.subscribe("facility/v1/+/+/up", qos=1)
                    self._ready.set()
                    async for message in client.messages:
                        await self._handle(client, str(message.topic), message.payload)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    async def _handle(self, client: aiomqtt.Client, name: str, payload: object) -> None:
        try:
            assert isinstance(payload, bytes)
            site, station, _ = parse_topic(name)
            batch, rejected = decode_batch(payload)
        except (WireError, AssertionError) as exc:
            self.bad.append(str(exc))
            return
        self.batches.append(batch)
        self.arrived_ms.append(time.time_ns() // 1_000_000)
        for r in batch.readings:
            key = (batch.station, r.kind, r.asset, r.signal, r.ts_ms)
            self.seen[key] += 1
            self.values[key] = r.value
        if self.acking:
            await client.publish(
                topic(site, station, "ack"),
                encode_ack(batch.boot, batch.seq, len(batch.readings), len(rejected)),
                qos=1,
            )

    def received(self, kind: str = "v") -> set[tuple[str, str, str, str, int]]:
        return {k for k in self.seen if k[1] == kind}

    async def wait_for(self, predicate: object, timeout_s: float = 20.0) -> None:
        assert callable(predicate)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("receiver condition not met in time")
            await asyncio.sleep(0.05)
