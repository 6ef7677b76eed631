"""Receive MQTT devices' messages (barrier gates, lot counters) and map them to readings.

Subscribes with QoS 1 and a persistent session (fixed client id, clean_session off),
so messages published while the gateway was away are delivered when it comes back.
A message is acknowledged to the broker (PUBACK) only once its readings are committed
to the outbox: until then the broker keeps it and hands it over again after a crash.
Every mapping comes from the device's profile: topic pattern -> JSON path -> signal.
A reading keeps the device's own timestamp when the profile names one and it is
believable; otherwise the gateway stamps it on receipt, strictly increasing per
(asset, signal), so a burst never lands two readings of a series on one instant.
A malformed message is counted by the kind of fault, logged at a bounded rate with a
short preview of what was wrong, acknowledged and dropped; the subscriber keeps running,
whatever the payload (JSON nested 60,000 deep, 5,000-digit integers, 1e400 where an int
belongs).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from facility.aio import honour_cancellation
from facility.clock import now_ms
from facility.logs import RateLimitedLog, preview
from facility.profile import MqttProfile, MqttSignal, MqttTimestamp
from facility.wire import Reading, Value
from gateway.broker_errors import connect_reason, refused

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 10.0
# A device clock further ahead of the gateway's than this is wrong (the gateway's is
# kept by NTP), and the ingest refuses readings 5 min in its future; one further behind
# than the outbox's age bound would be dropped anyway.
MAX_AHEAD_MS = 60_000
DEFAULT_MAX_BEHIND_MS = 7 * 24 * 3600_000
MAX_ISO_CHARS = 64

# True: the readings are committed (or there were none to keep); False: not stored,
# so the message must not be acknowledged.
Emit = Callable[[list[Reading]], bool]


class BadMessage(ValueError):
    """A device message refused; `kind` is short and fixed (counted and rate-limited by
    it), the text adds a preview of the offending value."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class NotStored(Exception):
    """The outbox could not take a message's readings: leave it with the broker."""


@dataclass
class TopicRoute:
    asset: str
    signals: list[MqttSignal]
    timestamp: MqttTimestamp | None = None


@dataclass
class Mapped:
    """One message read through its profile."""

    values: list[tuple[str, Value]]  # (signal, value)
    device_ms: int | None  # the device's time, when it gave a believable one
    clock_problem: tuple[str, str] | None  # (kind, reason) why the device's time is not used
    unmatched: list[MqttSignal]  # the profile's signals this message does not carry

    def readings(self, asset: str, stamp: int | Callable[[str], int]) -> list[Reading]:
        """The readings at the device's time, or else at stamp (or stamp(signal))."""
        if self.device_ms is not None:
            stamp = self.device_ms
        at = (lambda _: stamp) if isinstance(stamp, int) else stamp
        return [Reading(asset, name, at(name), v) for name, v in self.values]


@dataclass
class ReceiptStamps:
    """Gateway stamps, strictly increasing per (asset, signal): InfluxDB keeps one point
    per series and instant, so two readings stamped in the same ms would become one."""

    last: dict[tuple[str, str], int] = field(default_factory=dict)

    def stamp(self, asset: str, signal: str, now_ms: int) -> int:
        ts = max(now_ms, self.last.get((asset, signal), 0) + 1)
        self.last[(asset, signal)] = ts
        return ts


@dataclass
class MqttDevices:
    host: str
    port: int
    client_id: str
    routes: dict[str, TopicRoute]  # concrete topic -> what it carries
    emit: Emit
    max_behind_ms: int = DEFAULT_MAX_BEHIND_MS
    connected: bool = False
    received: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by kind of fault
    restamped: int = 0  # messages stamped on receipt although the profile names a clock
    unmatched: int = 0  # a profile signal's JSON path found nothing in a message
    connect_error: str = ""  # why the broker last refused or dropped us ("" when connected)
    stamps: ReceiptStamps = field(default_factory=ReceiptStamps)
    _refusals: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log))
    _noted: set[tuple[str, str, str]] = field(default_factory=set)  # (what, topic, which)

    async def run(self) -> None:
        backoff = RECONNECT_MIN_S
        while True:
            try:
                client = aiomqtt.Client(
                    self.host, self.port, identifier=self.client_id, clean_session=False, timeout=10
                )
                # aiomqtt 2.5 has no manual-ack API (aiomqtt#345): paho's, before
                # connecting, as a resumed session delivers its backlog at once.
                client._client.manual_ack_set(True)
                async with client:
                    for topic in self.routes:
                        await client.subscribe(topic, qos=1)
                    self.connected, backoff = True, RECONNECT_MIN_S
                    self.connect_error = ""
                    async for message in client.messages:
                        if not self.handle(str(message.topic), message.payload):
                            raise NotStored(message.topic)
                        client._client.ack(message.mid, message.qos)
            except (aiomqtt.MqttError, NotStored) as exc:
                self._lost(exc)
                honour_cancellation()
                await asyncio.sleep(backoff)
                backoff = min(RECONNECT_MAX_S, backoff * 2)

    def _lost(self, exc: Exception) -> None:
        if isinstance(exc, NotStored):
            reason = f"the outbox did not take a message on {exc}: left with the broker"
        else:
            reason = connect_reason(exc)
        if self.connected or reason != self.connect_error:
            level = logging.ERROR if refused(exc) else logging.WARNING
            log.log(level, "device broker %s:%d: %s", self.host, self.port, reason)
        self.connected, self.connect_error = False, reason

    def handle(self, topic: str, payload: Any) -> bool:
        """Map one message and hand its readings on; False: they could not be stored."""
        route = self.routes.get(topic)
        if route is None:
            return True
        self.received += 1
        received_ms = now_ms()
        try:
            mapped = map_message(route, payload, received_ms, self.max_behind_ms)
        except BadMessage as exc:
            self._reject(topic, exc)
            return True
        except Exception as exc:  # refused and acked: unacked it would return at every start
            log.exception("mapping a message on %s failed", topic)
            self._reject(topic, BadMessage("could not be mapped", type(exc).__name__))
            return True
        for signal in mapped.unmatched:
            self._unmatched(topic, route, signal)
        if mapped.clock_problem is not None:
            self._restamped(topic, route, *mapped.clock_problem)
        asset = route.asset
        return self.emit(
            mapped.readings(asset, lambda signal: self.stamps.stamp(asset, signal, received_ms))
        )

    def _unmatched(self, topic: str, route: TopicRoute, signal: MqttSignal) -> None:
        self.unmatched += 1
        if ("unmatched", topic, signal.name) not in self._noted:
            self._noted.add(("unmatched", topic, signal.name))
            log.warning(
                "%s: %s (signal %s) matches nothing in a message on %s (counted; logged once)",
                route.asset,
                signal.json_path,
                signal.name,
                topic,
            )

    def _restamped(self, topic: str, route: TopicRoute, kind: str, reason: str) -> None:
        self.restamped += 1
        if ("clock", topic, kind) not in self._noted:
            self._noted.add(("clock", topic, kind))
            log.warning(
                "%s on %s: %s; stamped on receipt instead (counted; logged once)",
                route.asset,
                topic,
                reason,
            )

    def _reject(self, topic: str, exc: BadMessage) -> None:
        self.rejected[exc.kind] += 1  # kinds are few and fixed: the counter stays small
        self._refusals.log(f"{topic} {exc.kind}", "rejected message on %s: %s", topic, exc)


def map_message(
    route: TopicRoute,
    payload: Any,
    received_ms: int,
    max_behind_ms: int = DEFAULT_MAX_BEHIND_MS,
) -> Mapped:
    if not isinstance(payload, bytes | bytearray):
        raise BadMessage("payload is not bytes")
    if len(payload) > MAX_MESSAGE_BYTES:
        raise BadMessage("too large", f"{len(payload)} bytes, at most {MAX_MESSAGE_BYTES}")
    body = _parse(payload)
    if not isinstance(body, dict):
        raise BadMessage("not a JSON object", preview(body))
    values: list[tuple[str, Value]] = []
    unmatched = []
    for signal in route.signals:
        found, raw = lookup(body, signal.json_path)
        if found:
            values.append((signal.name, convert(signal, raw)))
        else:
            unmatched.append(signal)
    if not values:
        raise BadMessage("carries none of its profile's signals", preview(sorted(body)))
    device_ms, problem = None, None
    if route.timestamp is not None:
        device_ms, problem = device_time(route.timestamp, body, received_ms, max_behind_ms)
    return Mapped(values, device_ms, problem, unmatched)


def device_time(
    spec: MqttTimestamp, body: dict[str, Any], received_ms: int, max_behind_ms: int
) -> tuple[int | None, tuple[str, str] | None]:
    """The message's own time in epoch ms, or None and (kind, reason) when the gateway
    must not believe it: missing, unreadable, or too far from the gateway's clock."""
    found, raw = lookup(body, spec.json_path)
    if not found:
        return None, ("missing", f"no timestamp at {spec.json_path}")
    try:
        ts_ms = epoch_ms(spec.unit, raw)
    except BadMessage as exc:
        return None, ("unreadable", f"timestamp {spec.json_path}: {exc}")
    if ts_ms > received_ms + MAX_AHEAD_MS:
        ahead = _span(ts_ms - received_ms)
        limit = _span(MAX_AHEAD_MS)
        return None, ("ahead", f"device clock {ahead} ahead of the gateway's (limit {limit})")
    if ts_ms < received_ms - max_behind_ms:
        behind, limit = _span(received_ms - ts_ms), _span(max_behind_ms)
        return None, ("behind", f"device clock {behind} behind the gateway's (limit {limit})")
    return ts_ms, None


def epoch_ms(unit: str, raw: Any) -> int:
    if unit == "iso8601":
        if not isinstance(raw, str) or len(raw) > MAX_ISO_CHARS:
            raise BadMessage("expected ISO 8601 text")
        try:
            when = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise BadMessage(f"{raw!r} is not ISO 8601") from None
        if when.tzinfo is None:
            raise BadMessage(f"{raw!r} has no UTC offset")
        return (when - EPOCH) // dt.timedelta(milliseconds=1)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise BadMessage(f"expected epoch {unit}, got {type(raw).__name__}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise BadMessage("not a finite number")
    return int(raw) * 1000 if unit == "s" and isinstance(raw, int) else round(raw * _PER[unit])


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_PER = {"ms": 1, "s": 1000}


def _span(ms: int) -> str:
    """A clock difference in words; a hostile timestamp may be any size."""
    for unit_ms, name in ((86_400_000, "days"), (3600_000, "h"), (60_000, "min")):
        if ms >= 2 * unit_ms:
            count = ms // unit_ms
            return f"{count} {name}" if count < 10**6 else f"over a million {name}"
    return f"{ms / 1000:.1f} s"


def _parse(payload: bytes | bytearray) -> Any:
    try:
        return json.loads(payload)
    except json.JSONDecodeError as exc:
        raise BadMessage("not JSON", f"{exc.msg} at {exc.pos}") from None
    except UnicodeDecodeError as exc:
        raise BadMessage("not JSON", f"not UTF-8 at {exc.start}") from None
    except RecursionError:
        raise BadMessage("not JSON", "nested too deep to read") from None
    except ValueError as exc:  # an integer past int_max_str_digits
        raise BadMessage("not JSON", str(exc)[:60]) from None


def lookup(body: dict[str, Any], path: str) -> tuple[bool, Any]:
    """The value at a signal's `$.a.b` path in a JSON body: (found, value)."""
    value: Any = body
    for part in path[2:].split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def convert(signal: MqttSignal, raw: Any) -> Value:
    """JSON value -> the signal's type, through its map, scale and offset."""
    if signal.map is not None:
        key = raw if isinstance(raw, str) else None if isinstance(raw, list | dict) else str(raw)
        if key not in signal.map:
            raise BadMessage(f"{signal.name}: not one of {sorted(signal.map)}", preview(raw))
        raw = signal.map[key]
    if signal.type == "string":
        if not isinstance(raw, str):
            raise BadMessage(f"{signal.name}: expected text", type(raw).__name__)
        if not _encodable(raw):
            raise BadMessage(f"{signal.name}: not valid Unicode", preview(raw))
        return raw
    if signal.type == "bool":
        if not isinstance(raw, bool):
            raise BadMessage(f"{signal.name}: expected true/false", preview(raw))
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise BadMessage(f"{signal.name}: expected a number", type(raw).__name__)
    try:
        value = raw * signal.scale + signal.offset
    except OverflowError:  # an int too large for a float
        raise BadMessage(f"{signal.name}: not a finite number", preview(raw)) from None
    if not math.isfinite(value):
        raise BadMessage(f"{signal.name}: not a finite number", preview(raw))
    if signal.type == "int":
        if value != int(value):
            raise BadMessage(f"{signal.name}: expected an integer", preview(raw))
        return int(value)
    return float(value)


def _encodable(text: str) -> bool:
    """False for a lone surrogate (JSON's "\\ud800"), which no store can take as UTF-8."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def routes_for(site: str, station: str, assets: dict[str, MqttProfile]) -> dict[str, TopicRoute]:
    routes: dict[str, TopicRoute] = {}
    for asset, profile in assets.items():
        for key in profile.topics:
            topic = profile.topic_for(key, site, station, asset)
            signals = [s for s in profile.signals if s.topic == key]
            routes[topic] = TopicRoute(asset, signals, profile.timestamp)
    return routes
