"""Scenarios: scheduled faults with the alarm each one must raise (ground truth).

A scenario file is YAML:

    scenario: pump_trip_xiba
    description: Duty pump trips; the standby pump takes over.
    start: 2026-06-01T06:00:00+08:00     # optional; default: now
    duration: 2h
    seed: 7                                # optional
    faults:
      - kind: pump_trip
        target: fengshou/xiba/pump_1       # site/station/asset
        at: 30m                            # offset from the start
        duration: 20m                      # optional; default: to the end
        params: {fault_code: 1}
        expect: {alarm: pump_trip, priority: high, within: 60s, clears_within: 1m}

Each expected alarm is raised once over the whole run, within `within` of the fault's
start, and is back to normal within `clears_within` (plus its rule's off-delay) of the
fault's end. A nominal scenario has no faults: it must raise no alarm at all.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from facility.config import SiteConfig
from facility.profile import MqttProfile
from facility.site import AssetKind
from facility.sourcemap import ConfigError, ConfigIssue, SourceDoc, load_yaml, validate
from simulators.clock import parse_duration


class FaultKind(StrEnum):
    PUMP_DRY_RUN = "pump_dry_run"
    PUMP_TRIP = "pump_trip"
    BEARING_OVERHEAT = "bearing_overheat"
    SENSOR_STUCK = "sensor_stuck"
    SENSOR_DRIFT = "sensor_drift"
    DEVICE_NOT_RESPONDING = "device_not_responding"
    MODBUS_EXCEPTION = "modbus_exception"
    GARBLED_RESPONSE = "garbled_response"
    TRANSFORMER_OVERLOAD = "transformer_overload"
    TANK_OVERFLOW = "tank_overflow"
    TANK_LOW_LEVEL = "tank_low_level"
    CLO2_OUT_OF_RANGE = "clo2_out_of_range"
    GATE_STUCK_OPEN = "gate_stuck_open"
    GATE_FAULT = "gate_fault"
    LOT_FULL = "lot_full"
    GATEWAY_LINK_DOWN = "gateway_link_down"


# Which asset kinds a fault can hit (None: any polled Modbus device).
FAULT_TARGETS: dict[FaultKind, frozenset[AssetKind] | None] = {
    FaultKind.PUMP_DRY_RUN: frozenset({AssetKind.PUMP}),
    FaultKind.PUMP_TRIP: frozenset({AssetKind.PUMP}),
    FaultKind.BEARING_OVERHEAT: frozenset({AssetKind.PUMP}),
    FaultKind.SENSOR_STUCK: None,
    FaultKind.SENSOR_DRIFT: None,
    FaultKind.DEVICE_NOT_RESPONDING: None,
    FaultKind.MODBUS_EXCEPTION: None,
    FaultKind.GARBLED_RESPONSE: None,
    FaultKind.TRANSFORMER_OVERLOAD: frozenset({AssetKind.TRANSFORMER}),
    FaultKind.TANK_OVERFLOW: frozenset({AssetKind.TANK}),
    FaultKind.TANK_LOW_LEVEL: frozenset({AssetKind.TANK}),
    FaultKind.CLO2_OUT_OF_RANGE: frozenset({AssetKind.WATER_QUALITY}),
    FaultKind.GATE_STUCK_OPEN: frozenset({AssetKind.BARRIER_GATE}),
    FaultKind.GATE_FAULT: frozenset({AssetKind.BARRIER_GATE}),
    FaultKind.LOT_FULL: frozenset({AssetKind.PARKING_LOT}),
    FaultKind.GATEWAY_LINK_DOWN: frozenset({AssetKind.GATEWAY}),
}


class Expectation(BaseModel):
    """The alarm the fault must raise: the label a test checks the alarm engine against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alarm: str
    priority: Literal["critical", "high", "medium", "low"] = "high"
    within_s: float = Field(default=60.0, alias="within")
    # How long the symptom outlasts the fault in the physics (a bearing cools, a drained
    # tank refills): the alarm must be back to normal by the fault's end plus this plus
    # its rule's off-delay. The default covers a device's next report.
    clears_within_s: float = Field(default=60.0, alias="clears_within")
    asset: str | None = None  # default: the fault's target

    @field_validator("within_s", "clears_within_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    target: str = Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+/[a-z0-9_]+$")
    at_s: float = Field(alias="at", ge=0)
    duration_s: float | None = Field(default=None, alias="duration", gt=0)
    params: dict[str, Any] = Field(default_factory=dict)
    expect: Expectation | None = None
    # Alarms the symptom also raises on its way (a level rising through H to HH):
    # expected as well, each once, so they are not counted as spurious.
    also_expect: list[Expectation] = Field(default_factory=list)

    @property
    def expectations(self) -> list[Expectation]:
        return ([self.expect] if self.expect else []) + self.also_expect

    @field_validator("at_s", "duration_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)

    @property
    def key(self) -> tuple[str, str, str]:
        site, station, asset = self.target.split("/")
        return site, station, asset


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    start: datetime | None = None
    duration_s: float = Field(default=86400.0, alias="duration", gt=0)
    seed: int | None = None
    faults: list[Fault] = Field(default_factory=list)

    @field_validator("duration_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


NOMINAL = Scenario.model_validate({"scenario": "nominal", "description": "no faults"})


def link_faults(scenario: Scenario) -> list[Fault]:
    """The faults that cut a gateway's uplink link: they need the runner's links
    (`--uplink`), which only the gateways connected through them feel."""
    return [f for f in scenario.faults if f.kind is FaultKind.GATEWAY_LINK_DOWN]


def load_scenario(path: Path, config: SiteConfig) -> Scenario:
    """Load a scenario and check every target against the site; errors name file and line."""
    doc = load_yaml(Path(path))
    scenario = validate(Scenario, doc)
    issues = check_scenario(scenario, config, doc)
    if issues:
        raise ConfigError(issues)
    return scenario


def check_scenario(scenario: Scenario, config: SiteConfig, doc: SourceDoc) -> list[ConfigIssue]:
    kinds = {ref.key: ref.asset.kind for ref in config.assets()}
    modbus = {ref.key for ref in config.assets() if ref.asset.modbus is not None}
    mqtt = _mqtt_devices(config)
    issues: list[ConfigIssue] = []
    for i, fault in enumerate(scenario.faults):
        kind = kinds.get(fault.key)
        if kind is None:
            issues.append(doc.issue(["faults", i, "target"], f"no asset {fault.target!r}"))
            continue
        allowed = FAULT_TARGETS[fault.kind]
        polled = fault.key in modbus or fault.kind in mqtt.get(fault.key, ())
        if allowed is None and not polled:
            issues.append(
                doc.issue(
                    ["faults", i, "target"],
                    f"{fault.kind.value} needs a Modbus device, {fault.target!r} is not one"
                    + _mqtt_hint(mqtt.get(fault.key)),
                )
            )
        elif allowed is not None and kind not in allowed:
            names = ", ".join(sorted(k.value for k in allowed))
            issues.append(
                doc.issue(
                    ["faults", i, "target"],
                    f"{fault.kind.value} applies to {names}, not {kind}",
                )
            )
        if fault.kind in (FaultKind.SENSOR_STUCK, FaultKind.SENSOR_DRIFT):
            issues.extend(_check_signal_param(fault, i, config, doc))
    return issues


# MQTT devices whose messages come from physics (the car park's) can only fall silent;
# a generated MQTT device's values can also stick or drift.
MQTT_PHYSICS_KINDS = frozenset({"barrier_gate", "parking_lot"})
MQTT_FAULTS = frozenset(
    {FaultKind.DEVICE_NOT_RESPONDING, FaultKind.SENSOR_STUCK, FaultKind.SENSOR_DRIFT}
)


def _mqtt_devices(config: SiteConfig) -> dict[tuple[str, str, str], frozenset[FaultKind]]:
    """Which of the device-level faults each MQTT device can show."""
    out: dict[tuple[str, str, str], frozenset[FaultKind]] = {}
    for ref in config.assets():
        if not isinstance(config.profiles.get(ref.asset.profile or ""), MqttProfile):
            continue
        physics = str(getattr(ref.asset.kind, "value", ref.asset.kind)) in MQTT_PHYSICS_KINDS
        out[ref.key] = frozenset({FaultKind.DEVICE_NOT_RESPONDING}) if physics else MQTT_FAULTS
    return out


def _mqtt_hint(shows: frozenset[FaultKind] | None) -> str:
    if not shows:
        return ""
    return f" (an MQTT device: {', '.join(sorted(k.value for k in shows))})"


def _check_signal_param(
    fault: Fault, i: int, config: SiteConfig, doc: SourceDoc
) -> list[ConfigIssue]:
    signal = fault.params.get("signal")
    ref = next(r for r in config.assets() if r.key == fault.key)
    names = {s.name for s in config.profile_of(ref).signals}
    if signal not in names:
        return [
            doc.issue(
                ["faults", i, "params", "signal"],
                f"{fault.kind.value} needs params.signal, one of: {', '.join(sorted(names))}",
            )
        ]
    return []
