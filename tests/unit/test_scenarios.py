"""Every labelled fault shows its symptom in the simulated data before its deadline;
the nominal scenario shows none. These are the ground truth the alarm engine is held to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from facility.config import SiteConfig
from simulators.engine import Simulation
from simulators.faults import FaultEvent
from simulators.physics.parking import GateModel, ParkingLotModel
from simulators.physics.pump import PumpModel
from simulators.physics.tank import TankModel
from simulators.physics.transformer import TransformerModel
from simulators.physics.water_quality import WaterQualityModel
from simulators.scenario import Fault, FaultKind, Scenario, load_scenario
from tests.conftest import DEMO_SITE

SCENARIOS = DEMO_SITE / "scenarios"
STEP_S = 5.0

Symptom = Callable[[Simulation, Fault, dict[str, float]], bool]


def _values(sim: Simulation, fault: Fault) -> dict[str, object]:
    return dict(sim.values(fault.key))


def _limit(sim: Simulation, fault: Fault, signal: str, which: str) -> float:
    ref = next(r for r in sim.config.assets() if r.key == fault.key)
    value = getattr(ref.asset.limits[signal], which)
    assert value is not None
    return float(value)


def _pump(sim: Simulation, fault: Fault) -> PumpModel:
    model = sim.world.models[fault.key]
    assert isinstance(model, PumpModel)
    return model


def _stuck(sim: Simulation, fault: Fault, memo: dict[str, float]) -> bool:
    """Flatline: the reported value stops changing while the real one moves on."""
    reported = float(_values(sim, fault)["level_m"])  # type: ignore[arg-type]
    real = sim.world.models[fault.key]
    assert isinstance(real, TankModel)
    if memo.get("reported") != reported:
        memo.update(reported=reported, real=real.level_m)
        return False
    return abs(real.level_m - memo["real"]) > 0.05


def _gate_open_long(sim: Simulation, fault: Fault, memo: dict[str, float]) -> bool:
    gate = sim.world.models[fault.key]
    assert isinstance(gate, GateModel)
    if not gate.barrier_open:
        memo.pop("since", None)
        return False
    since = memo.setdefault("since", sim.t_ms)
    return sim.t_ms - since >= 5 * 60_000


def _gate_fault(sim: Simulation, fault: Fault, memo: dict[str, float]) -> bool:
    """The controller reports the fault and its code, with the arm down (what it lets
    through meanwhile: tests/unit/test_physics.py)."""
    gate = sim.world.models[fault.key]
    assert isinstance(gate, GateModel)
    return gate.fault and gate.fault_code == fault.params["fault_code"] and not gate.barrier_open


def _overloaded(sim: Simulation, fault: Fault, memo: dict[str, float]) -> bool:
    """Past 120 % for the overload at once; past 100 % (and short of 120 %) for the
    sustained one."""
    load = _num(sim, fault, "load_pct")
    if fault.expect is not None and fault.expect.alarm == "transformer_overload_sustained":
        return 100.0 < load < 120.0
    return load > 120.0


def _lot_full(sim: Simulation, fault: Fault, memo: dict[str, float]) -> bool:
    lot = sim.world.models[fault.key]
    assert isinstance(lot, ParkingLotModel)
    return lot.occupied >= lot.capacity


def _num(sim: Simulation, fault: Fault, signal: str) -> float:
    value = _values(sim, fault)[signal]
    assert isinstance(value, int | float)
    return float(value)


SYMPTOMS: dict[FaultKind, Symptom] = {
    FaultKind.PUMP_DRY_RUN: lambda sim, f, m: (
        _pump(sim, f).running
        and _num(sim, f, "flow_m3h") < 0.1 * _pump(sim, f).curve.rated_flow_m3h
        and _num(sim, f, "frequency_hz") > 40
    ),
    FaultKind.PUMP_TRIP: lambda sim, f, m: (
        bool(_values(sim, f)["tripped"]) and _values(sim, f)["fault_code"] == f.params["fault_code"]
    ),
    FaultKind.BEARING_OVERHEAT: lambda sim, f, m: _num(sim, f, "bearing_temp_c") > 80.0,
    FaultKind.SENSOR_STUCK: _stuck,
    FaultKind.SENSOR_DRIFT: lambda sim, f, m: (
        _num(sim, f, "level_m") > _limit(sim, f, "level_m", "high")
    ),
    FaultKind.DEVICE_NOT_RESPONDING: lambda sim, f, m: f.key in sim.comms,
    FaultKind.MODBUS_EXCEPTION: lambda sim, f, m: f.key in sim.comms,
    FaultKind.GARBLED_RESPONSE: lambda sim, f, m: f.key in sim.comms,
    FaultKind.TRANSFORMER_OVERLOAD: _overloaded,
    FaultKind.TANK_OVERFLOW: lambda sim, f, m: (
        _num(sim, f, "level_m") >= _limit(sim, f, "level_m", "high_high")
    ),
    FaultKind.TANK_LOW_LEVEL: lambda sim, f, m: (
        _num(sim, f, "level_m") <= _limit(sim, f, "level_m", "low")
    ),
    FaultKind.CLO2_OUT_OF_RANGE: lambda sim, f, m: (
        _num(sim, f, "clo2_residual_mg_l") < _limit(sim, f, "clo2_residual_mg_l", "low")
    ),
    FaultKind.GATE_STUCK_OPEN: _gate_open_long,
    FaultKind.GATE_FAULT: _gate_fault,
    FaultKind.LOT_FULL: _lot_full,
    FaultKind.GATEWAY_LINK_DOWN: lambda sim, f, m: f.key in sim.links_down,
}


def scenario_files() -> list[Path]:
    return sorted(p for p in SCENARIOS.glob("*.yaml") if p.stem not in ("nominal",))


def test_every_fault_kind_has_a_scenario_and_a_symptom(demo_config: SiteConfig) -> None:
    kinds = {f.kind for p in scenario_files() for f in load_scenario(p, demo_config).faults}
    assert kinds == set(FaultKind)
    assert set(SYMPTOMS) == set(FaultKind)


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_fault_shows_its_symptom_before_its_deadline(path: Path, demo_config: SiteConfig) -> None:
    scenario = load_scenario(path, demo_config)
    assert scenario.start is not None
    start_ms = int(scenario.start.timestamp() * 1000)
    sim = Simulation(
        demo_config, seed=scenario.seed or 1, start_ms=start_ms, scenario=scenario, step_s=STEP_S
    )
    for fault in scenario.faults:
        assert fault.expect is not None, f"{fault.kind} has no expected alarm"
        symptom = SYMPTOMS[fault.kind]
        sim.advance_to(start_ms + int(fault.at_s * 1000) - int(STEP_S * 1000))
        assert not symptom(sim, fault, {}), f"{fault.kind} symptom before the fault started"
        memo: dict[str, float] = {}
        deadline = start_ms + int((fault.at_s + fault.expect.within_s) * 1000)
        seen = False
        while sim.t_ms <= deadline and not seen:
            sim.advance_to(sim.t_ms + int(STEP_S * 1000))
            seen = symptom(sim, fault, memo)
        assert seen, f"{fault.kind} on {fault.target}: no symptom within {fault.expect.within_s} s"


def test_faults_end_and_the_site_recovers(demo_config: SiteConfig) -> None:
    scenario = load_scenario(SCENARIOS / "pump_trip.yaml", demo_config)
    assert scenario.start is not None
    start_ms = int(scenario.start.timestamp() * 1000)
    sim = Simulation(demo_config, seed=1, start_ms=start_ms, scenario=scenario, step_s=STEP_S)
    events: list[FaultEvent] = []
    sim_end = start_ms + int(scenario.duration_s * 1000)
    while sim.t_ms < sim_end:
        events.extend(sim.advance_to(sim.t_ms + 60_000).faults)
    assert [(e.fault.kind, e.active) for e in events] == [
        (FaultKind.PUMP_TRIP, True),
        (FaultKind.PUMP_TRIP, False),
    ]
    pump = sim.world.models[("fengshou", "xiba", "pump_1")]
    assert isinstance(pump, PumpModel) and not pump.tripped and pump.fault_code == 0


def nominal_breaches(sim: Simulation) -> list[str]:
    """Anything an alarm engine with the site's limits would alarm on."""
    out: list[str] = []
    limits = {r.key: r.asset.limits for r in sim.config.assets()}
    for key, model in sim.world.models.items():
        where = "/".join(key)
        if isinstance(model, PumpModel):
            if (
                model.tripped
                or model.bearing_temp_c > 80
                or (
                    model.running
                    and model.frequency_hz > 40
                    and model.flow_m3h < 0.3 * model.curve.rated_flow_m3h
                )
            ):
                out.append(f"{where} pump abnormal")
        elif isinstance(model, TankModel):
            lim = limits[key]["level_m"]
            if not (lim.low or 0) < model.level_m < (lim.high or 1e9):
                out.append(f"{where} level {model.level_m:.2f}")
        elif isinstance(model, TransformerModel) and model.load_factor > 1.0:
            out.append(f"{where} load {model.load_factor:.2f}")
        elif isinstance(model, WaterQualityModel):
            lim = limits[key]["clo2_residual_mg_l"]
            if not (lim.low or 0) < model.residual_mg_l < (lim.high or 1e9):
                out.append(f"{where} ClO2 {model.residual_mg_l:.2f}")
        elif isinstance(model, ParkingLotModel) and model.occupied >= model.capacity:
            out.append(f"{where} full")
        elif isinstance(model, GateModel) and (model.stuck_open or model.fault):
            out.append(f"{where} stuck")
    return out


def test_nominal_week_has_nothing_to_alarm_on(demo_config: SiteConfig) -> None:
    scenario = load_scenario(SCENARIOS / "nominal.yaml", demo_config)
    assert isinstance(scenario, Scenario) and scenario.start is not None
    start_ms = int(scenario.start.timestamp() * 1000)
    sim = Simulation(
        demo_config, seed=scenario.seed or 1, start_ms=start_ms, scenario=scenario, step_s=10.0
    )
    end = start_ms + int(scenario.duration_s * 1000)
    while sim.t_ms < end:
        sim.advance_to(sim.t_ms + 600_000)
        assert nominal_breaches(sim) == [], sim.t_ms
