"""The ingest's receiving end of the wire contract: gateway batches in, acks out.

Subscribes to every gateway's `up` topic (QoS 1, persistent session), decodes each
batch with facility.wire, hands it to a store, and acks the batch to its gateway only
after the store says the batch is durable. Until the InfluxDB writer lands (issue 4) the
store is whatever the caller gives: the demo counts readings in memory, tests keep them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt

from facility.aio import honour_cancellation
from facility.wire import BadRow, Batch, WireError, decode_batch, encode_ack, parse_topic, topic

log = logging.getLogger(__name__)

Store = Callable[[Batch, list[BadRow]], Awaitable[object]]


async def keep_nothing(batch: Batch, rejected: list[BadRow]) -> None:
    """A store for demos that only count."""


@dataclass
class Receiver:
    host: str
    port: int
    store: Store = keep_nothing
    client_id: str = "facility-ingest"
    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None
    acking: bool = True  # False: behave like an ingest whose database is down
    batches: int = 0
    readings: int = 0
    per_station: Counter[tuple[str, str]] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    last_batch_ms: int = 0
    store_failures: int = 0
    connected: bool = False
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="ingest receiver")
        async with asyncio.timeout(10):
            await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    clean_session=False,
                    timeout=10,
                    username=self.username,
                    password=self.password,
                    tls_context=self.tls_context,
                ) as client:
                    await client.subscribe("facility/v1/+/+/up", qos=1)
                    self.connected = True
                    self._ready.set()
                    async for message in client.messages:
                        await self.handle(client, str(message.topic), message.payload)
            except aiomqtt.MqttError:
                self.connected = False
                honour_cancellation()
                await asyncio.sleep(0.5)

    async def handle(self, client: aiomqtt.Client, name: str, payload: object) -> None:
        try:
            if not isinstance(payload, bytes):
                raise WireError("payload is not bytes")
            site, station, _ = parse_topic(name)
            batch, rejected = decode_batch(payload)
        except WireError as exc:
            self.malformed[str(exc)] += 1
            log.warning("malformed batch on %s: %s", name, exc)
            return
        try:
            await self.store(batch, rejected)
        except Exception as exc:  # not stored: no ack, so the gateway keeps it and resends
            self.store_failures += 1
            log.warning(
                "batch %d from %s/%s not stored (%s); not acknowledged",
                batch.seq,
                site,
                station,
                exc,
            )
            return
        self.batches += 1
        self.readings += len(batch.readings)
        self.per_station[(site, station)] += len(batch.readings)
        self.last_batch_ms = time.time_ns() // 1_000_000
        if self.acking:
            ack = encode_ack(batch.boot, batch.seq, len(batch.readings), len(rejected))
            await client.publish(topic(site, station, "ack"), ack, qos=1)
