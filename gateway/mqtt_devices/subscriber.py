"""Receive MQTT devices' messages (barrier gates, lot counters) and map them to readings.

Subscribes with QoS 1 and a persistent session (fixed client id, clean_session off),
so messages published while the gateway was away are delivered when it comes back.
Every mapping comes from the device's profile: topic pattern -> JSON path -> signal.
A malformed message is counted by the kind of fault, logged at a bounded rate with a
short preview of what was wrong, and dropped; the subscriber keeps running, whatever the
payload (JSON nested 60,000 deep, 5,000-digit integers, 1e400 where an int belongs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from facility.aio import honour_cancellation
from facility.logs import RateLimitedLog, preview
from facility.profile import MqttProfile, MqttSignal
from facility.wire import Reading, Value

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 10.0

Emit = Callable[[list[Reading]], None]


class BadMessage(ValueError):
    """A device message refused; `kind` is short and fixed (counted and rate-limited by
    it), the text adds a preview of the offending value."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass
class TopicRoute:
    asset: str
    signals: list[MqttSignal]


@dataclass
class MqttDevices:
    host: str
    port: int
    client_id: str
    routes: dict[str, TopicRoute]  # concrete topic -> what it carries
    emit: Emit
    connected: bool = False
    received: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by kind of fault
    _refusals: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log))

    async def run(self) -> None:
        backoff = RECONNECT_MIN_S
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier=self.client_id, clean_session=False, timeout=10
                ) as client:
                    for topic in self.routes:
                        await client.subscribe(topic, qos=1)
                    self.connected, backoff = True, RECONNECT_MIN_S
                    async for message in client.messages:
                        self.handle(str(message.topic), message.payload)
            except aiomqtt.MqttError as exc:
                if self.connected:
                    log.warning("device broker %s:%d lost: %s", self.host, self.port, exc)
                self.connected = False
                honour_cancellation()
                await asyncio.sleep(backoff)
                backoff = min(RECONNECT_MAX_S, backoff * 2)

    def handle(self, topic: str, payload: Any) -> None:
        route = self.routes.get(topic)
        if route is None:
            return
        self.received += 1
        try:
            readings = map_message(route, payload, time.time_ns() // 1_000_000)
        except BadMessage as exc:
            self._reject(topic, exc)
            return
        if readings:
            self.emit(readings)

    def _reject(self, topic: str, exc: BadMessage) -> None:
        self.rejected[exc.kind] += 1  # kinds are few and fixed: the counter stays small
        self._refusals.log(f"{topic} {exc.kind}", "rejected message on %s: %s", topic, exc)


def map_message(route: TopicRoute, payload: Any, ts_ms: int) -> list[Reading]:
    if not isinstance(payload, bytes | bytearray):
        raise BadMessage("payload is not bytes")
    if len(payload) > MAX_MESSAGE_BYTES:
        raise BadMessage("too large", f"{len(payload)} bytes, at most {MAX_MESSAGE_BYTES}")
    body = _parse(payload)
    if not isinstance(body, dict):
        raise BadMessage("not a JSON object", preview(body))
    out = []
    for signal in route.signals:
        found, raw = _lookup(body, signal.json_path)
        if found:
            out.append(Reading(route.asset, signal.name, ts_ms, convert(signal, raw)))
    if not out:
        raise BadMessage("carries none of its profile's signals", preview(sorted(body)))
    return out


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


def _lookup(body: dict[str, Any], path: str) -> tuple[bool, Any]:
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
            routes[topic] = TopicRoute(asset, [s for s in profile.signals if s.topic == key])
    return routes
