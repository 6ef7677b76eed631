"""The ingest's receiving end of the wire contract: gateway batches in, acks out.

Subscribes to the gateways' `up` topics (QoS 1, persistent session), decodes each
batch with facility.wire, hands it to a store (ingest.store.InfluxStore in the service),
and acks the batch to its gateway only after the store says the batch is durable.
When the store fails (InfluxDB down), it answers "not stored" with a pause that grows
while the failures go on, so the gateway resends after that pause instead of after its
ack timeout (docs/wire-format.md).
A message that cannot be decoded (whatever it holds: JSON nested 60,000 deep, 5,000-digit
integers, a zip bomb) is counted, logged at a bounded rate per kind of fault and handed
to `quarantine` (the dead-letter store), and the receiver goes on.

Several instances share the load in two ways (docs/ingest.md): each owns some sites
(topic partitions), or they join one MQTT shared subscription group and the broker
hands each batch to one of them. The ack goes back on the gateway's own `ack` topic,
so it does not matter which instance stored the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiomqtt

from facility.aio import cancel_and_wait, honour_cancellation
from facility.clock import now_ms
from facility.logs import RateLimitedLog, reason_kind
from facility.metrics import Histogram
from facility.wire import (
    TOPIC_ROOT,
    BadRow,
    Batch,
    WireError,
    decode_batch,
    encode_ack,
    encode_not_stored,
    parse_topic,
    topic,
)
from ingest.influx import InfluxAuthError, InfluxUnavailable

log = logging.getLogger(__name__)

Store = Callable[[Batch, list[BadRow]], Awaitable[object]]
Quarantine = Callable[[str, str, bytes, str], object]  # site, station, payload, reason
ALL_GATEWAYS = f"{TOPIC_ROOT}/+/+/up"
STOP_GRACE_S = 10.0  # for the batches under way at stop to be written and acked
# Compressed size past which a batch is decoded in a worker thread; a gateway's usual
# batch (5,000 readings) is well below, a payload at the wire's limit decodes for seconds.
OFF_LOOP_BYTES = 64 * 1024
MAX_REASONS = 100
MAX_STATIONS = 10_000  # reasons can quote sizes or values: bound the counter a flood could grow
RECONNECT_S = 0.5
# The pause a not-stored reply asks for: as long as the store has been failing, at least
# the first, at most the cap; back to the first once a batch is stored. For a gateway
# that resends after each pause this doubles it, whatever its batches in flight and
# however many gateways there are (a count of failures would reach the cap at once).
RETRY_AFTER_FIRST_MS = 500
RETRY_AFTER_CAP_MS = 5_000
RETRY_AFTER_SPREAD = 0.2
# Failures a quick resend can outlast: the database away or refusing our credential
# (OSError: a store that talks to it directly). Anything else (a bug, the alarms after a
# stored batch) stays silent: the gateway resends after its ack timeout, not in a loop.
STORE_AWAY: tuple[type[Exception], ...] = (InfluxUnavailable, InfluxAuthError, OSError)
BROKER_LOG_EVERY_S = 60.0  # while the broker stays away, say so again this often


def subscription_topics(sites: Sequence[str] = (), shared_group: str | None = None) -> list[str]:
    """The topic filters of an instance: every gateway, or those of `sites`, optionally
    as members of a shared subscription group."""
    filters = [f"{TOPIC_ROOT}/{site}/+/up" for site in sites] or [ALL_GATEWAYS]
    return [f"$share/{shared_group}/{f}" for f in filters] if shared_group else filters


async def decode(payload: bytes) -> tuple[Batch, list[BadRow]]:
    """decode_batch, in a worker thread for a big payload: the loop goes on meanwhile."""
    if len(payload) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(decode_batch, payload)
    return decode_batch(payload)


def retry_after_ms(failing_for_s: float) -> int:
    """The pause a not-stored reply asks for when the store has failed this long."""
    return min(RETRY_AFTER_CAP_MS, max(RETRY_AFTER_FIRST_MS, int(failing_for_s * 1000)))


def spread(pause_ms: int) -> int:
    """The pause plus up to a fifth more, at random: the gateways told to wait during one
    InfluxDB outage then come back spread out, not all in the same instant."""
    return pause_ms + int(pause_ms * RETRY_AFTER_SPREAD * random.random())


async def keep_nothing(batch: Batch, rejected: list[BadRow]) -> None:
    """A store for demos that only count."""


def forget(site: str, station: str, payload: bytes, reason: str) -> None:
    """No dead-letter store (demos and tests that only count)."""


@dataclass
class Receiver:
    host: str
    port: int
    store: Store = keep_nothing
    client_id: str = "facility-ingest"
    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None
    acking: bool = True  # False: answer nothing at all (an ingest that hangs)
    topics: Sequence[str] = (ALL_GATEWAYS,)
    quarantine: Quarantine = forget
    batches: int = 0
    readings: int = 0
    per_station: Counter[tuple[str, str]] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    last_batch_ms: int = 0
    store_failures: int = 0
    not_stored_replies: int = 0  # "not stored" answers sent to gateways
    connected: bool = False
    broker_losses: int = 0  # connections lost or refused since start
    broker_error: str = ""  # why the last connection attempt failed, "" when connected
    store_times: Histogram = field(default_factory=Histogram)  # batch in -> stored, seconds
    max_in_flight: int = 4  # batches being stored at once (ordered per gateway)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _gateway_locks: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)
    _slots: asyncio.Semaphore = field(init=False)
    _stopping: bool = False
    _refusals: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log))
    _big_batch: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    _down_since: float | None = None
    _down_logged: float = 0.0
    _failing_since: float | None = None  # monotonic, the first of the failures in a row

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_in_flight)

    async def start(self, wait_s: float | None = 10) -> None:
        """Start receiving; wait up to `wait_s` for the first subscription (None: do not
        wait: the service starts with the broker down and keeps trying)."""
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="ingest receiver")
        if wait_s is not None:
            async with asyncio.timeout(wait_s):
                await self._ready.wait()

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        return self._ready.is_set()

    async def stop(self) -> None:
        """Let the batches under way finish and send their acks first: otherwise their
        gateways would send them again (harmless, but a needless second write)."""
        self._stopping = True
        if self._handlers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE_S):
                    await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._task is not None:
            await cancel_and_wait(self._task)
        for handler in list(self._handlers):
            await cancel_and_wait(handler)

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
                    # Each batch waits for its ack's PUBACK; Nagle plus delayed ACK made
                    # that ~14 ms a batch (bench/bench_ingest.py), NODELAY 0.6 ms.
                    socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
                ) as client:
                    for name in self.topics:
                        await client.subscribe(name, qos=1)
                    self._up()
                    async for message in client.messages:
                        await self._dispatch(client, str(message.topic), message.payload)
            except aiomqtt.MqttError as exc:
                self._down(exc)
                honour_cancellation()
                await asyncio.sleep(RECONNECT_S)

    def _up(self) -> None:
        if self._down_since is not None:
            away = time.monotonic() - self._down_since
            log.warning("broker %s:%d back after %.1f s", self.host, self.port, away)
        self.connected, self.broker_error, self._down_since = True, "", None
        self._ready.set()

    def _down(self, exc: aiomqtt.MqttError) -> None:
        """Loud once when the broker goes (or is not there at start), then once a minute
        while it stays away: the gateways hold the data meanwhile."""
        now = time.monotonic()
        if self.connected or self._down_since is None:
            self.broker_losses += 1
            self._down_since, self._down_logged = now, now
            what = "lost the broker" if self.connected else "cannot reach the broker"
            log.error(
                "%s %s:%d (%s); reconnecting every %.1f s, the gateways keep their outboxes",
                what,
                self.host,
                self.port,
                exc,
                RECONNECT_S,
            )
        elif now - self._down_logged >= BROKER_LOG_EVERY_S:
            self._down_logged = now
            log.error(
                "broker %s:%d still unreachable after %.0f s (%s)",
                self.host,
                self.port,
                now - self._down_since,
                exc,
            )
        self.connected, self.broker_error = False, str(exc)[:200]

    async def _dispatch(self, client: aiomqtt.Client, name: str, payload: object) -> None:
        """Store up to max_in_flight batches at once, so one write's round trip does not
        hold up the next decode. Batches of one gateway stay in order (the alarm engine
        reads them in event time); a lock per topic queues them, FIFO."""
        if self._stopping:
            return  # not stored, not acked: its gateway sends it again to whoever is up
        await self._slots.acquire()
        lock, users = self._gateway_locks.get(name, (asyncio.Lock(), 0))
        self._gateway_locks[name] = (lock, users + 1)  # dropped at 0: topics are anyone's
        task = asyncio.create_task(self._ordered(lock, client, name, payload))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _ordered(
        self, lock: asyncio.Lock, client: aiomqtt.Client, name: str, payload: object
    ) -> None:
        try:
            async with lock:
                await self.handle(client, name, payload)
        except aiomqtt.MqttError as exc:  # the ack did not go out: the gateway resends
            log.warning("ack on %s not sent: %s", name, exc)
        finally:
            self._slots.release()
            lock, users = self._gateway_locks[name]
            if users == 1:
                del self._gateway_locks[name]
            else:
                self._gateway_locks[name] = (lock, users - 1)

    async def handle(self, client: aiomqtt.Client, name: str, payload: object) -> None:
        raw = payload if isinstance(payload, bytes) else str(payload).encode()
        if len(raw) <= OFF_LOOP_BYTES:
            await self._handle(client, name, raw)
            return
        # One big batch at a time: near the wire's limit one holds ~700 MB while it is
        # decoded and stored, and max_in_flight of them at once could exhaust memory.
        async with self._big_batch:
            await self._handle(client, name, raw)

    async def _handle(self, client: aiomqtt.Client, name: str, raw: bytes) -> None:
        try:
            site, station, _ = parse_topic(name)
            batch, rejected = await decode(raw)
            if (batch.site, batch.station) != (site, station):
                raise WireError(f"batch of {batch.site}/{batch.station} on the topic of another")
        except WireError as exc:
            await self._refuse(name, raw, str(exc))
            return
        except Exception as exc:  # a decoder bug must cost one message, not the receiver
            log.exception("undecodable batch on %s", name)
            await self._refuse(name, raw, f"cannot decode: {type(exc).__name__}")
            return
        started = time.monotonic()
        try:
            await self.store(batch, rejected)
        except Exception as exc:  # not stored: the gateway keeps it and resends
            await self._not_stored(client, batch, exc)
            return
        self._failing_since = None
        self.store_times.observe(time.monotonic() - started)
        self.batches += 1
        self.readings += len(batch.readings)
        key = (site, station)
        if key not in self.per_station and len(self.per_station) >= MAX_STATIONS:
            key = ("?", "?")  # names from topics anyone may publish to: bounded
        self.per_station[key] += len(batch.readings)
        self.last_batch_ms = now_ms()
        if self.acking:
            ack = encode_ack(batch.boot, batch.seq, len(batch.readings), len(rejected))
            await client.publish(topic(site, station, "ack"), ack, qos=1)

    async def _not_stored(self, client: aiomqtt.Client, batch: Batch, exc: Exception) -> None:
        self.store_failures += 1
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        wait_ms = spread(retry_after_ms(now - self._failing_since))
        self._refusals.log(
            "not stored",
            "batch %d from %s/%s not stored (%s); its gateway sends it again",
            batch.seq,
            batch.site,
            batch.station,
            str(exc)[:300],
        )
        if self._stopping or not self.acking:
            return  # stopping: its gateway resends to whoever is up, after its ack timeout
        if not isinstance(exc, STORE_AWAY):
            return  # a fault of ours, not of the database: no quick resend loop, the timeout
        reply = encode_not_stored(batch.boot, batch.seq, type(exc).__name__, wait_ms)
        await client.publish(topic(batch.site, batch.station, "ack"), reply, qos=1)
        self.not_stored_replies += 1

    async def _refuse(self, name: str, payload: bytes, reason: str) -> None:
        key = reason_kind(reason)
        if key not in self.malformed and len(self.malformed) >= MAX_REASONS:
            key = "other reasons"
        self._refusals.log(key, "malformed batch on %s: %s", name[:200], reason[:300])
        self.malformed[key] += 1
        parts = name.split("/")
        site, station = (parts[2], parts[3]) if len(parts) == 5 else ("?", "?")
        # In a worker thread: the store may be busy with a big batch's letters.
        await asyncio.to_thread(self.quarantine, site, station, payload, reason)
