"""Fault injection: turn a scenario's schedule into changes of the simulated world.

Physical faults change the models (a pump loses suction, a controller sticks on, a
barrier controller reports a fault);
sensor faults change what a device reports (stuck, drifting); communication faults
change how a device answers on the wire (handled by the Modbus server through
`comms`); a gateway link cut is exposed through `links_down` for the uplink proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from simulators.modbus_server import CommsFault, UnitFault
from simulators.physics.common import Value
from simulators.physics.parking import GateModel, ParkingLotModel
from simulators.physics.pump import PumpModel
from simulators.physics.transformer import TransformerModel
from simulators.physics.water_quality import WaterQualityModel
from simulators.scenario import Fault, FaultKind, Scenario
from simulators.world import AssetKey, World


@dataclass
class FaultEvent:
    t_ms: int
    fault: Fault
    active: bool  # True: the fault starts; False: it ends


@dataclass
class FaultInjector:
    scenario: Scenario
    world: World
    start_ms: int
    comms: dict[AssetKey, UnitFault] = field(default_factory=dict)
    links_down: set[AssetKey] = field(default_factory=set)
    _active: set[int] = field(default_factory=set)
    _done: set[int] = field(default_factory=set)
    _stuck: dict[tuple[AssetKey, str], Value] = field(default_factory=dict)
    _drift: dict[tuple[AssetKey, str], tuple[float, int]] = field(default_factory=dict)
    # what a device reports before sensor faults (physics and generated signals)
    source_values: Callable[[AssetKey], dict[str, Value]] | None = None

    def update(self, t_ms: int) -> list[FaultEvent]:
        """Start and end faults whose time has come; return what changed."""
        events: list[FaultEvent] = []
        for i, fault in enumerate(self.scenario.faults):
            begin = self.start_ms + int(fault.at_s * 1000)
            end = None if fault.duration_s is None else begin + int(fault.duration_s * 1000)
            if i not in self._active and i not in self._done and t_ms >= begin:
                self._active.add(i)
                self._apply(fault, True, t_ms)
                events.append(FaultEvent(begin, fault, True))
            if i in self._active and end is not None and t_ms >= end:
                self._active.discard(i)
                self._done.add(i)
                self._apply(fault, False, t_ms)
                events.append(FaultEvent(end, fault, False))
        return events

    def active_faults(self) -> list[Fault]:
        return [self.scenario.faults[i] for i in sorted(self._active)]

    def filter(self, key: AssetKey, values: dict[str, Value], t_ms: int) -> dict[str, Value]:
        """What a faulty sensor reports instead of the physical value."""
        if not self._stuck and not self._drift:
            return values  # every poll of every asset asks; a sensor fault is rare
        for (fkey, signal), value in self._stuck.items():
            if fkey == key and signal in values:
                values[signal] = value
        for (fkey, signal), (rate_per_h, since) in self._drift.items():
            current = values.get(signal)
            if fkey == key and isinstance(current, int | float) and not isinstance(current, bool):
                values[signal] = current + rate_per_h * (t_ms - since) / 3_600_000
        return values

    def _apply(self, fault: Fault, on: bool, t_ms: int) -> None:
        key, p = fault.key, fault.params
        model = self.world.models.get(key)
        kind = fault.kind
        if isinstance(model, PumpModel) and p.get("hand_start", False):
            model.hand = on
            if on:
                model.start()
        if kind is FaultKind.PUMP_DRY_RUN:
            assert isinstance(model, PumpModel)
            model.dry_run = on
        elif kind is FaultKind.PUMP_TRIP:
            assert isinstance(model, PumpModel)
            if on:
                model.trip(int(p.get("fault_code", 1)))
            else:
                model.reset()
        elif kind is FaultKind.BEARING_OVERHEAT:
            assert isinstance(model, PumpModel)
            model.bearing_fault_rise_c = float(p.get("rise_c", 50.0)) if on else 0.0
            model.vibration_extra = float(p.get("vibration_mm_s", 4.0)) if on else 0.0
        elif kind in (FaultKind.SENSOR_STUCK, FaultKind.SENSOR_DRIFT):
            self._sensor(fault, on, t_ms)
        elif kind in COMMS_FAULTS:
            self._comms(fault, on)
        elif kind is FaultKind.TRANSFORMER_OVERLOAD:
            assert isinstance(model, TransformerModel)
            model.extra_load_kva = model.kva * float(p.get("extra_pct", 125.0)) / 100 if on else 0.0
        elif kind is FaultKind.TANK_OVERFLOW:
            self.world.stations[key[:2]].controller_stuck_on = on
        elif kind is FaultKind.TANK_LOW_LEVEL:
            self.world.demand_multiplier[key] = float(p.get("factor", 8.0)) if on else 1.0
        elif kind is FaultKind.CLO2_OUT_OF_RANGE:
            assert isinstance(model, WaterQualityModel)
            high = p.get("mode", "low") == "high"
            model.overdose_factor = float(p.get("factor", 2.2)) if on and high else 1.0
            model.dosing_failed = on and not high
        elif kind is FaultKind.GATE_STUCK_OPEN:
            assert isinstance(model, GateModel)
            model.stuck_open = on
            if on:
                model.barrier_open = True
        elif kind is FaultKind.GATE_FAULT:
            assert isinstance(model, GateModel)
            if on:
                model.break_down(int(p.get("fault_code", 2)))
            else:
                model.repair()
        elif kind is FaultKind.LOT_FULL:
            assert isinstance(model, ParkingLotModel)
            model.surge_factor = float(p.get("surge", 12.0)) if on else 1.0
        elif kind is FaultKind.GATEWAY_LINK_DOWN:
            (self.links_down.add if on else self.links_down.discard)(key)

    def _sensor(self, fault: Fault, on: bool, t_ms: int) -> None:
        signal = str(fault.params["signal"])
        slot = (fault.key, signal)
        if not on:
            self._stuck.pop(slot, None)
            self._drift.pop(slot, None)
        elif fault.kind is FaultKind.SENSOR_STUCK:
            current = (self.source_values or self.world.values)(fault.key)
            self._stuck[slot] = current[signal]
        else:
            self._drift[slot] = (float(fault.params.get("rate_per_h", 0.5)), t_ms)

    def _comms(self, fault: Fault, on: bool) -> None:
        if on:
            self.comms[fault.key] = comms_fault(fault)
        else:
            self.comms.pop(fault.key, None)


COMMS_FAULTS = frozenset(
    {FaultKind.DEVICE_NOT_RESPONDING, FaultKind.MODBUS_EXCEPTION, FaultKind.GARBLED_RESPONSE}
)


def comms_fault(fault: Fault) -> UnitFault:
    """How a device with this communication fault answers on the wire."""
    if fault.kind is FaultKind.DEVICE_NOT_RESPONDING:
        return UnitFault(CommsFault.NO_RESPONSE)
    if fault.kind is FaultKind.MODBUS_EXCEPTION:
        return UnitFault(CommsFault.EXCEPTION, int(fault.params.get("code", 4)))
    mode = CommsFault.SHORT if fault.params.get("mode") == "short" else CommsFault.GARBLED
    return UnitFault(mode)
