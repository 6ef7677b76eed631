"""Signals for devices without physics, made up from their profiles.

Any device can be served. A `simulate:` block always wins: the asset's entry for a
signal, else the profile signal's. Every other signal comes from the asset's model
(physics, or whatever the world keeps for its kind), and a signal nobody provides gets
a default by type (numbers wander inside the asset's alarm limits or a plain range,
switches stay off, codes stay at their first value, text is the profile's model).
Generators are stepped with the physics' fixed step and draw from their own random
stream seeded by (seed, site, station, asset), so a seed gives the same values bit for
bit. Counters keep their exact increase since the start: the ground truth tests
compare stored totals with (`GeneratedDevice.counter_increase`).

Every MQTT device but the car park's (whose messages are events of its physics)
publishes through here: every topic of its profile every `PUBLISH_EVERY_S` of simulated
time, each signal at its JSON path (a mapped signal as its text state), from the
device's values with sensor faults applied; a device that is not responding is silent.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from facility.codec import INTEGER_TYPES, DataType, integer_range
from facility.config import SiteConfig
from facility.profile import ModbusProfile, ModbusSignal, MqttProfile, MqttSignal
from facility.simspec import (
    ConstantSpec,
    CounterSpec,
    GeneratedValue,
    RandomWalkSpec,
    SignalSim,
    SineSpec,
    StateSpec,
)
from facility.site import Asset
from simulators.physics.common import Value
from simulators.physics.parking import DeviceMessage, GateModel, ParkingLotModel
from simulators.world import CAR_PARK_MODELS, AssetKey, World

PUBLISH_EVERY_S = 10.0
DEFAULT_RANGE = (0.0, 100.0)  # a number nobody described wanders here (within its type)

Signal = ModbusSignal | MqttSignal
Profile = ModbusProfile | MqttProfile


def default_spec(signal: Signal, asset: Asset, profile: Profile) -> SignalSim:
    """What a signal nobody described does: quiet, plausible, inside its alarm limits."""
    kind = _type_of(signal)
    if kind in ("bool", "bit"):
        return ConstantSpec(kind="constant", value=False)
    if kind == "string":
        return ConstantSpec(kind="constant", value=profile.model or profile.profile)
    if signal.enum:
        return ConstantSpec(kind="constant", value=min(signal.enum))
    lo, hi = _range(signal, asset)
    if kind in ("int", *(t.value for t in INTEGER_TYPES)) and signal.scale == 1.0:
        lo, hi = math.ceil(lo), math.floor(hi)
    return RandomWalkSpec(kind="random_walk", min=lo, max=hi, step=(hi - lo) / 100)


def _type_of(signal: Signal) -> str:
    return signal.type if isinstance(signal.type, str) else signal.type.value


def _range(signal: Signal, asset: Asset) -> tuple[float, float]:
    limits = asset.limits.get(signal.name)
    lo, hi = DEFAULT_RANGE
    if limits is not None:
        lows = [v for v in (limits.low, limits.low_low) if v is not None]
        highs = [v for v in (limits.high, limits.high_high) if v is not None]
        lo = lows[0] if lows else lo
        hi = highs[0] if highs else max(hi, lo + 1.0)
        if lo >= hi:  # only a high limit below 0, or similar: keep a range below it
            lo = hi - 1.0
    if isinstance(signal, ModbusSignal) and signal.type in INTEGER_TYPES:
        raw_lo, raw_hi = integer_range(DataType(signal.type))
        ends = sorted(
            (raw_lo * signal.scale + signal.offset, raw_hi * signal.scale + signal.offset)
        )
        lo, hi = max(lo, ends[0]), min(hi, ends[1])
        if lo >= hi:
            lo, hi = ends
    return lo, hi


@dataclass
class _Generator:
    spec: SignalSim
    value: GeneratedValue
    state_index: int = 0
    state_left_s: float = 0.0
    increase: float = 0.0  # counters: exact increase since the start


@dataclass
class GeneratedDevice:
    """One asset's generated signals, stepped with the simulation."""

    key: tuple[str, str, str]
    profile: Profile
    specs: dict[str, SignalSim]
    rng: random.Random
    t_ms: int
    mqtt: bool = False
    next_publish_ms: int = 0
    _gens: dict[str, _Generator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, spec in self.specs.items():
            self._gens[name] = self._first(spec)
        self.next_publish_ms = self.t_ms + int(PUBLISH_EVERY_S * 1000)

    def _first(self, spec: SignalSim) -> _Generator:
        if isinstance(spec, ConstantSpec):
            return _Generator(spec, spec.value)
        if isinstance(spec, SineSpec):
            return _Generator(spec, self._sine(spec, self.t_ms))
        if isinstance(spec, RandomWalkSpec):
            start = spec.start if spec.start is not None else (spec.min + spec.max) / 2
            return _Generator(spec, start)
        if isinstance(spec, CounterSpec):
            return _Generator(spec, spec.start)
        index = self.rng.randrange(len(spec.values))
        gen = _Generator(spec, spec.values[index], index)
        gen.state_left_s = self.rng.expovariate(1 / spec.dwell_s(index))
        return gen

    def _sine(self, spec: SineSpec, t_ms: int) -> float:
        angle = 2 * math.pi * (t_ms / 1000 - spec.phase_s) / spec.period_s
        noise = self.rng.gauss(0, spec.noise) if spec.noise else 0.0
        return spec.mean + spec.amplitude * math.sin(angle) + noise

    def step(self, dt_s: float) -> None:
        """Advance every generator by dt_s; counters integrate over the step's start."""
        rates = {n: g.value for n, g in self._gens.items()}
        self.t_ms += round(dt_s * 1000)
        for gen in self._gens.values():
            spec = gen.spec
            if isinstance(spec, SineSpec):
                gen.value = self._sine(spec, self.t_ms)
            elif isinstance(spec, RandomWalkSpec):
                gen.value = self._walk(spec, float(gen.value), dt_s)
            elif isinstance(spec, CounterSpec):
                rate = spec.rate_per_h if spec.integral_of is None else rates.get(spec.integral_of)
                per_h = float(rate) if isinstance(rate, int | float) else 0.0
                gen.increase += max(0.0, per_h) * dt_s / 3600.0
                gen.value = spec.start + gen.increase
            elif isinstance(spec, StateSpec):
                self._dwell(gen, spec, dt_s)

    def _walk(self, spec: RandomWalkSpec, value: float, dt_s: float) -> float:
        value += self.rng.gauss(0, spec.step * math.sqrt(dt_s / 60.0))
        if value > spec.max:  # reflect at the walls: it stays inside and keeps moving
            value = max(spec.min, 2 * spec.max - value)
        elif value < spec.min:
            value = min(spec.max, 2 * spec.min - value)
        return value

    def _dwell(self, gen: _Generator, spec: StateSpec, dt_s: float) -> None:
        gen.state_left_s -= dt_s
        if gen.state_left_s > 0 or len(spec.values) == 1:
            return
        others = [i for i in range(len(spec.values)) if i != gen.state_index]
        gen.state_index = self.rng.choice(others)
        gen.value = spec.values[gen.state_index]
        gen.state_left_s = self.rng.expovariate(1 / spec.dwell_s(gen.state_index))

    def values(self) -> dict[str, GeneratedValue]:
        return {name: gen.value for name, gen in self._gens.items()}

    def counter_increase(self) -> dict[str, float]:
        """Each counter's exact increase since the start (the ground truth of totals)."""
        return {n: g.increase for n, g in self._gens.items() if isinstance(g.spec, CounterSpec)}

    def messages(self, values: dict[str, GeneratedValue]) -> list[DeviceMessage]:
        """An MQTT device's messages due by now, built from `values` (faults applied)."""
        profile = self.profile
        if not self.mqtt or self.t_ms < self.next_publish_ms:
            return []
        assert isinstance(profile, MqttProfile)
        self.next_publish_ms = self.t_ms + int(PUBLISH_EVERY_S * 1000)
        out = []
        for topic in profile.topics:
            payload: dict[str, Any] = {"ts": self.t_ms}
            for signal in profile.signals:
                if signal.topic == topic and signal.name in values:
                    _put(payload, signal.json_path, _as_json(signal, values[signal.name]))
            out.append(DeviceMessage(self.t_ms, self.key[2], topic, payload))
        return out


def _as_json(signal: MqttSignal, value: GeneratedValue) -> GeneratedValue:
    if signal.map is not None:
        for text, mapped in signal.map.items():
            if mapped == value:
                return text
    if signal.type == "int" and isinstance(value, int | float) and not isinstance(value, bool):
        return round((value - signal.offset) / signal.scale)
    if signal.type == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return round((value - signal.offset) / signal.scale, 6)
    return value


def _put(payload: dict[str, Any], json_path: str, value: Any) -> None:
    node = payload
    *parents, leaf = json_path[2:].split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def generated_device(
    key: tuple[str, str, str],
    asset: Asset,
    profile: Profile,
    provided: set[str],
    rng: random.Random,
    t_ms: int,
    publishes: bool = True,
) -> GeneratedDevice | None:
    """The generators of the signals with a `simulate:` block and of those the asset's
    model does not `provide`; None when there are none and it publishes nothing. An MQTT
    device `publishes` its messages here unless its physics does (the car park's)."""
    specs: dict[str, SignalSim] = {}
    for signal in profile.signals:
        spec = asset.simulate.get(signal.name) or signal.simulate
        if spec is None and signal.name not in provided:
            spec = default_spec(signal, asset, profile)
        if spec is not None:
            specs[signal.name] = spec
    mqtt = isinstance(profile, MqttProfile) and publishes
    if not specs and not mqtt:
        return None
    return GeneratedDevice(key, profile, specs, rng, t_ms, mqtt=mqtt)


def build_generators(
    config: SiteConfig, world: World, start_ms: int
) -> dict[AssetKey, GeneratedDevice]:
    """A GeneratedDevice for every asset with signals its physics (if any) lacks."""
    devices: dict[AssetKey, GeneratedDevice] = {}
    for ref in config.assets():
        profile = config.profiles.get(ref.asset.profile or "")
        if profile is None:
            continue
        car_park = isinstance(world.models.get(ref.key), ParkingLotModel | GateModel)
        provided = (
            {s.name for s in profile.signals} if car_park else set(model_values(world, ref.key))
        )
        rng = world.rng(*ref.key, "generated")
        device = generated_device(
            ref.key, ref.asset, profile, provided, rng, start_ms, publishes=not car_park
        )
        if device is not None:
            devices[ref.key] = device
    return devices


def model_values(world: World, key: AssetKey) -> dict[str, Value]:
    """What the world's model of an asset says (physics, or another source the world
    keeps for its kind); nothing for an asset without one or a car-park device."""
    model = world.models.get(key)
    if model is None or isinstance(model, CAR_PARK_MODELS):
        return {}
    # `World.values` is the same call, refused for a model of an MQTT device (values,
    # no register image): asked of the model at once, every poll of every asset.
    return dict(model.values())
