"""`facility probe`: read one device once with its profile and show every step.

What `telegraf --test` is to Telegraf: no gateway, outbox or ingest needed. A Modbus
device (TCP, RTU over TCP, serial RTU) is read through the gateway's own bus worker,
so the plan, the split on exception 2 and the decoding are exactly the gateway's: each
request with its outcome, each signal's raw registers, value, unit and quality, and
the plan it learned. An MQTT device is subscribed to for a while: each message with
what it maps to, then every signal that matched nothing and why.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from facility.config import SiteConfig
from facility.profile import ModbusProfile, MqttProfile, MqttSignal
from facility.site import AssetRef, Bus, Transport
from facility.wire import Reading
from gateway.modbus.planner import ReadRequest
from gateway.modbus.poller import BusWorker, PollFailure, build_device
from gateway.mqtt_devices.subscriber import (
    MAX_MESSAGE_BYTES,
    BadMessage,
    convert,
    lookup,
    routes_for,
)

MAX_MESSAGES = 5000  # the probe's memory stays bounded on a busy broker
MAX_OTHER_TOPICS = 200


@dataclass
class RequestOutcome:
    request: ReadRequest
    outcome: str  # "ok" or the error
    rtt_ms: float
    data: Sequence[Any] = ()


@dataclass
class ModbusProbe:
    """One read of one device, and everything that happened on the way."""

    ref: AssetRef
    bus: Bus
    profile: ModbusProfile
    initial_plan: list[ReadRequest]
    requests: list[RequestOutcome] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    error: str = ""
    learned: list[str] = field(default_factory=list)
    final_plan: list[ReadRequest] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)

    def raw_of(self, name: str) -> list[int] | None:
        """The registers (or bit) a signal was decoded from, from the last good read."""
        signal = self.profile.signal(name)
        at = self.profile.protocol_address(signal)
        for outcome in reversed(self.requests):
            request = outcome.request
            if outcome.outcome == "ok" and signal in request.signals:
                offset = at - request.address
                return [int(v) for v in outcome.data[offset : offset + signal.count]]
        return None


class _ProbeWorker(BusWorker):
    """The gateway's bus worker, with every request and its outcome written down."""

    def __init__(self, bus: Bus, probe: ModbusProbe) -> None:
        super().__init__(bus, [], probe.readings.extend)
        self.probe = probe

    async def _request(self, device: Any, request: ReadRequest) -> Sequence[Any]:
        started = time.perf_counter()
        try:
            data = await super()._request(device, request)
        except PollFailure as failure:
            rtt = (time.perf_counter() - started) * 1000
            self.probe.requests.append(RequestOutcome(request, failure.error, rtt))
            raise
        rtt = (time.perf_counter() - started) * 1000
        self.probe.requests.append(RequestOutcome(request, "ok", rtt, list(data)))
        return data


async def probe_modbus(config: SiteConfig, ref: AssetRef, bus: Bus) -> ModbusProbe:
    profile = config.profile_of(ref)
    assert isinstance(profile, ModbusProfile) and ref.asset.modbus is not None
    device = build_device(ref.asset.id, ref.asset.modbus.unit_id, profile, 1.0, bus.max_gap)
    probe = ModbusProbe(ref, bus, profile, list(device.plan.requests))
    worker = _ProbeWorker(bus, probe)
    worker.devices = [device]
    try:
        await worker.poll(device)
    finally:
        worker.close()
    probe.readings[:] = [r for r in probe.readings if r.kind == "v"]
    probe.error = "" if device.status.ok else device.status.error
    probe.learned = list(device.learned)
    probe.final_plan = list(device.plan.requests)
    probe.refused = set(device.refused)
    return probe


def bus_address(bus: Bus) -> str:
    if bus.transport is Transport.RTU:
        return f"rtu {bus.serial_port} {bus.baudrate} {bus.bytesize}{bus.parity}{bus.stopbits}"
    kind = "rtu-over-tcp" if bus.transport is Transport.RTU_OVER_TCP else "tcp"
    return f"{kind} {bus.host}:{bus.port}"


def describe(request: ReadRequest, profile: ModbusProfile) -> str:
    """A request as a vendor's manual would number it, and on the wire."""
    base = profile.address_base
    names = ", ".join(s.name for s in request.signals)
    return (
        f"{request.table.value} {request.address + base}..{request.end - 1 + base} "
        f"(protocol {request.address}+{request.count}): {names}"
    )


# --- MQTT ---------------------------------------------------------------------------


@dataclass
class MappedMessage:
    topic: str
    payload: bytes
    mapped: dict[str, object]  # signal -> value
    problems: dict[str, str]  # signal -> why it did not map


@dataclass
class MqttProbe:
    ref: AssetRef
    profile: MqttProfile
    broker: tuple[str, int]
    topics: dict[str, str]  # concrete topic -> profile topic key
    messages: list[MappedMessage] = field(default_factory=list)
    other_topics: Counter[str] = field(default_factory=Counter)
    error: str = ""
    not_kept: int = 0  # messages past MAX_MESSAGES (a chatty device): counted, not mapped

    def unmatched(self) -> dict[str, str]:
        """Every signal no message gave a value for, and why."""
        out: dict[str, str] = {}
        for signal in self.profile.signals:
            topic = self.profile.topic_for(signal.topic, *self.ref.key)
            on_topic = [m for m in self.messages if m.topic == topic]
            if any(signal.name in m.mapped for m in on_topic):
                continue
            if not on_topic:
                out[signal.name] = f"no message on {topic}"
                continue
            reasons = Counter(m.problems.get(signal.name, "") for m in on_topic)
            reason, count = reasons.most_common(1)[0]
            out[signal.name] = f"{reason} (in {count} of {len(on_topic)} messages)"
        return out


def map_signals(
    signals: list[MqttSignal], payload: bytes
) -> tuple[dict[str, object], dict[str, str]]:
    """Each signal's value from one payload, or why it has none (the gateway's rules)."""
    if len(payload) > MAX_MESSAGE_BYTES:
        reason = f"payload of {len(payload)} bytes exceeds {MAX_MESSAGE_BYTES}"
        return {}, {s.name: reason for s in signals}
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}, {s.name: "not JSON" for s in signals}
    if not isinstance(body, dict):
        return {}, {s.name: "not a JSON object" for s in signals}
    mapped: dict[str, object] = {}
    problems: dict[str, str] = {}
    for signal in signals:
        found, raw = lookup(body, signal.json_path)
        if not found:
            problems[signal.name] = f"{signal.json_path} not in the message (keys: {sorted(body)})"
            continue
        try:
            mapped[signal.name] = convert(signal, raw)
        except BadMessage as exc:
            problems[signal.name] = str(exc)
    return mapped, problems


async def probe_mqtt(
    ref: AssetRef, profile: MqttProfile, host: str, port: int, seconds: float
) -> MqttProbe:
    """Listen `seconds` to the device's topics and their first level (`plant/#`), so a
    device publishing under a neighbouring name shows up too."""
    routes = routes_for(ref.site.id, ref.station.id, {ref.asset.id: profile})
    topics = {t: key for key in profile.topics for t in [profile.topic_for(key, *ref.key)]}
    probe = MqttProbe(ref, profile, (host, port), topics)
    connected = False
    try:
        async with asyncio.timeout(seconds):
            async with aiomqtt.Client(
                host, port, identifier=f"facility-probe-{time.time_ns()}"
            ) as client:
                connected = True
                for prefix in sorted({t.split("/")[0] + "/#" for t in routes}):
                    await client.subscribe(prefix, qos=1)
                async for message in client.messages:
                    _take(probe, routes, str(message.topic), message.payload)
    except TimeoutError:
        if not connected:
            probe.error = f"broker {host}:{port}: no connection within {seconds:g} s"
    except aiomqtt.MqttError as exc:
        probe.error = f"broker {host}:{port}: {exc}"
    return probe


def _take(probe: MqttProbe, routes: dict[str, Any], topic: str, payload: Any) -> None:
    route = routes.get(topic)
    if route is None:
        if topic in probe.other_topics or len(probe.other_topics) < MAX_OTHER_TOPICS:
            probe.other_topics[topic] += 1
        return
    if len(probe.messages) >= MAX_MESSAGES:
        probe.not_kept += 1
        return
    data = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
    mapped, problems = map_signals(route.signals, data)
    probe.messages.append(MappedMessage(topic, data, mapped, problems))
