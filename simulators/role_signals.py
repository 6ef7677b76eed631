"""Values for equipment without physics, from what its signals mean (their roles).

The simplest believable source for any kind declared as data (facility/kinds/): a flow
or a power follows a day's curve, a totaliser or an energy counter integrates them
exactly (so a report's figure can be checked against it), a run state is on, a fault
off, and every other number sits near a value typical for its role with a little
noise. A Modbus device is read through `values()`; an MQTT device publishes its
profile's topics every `publish_every_s`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from facility.kind import Role, report_factor
from facility.profile import ModbusProfile, ModbusSignal, MqttProfile, MqttSignal
from simulators.physics.common import Value, hour_of_day
from simulators.physics.parking import DeviceMessage

HOUR_S = 3600.0
DEFAULT_FLOW_M3H = 60.0  # ASSUMPTION: a small works' outlet
DEFAULT_POWER_KW = 25.0  # ASSUMPTION: its pumps' draw
DAY_SWING = 0.3  # flows and power ±30 % over the day, highest mid-afternoon
NOISE = 0.01  # 1 % measurement noise on rates and readings

# Where a signal of a role sits (in its own unit), when nothing better is known.
TYPICAL: dict[Role, float] = {
    Role.LEVEL: 2.0,
    Role.VOLUME: 500.0,
    Role.PRESSURE: 4.0,
    Role.TEMPERATURE: 15.0,
    Role.CURRENT: 40.0,
    Role.VOLTAGE: 230.0,
    Role.FREQUENCY: 50.0,
    Role.LOAD: 60.0,
    Role.CONCENTRATION: 0.5,
    Role.POSITION: 50.0,
    Role.OCCUPANCY: 10.0,
}
TRUE_STATES = frozenset({Role.RUNNING, Role.COMM, Role.POSITION})
COUNTERS = {Role.VOLUME_COUNTER: Role.FLOW, Role.ENERGY_COUNTER: Role.POWER}

Signal = ModbusSignal | MqttSignal


@dataclass
class RoleSignalModel:
    """One asset of a kind without physics, stepped in simulated time."""

    profile: ModbusProfile | MqttProfile
    roles: dict[str, Role]
    asset_id: str
    rng: random.Random
    utc_offset_h: float
    rated_flow_m3h: float | None = None
    rated_kw: float | None = None
    publish_every_s: float = 30.0
    t_ms: int = 0
    counters: dict[str, float] = field(default_factory=dict)  # exact: the ground truth
    _since_publish_s: float = 0.0

    def __post_init__(self) -> None:
        for s in self.profile.signals:
            if self.roles.get(s.name) in COUNTERS:
                self.counters[s.name] = round(self.rng.uniform(1_000, 20_000), 1)

    @property
    def publishes(self) -> bool:
        return isinstance(self.profile, MqttProfile)

    def _day(self) -> float:
        h = hour_of_day(self.t_ms, self.utc_offset_h)
        return 1.0 + DAY_SWING * math.sin(2 * math.pi * (h - 9.0) / 24.0)

    def rate(self, role: Role) -> float:
        """The noiseless flow (m3/h) or power (kW) now."""
        if role is Role.FLOW:
            base = 0.6 * self.rated_flow_m3h if self.rated_flow_m3h else DEFAULT_FLOW_M3H
        else:
            base = 0.7 * self.rated_kw if self.rated_kw else DEFAULT_POWER_KW
        return base * self._day()

    def advance(self, dt_s: float, t_ms: int) -> list[DeviceMessage]:
        """Integrate the counters over [t_ms, t_ms + dt_s) at the rate at its start."""
        self.t_ms = t_ms
        for name, counted in ((n, self.roles[n]) for n in self.counters):
            rate_role = COUNTERS[counted]
            per_hour = self.rate(rate_role)  # in the report unit (m3, kWh per hour)
            factor = report_factor(counted, self._signal(name).unit) or 1.0
            self.counters[name] += per_hour * dt_s / HOUR_S / factor
        self.t_ms = t_ms + round(dt_s * 1000)
        if not self.publishes:
            return []
        self._since_publish_s += dt_s
        if self._since_publish_s < self.publish_every_s:
            return []
        self._since_publish_s = 0.0
        return self._messages()

    def values(self) -> dict[str, Value]:
        return {s.name: self._value(s) for s in self.profile.signals}

    def _signal(self, name: str) -> Signal:
        return next(s for s in self.profile.signals if s.name == name)

    def _value(self, s: Signal) -> Value:
        role = self.roles.get(s.name)
        kind = str(s.type)
        if kind in ("bool", "bit"):
            return role in TRUE_STATES
        if kind == "string":
            return "ok"
        if s.name in self.counters:
            value = self.counters[s.name]
        elif role in (Role.FLOW, Role.POWER):
            factor = report_factor(role, s.unit) or 1.0
            value = self.rate(role) / factor * (1.0 + self.rng.gauss(0, NOISE))
        elif role is Role.CONCENTRATION and s.unit == "pH":
            value = 7.2 + self.rng.gauss(0, 0.02)
        else:
            typical = TYPICAL.get(role, 50.0 if s.unit == "%" else 1.0) if role else None
            base = typical if typical is not None else (50.0 if s.unit == "%" else 1.0)
            value = base * (1.0 + self.rng.gauss(0, NOISE))
        return value  # the register encoder and _wire_value round for integer types

    def _messages(self) -> list[DeviceMessage]:
        assert isinstance(self.profile, MqttProfile)
        out = []
        for topic in self.profile.topics:
            payload: dict[str, Any] = {}
            for s in self.profile.signals:
                if s.topic == topic:
                    _put(payload, s.json_path, _wire_value(s, self._value(s)))
            out.append(DeviceMessage(self.t_ms, self.asset_id, topic, payload))
        return out


def _wire_value(s: Signal, value: Value) -> Value:
    """What the device puts in its JSON for an engineering value: the mapped text, or
    the raw number before the profile's scale and offset."""
    assert isinstance(s, MqttSignal)
    if s.map:
        for text, mapped in s.map.items():
            if mapped == value:
                return text
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    raw = (value - s.offset) / s.scale
    return round(raw) if s.type == "int" else raw


def _put(payload: dict[str, Any], json_path: str, value: Value) -> None:
    keys = json_path.removeprefix("$.").split(".")
    node = payload
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
