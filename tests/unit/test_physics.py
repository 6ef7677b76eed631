"""Physics sanity: the numbers an operator would check on a real site."""

from __future__ import annotations

import io
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from facility.config import SiteConfig
from facility.site import AssetKind
from simulators.engine import Simulation
from simulators.feed import record
from simulators.physics.parking import GateModel, ParkingLotModel
from simulators.physics.pump import PumpCurve, PumpModel
from simulators.physics.station import StationModel
from simulators.physics.tank import TankModel
from simulators.physics.transformer import TransformerModel
from simulators.scenario import load_scenario
from tests.conftest import DEMO_SITE

START_MS = 1780264800000  # 2026-06-01 06:00 Asia/Shanghai
DAY_S = 86400


def run_day(
    config: SiteConfig, seed: int = 1, days: float = 1.0, step_s: float = 10.0
) -> Simulation:
    sim = Simulation(config, seed=seed, start_ms=START_MS, step_s=step_s)
    sim.advance_to(START_MS + int(days * DAY_S * 1000))
    return sim


def tanks(sim: Simulation) -> dict[tuple[str, str, str], TankModel]:
    return {k: m for k, m in sim.world.models.items() if isinstance(m, TankModel)}


def test_tank_mass_balance_over_a_day_within_half_a_percent(demo_config: SiteConfig) -> None:
    sim0 = Simulation(demo_config, seed=4, start_ms=START_MS, step_s=10.0)
    start_volume = {k: t.volume_m3 for k, t in tanks(sim0).items()}
    sim0.advance_to(START_MS + DAY_S * 1000)
    for key, tank in tanks(sim0).items():
        change = tank.volume_m3 - start_volume[key]
        ledger = tank.inflow_total_m3 - tank.served_total_m3 - tank.overflow_total_m3
        throughput = tank.inflow_total_m3 + tank.served_total_m3
        assert throughput > 0, key
        assert abs(change - ledger) <= 0.005 * throughput, key
        assert tank.served_total_m3 > 0.5 * tank.inflow_total_m3, key


def test_station_flow_reaches_the_tanks(demo_config: SiteConfig) -> None:
    sim = run_day(demo_config, seed=5)
    for (site, station), model in sim.world.stations.items():
        if not model.tanks:
            continue
        delivered = sum(t.inflow_total_m3 for t in model.tanks.values())
        assert delivered == pytest.approx(model.pumped_total_m3, rel=0.005), (site, station)


def test_daily_demand_matches_population(demo_config: SiteConfig) -> None:
    sim = run_day(demo_config, seed=6)
    for site in demo_config.sites:
        if site.kind != "water_supply":
            continue
        served = sum(t.served_total_m3 for k, t in tanks(sim).items() if k[0] == site.id)
        expected = (site.population or 0) * site.demand_l_per_person_day / 1000
        assert served == pytest.approx(expected, rel=0.08), site.id


def test_level_control_keeps_tanks_between_set_points_for_two_days(
    demo_config: SiteConfig,
) -> None:
    sim = Simulation(demo_config, seed=2, start_ms=START_MS, step_s=10.0)
    lowest: dict[tuple[str, str, str], float] = {}
    highest: dict[tuple[str, str, str], float] = {}
    for hour in range(1, 49):
        for _ in range(6):
            sim.advance_to(sim.t_ms + 600_000)
            for key, tank in tanks(sim).items():
                fraction = tank.level_m / tank.height_m
                lowest[key] = min(lowest.get(key, 1.0), fraction)
                highest[key] = max(highest.get(key, 0.0), fraction)
        assert hour
    for key, tank in tanks(sim).items():
        station = sim.world.stations[key[:2]]
        assert lowest[key] >= station.start_fraction - 0.03, key
        assert highest[key] <= 0.94, key  # below every tank's high alarm (95%)
        assert tank.overflow_total_m3 == 0 and tank.shortfall_total_m3 == 0, key
        assert highest[key] >= station.stop_fraction - 0.05, key  # it does fill up


def test_out_of_service_and_standby_pumps_never_run(demo_config: SiteConfig) -> None:
    sim = run_day(demo_config, seed=3)
    refs = {r.key: r for r in demo_config.assets()}
    for key, model in sim.world.models.items():
        if not isinstance(model, PumpModel):
            continue
        station = refs[key].station
        if refs[key].asset.status.value == "out_of_service" or station.mode == "standby":
            assert not model.running and model.power_kw == 0.0, key
    running = [k for k, m in sim.world.models.items() if isinstance(m, PumpModel) and m.starts]
    assert running


def test_pump_meets_its_rated_point_and_follows_affinity_laws() -> None:
    curve = PumpCurve(rated_flow_m3h=323, rated_head_m=90)
    pump = PumpModel(curve=curve, motor_kw=110, voltage_v=380, rng=random.Random(1))
    tank = TankModel(capacity_m3=4000, height_m=5, rng=random.Random(2), level_m=1.0)
    station = StationModel(pumps={"p": pump}, pump_order=["p"], tanks={"t": tank}, static_head_m=68)
    pump.start()
    for _ in range(60):
        station.advance(1.0, 0, 20.0)
    assert pump.flow_m3h == pytest.approx(323, rel=0.01)
    assert pump.head_m == pytest.approx(90, rel=0.01)
    assert pump.power_kw == pytest.approx(110, rel=0.03)
    assert 150 < pump.current_a < 230
    full_speed = pump.flow_m3h
    for p in station.pumps.values():
        p.setpoint_hz = 45.0
    for _ in range(30):
        station.advance(1.0, 0, 20.0)
    assert pump.flow_m3h < full_speed * 0.9  # less speed, less flow against the same lift


def test_two_pumps_in_parallel_give_more_flow_but_less_than_double() -> None:
    def flow(n: int) -> float:
        pumps = {
            f"p{i}": PumpModel(PumpCurve(300, 80), 90, 380, random.Random(i)) for i in range(n)
        }
        tank = TankModel(capacity_m3=5000, height_m=5, rng=random.Random(9), level_m=1.0)
        station = StationModel(
            pumps=pumps, pump_order=list(pumps), tanks={"t": tank}, static_head_m=55, duty_pumps=n
        )
        for _ in range(60):
            station.advance(1.0, 0, 20.0)
        return station.flow_m3h

    one, two = flow(1), flow(2)
    assert one * 1.1 < two < one * 2


def test_transformer_runs_hotter_under_more_load() -> None:
    temps = []
    for load in (0.3, 0.7, 1.0, 1.2):
        t = TransformerModel(kva=100, voltage_v=400, rng=random.Random(1))
        t.set_load(pump_kw=load * 100 * 0.86 - t.aux_load_kw)
        for _ in range(24 * 60):
            t.advance(60.0, ambient_c=20.0)
        assert t.load_factor == pytest.approx(load, rel=0.01)
        assert t.hot_spot_c > t.top_oil_c > 20.0
        temps.append(t.top_oil_c)
    assert temps == sorted(temps)
    assert temps[2] == pytest.approx(20 + 55, abs=1.0)  # rated load: rated top-oil rise


def test_transformer_heats_slowly_with_its_oil_time_constant() -> None:
    t = TransformerModel(kva=100, voltage_v=400, rng=random.Random(1), top_oil_c=20.0)
    t.set_load(pump_kw=86 - t.aux_load_kw)
    t.advance(600.0, ambient_c=20.0)
    assert 20.0 < t.top_oil_c < 30.0  # 10 minutes into a 3-hour time constant


def test_transformer_steady_state_is_oil_rise_plus_hot_spot_gradient() -> None:
    """IEC 60076-7's steady state at a constant load and air: top oil = air + the oil
    rise, winding = top oil + the rated gradient × K^1.6."""
    for load in (0.0, 0.5, 1.0, 1.3):
        t = TransformerModel(kva=250, voltage_v=400, rng=random.Random(2), aux_load_kw=0.0)
        t.set_load(pump_kw=load * 250 * 0.86)
        for _ in range(48 * 60):
            t.advance(60.0, ambient_c=15.0)
        rise = 55.0 * ((load**2 * 5 + 1) / 6) ** 0.8
        assert t.top_oil_c == pytest.approx(15.0 + rise, abs=0.05)
        assert t.hot_spot_c == pytest.approx(t.top_oil_c + 23.0 * load**1.6, abs=0.05)


def test_a_transformers_winding_reads_the_oil_plus_a_lagging_gradient() -> None:
    """The gradient over the oil lags the load (τ 7 min), not the whole winding
    temperature: right after a start the winding is the oil's, never below it; a load
    step raises it by 63 % of the gradient in one winding time constant."""
    t = TransformerModel(kva=100, voltage_v=400, rng=random.Random(1), top_oil_c=40.0)
    values = t.values()
    assert values["winding_temp_c"] == values["top_oil_temp_c"] == 40.0
    t.set_load(pump_kw=86 - t.aux_load_kw)  # rated load: gradient 23 K
    t.advance(7 * 60.0, ambient_c=20.0)
    assert t.hot_spot_c - t.top_oil_c == pytest.approx(23.0 * (1 - math.exp(-1)), abs=0.01)
    t.set_load(pump_kw=0.0)
    for _ in range(60):
        t.advance(10.0, ambient_c=20.0)
        assert t.hot_spot_c >= t.top_oil_c


def overload_every_transformer(config: SiteConfig, folder: Path) -> Path:
    """A scenario that overloads each transformer in turn, an hour each with an hour
    between: the steps up and down where a lagged hot spot used to fall below the oil."""
    paths = [r.path for r in config.assets() if r.asset.kind == AssetKind.TRANSFORMER]
    faults = [
        {"kind": "transformer_overload", "target": path, "at": f"{1 + i}h", "duration": "1h"}
        for i, path in enumerate(paths)
    ]
    scenario = folder / "overloads.yaml"
    scenario.write_text(yaml.safe_dump({"scenario": "overloads", "faults": faults}))
    return scenario


def test_every_transformer_winding_above_top_oil_above_air_from_the_start(
    demo_config: SiteConfig, tmp_path: Path
) -> None:
    """Every transformer of the demo site, from its first reading through 26 hours of
    daily air temperature swings and an overload each: winding ≥ top oil ≥ air, as
    the device reports them."""
    scenario = load_scenario(overload_every_transformer(demo_config, tmp_path), demo_config)
    sim = Simulation(demo_config, seed=3, start_ms=START_MS, scenario=scenario, step_s=10.0)
    keys = [k for k, m in sim.world.models.items() if isinstance(m, TransformerModel)]
    assert len(keys) == 10  # site-facts.md: ten transformers
    peak = dict.fromkeys(keys, 0.0)
    for _ in range(26 * 60):
        for key in keys:
            v = sim.values(key)
            winding, oil, air = (
                float(v[name]) for name in ("winding_temp_c", "top_oil_temp_c", "ambient_temp_c")
            )
            assert winding >= oil >= air, (key, sim.t_ms, winding, oil, air)
            peak[key] = max(peak[key], winding - oil)
        sim.advance_to(sim.t_ms + 60_000)
    for key in keys:
        assert peak[key] > 23.0, key  # each overload (over 125 %) drove its gradient up


def test_a_tripped_duty_pump_is_replaced_at_once_mid_cycle() -> None:
    """The run request holds from the start level to the stop level: when the duty pump
    trips mid-cycle the next available one starts in the same control step, not when
    the tank has fallen back to its start level; the out-of-service one never does."""
    pumps = {
        name: PumpModel(PumpCurve(100, 60), 30, 380, random.Random(i), available=name != "p3")
        for i, name in enumerate(("p1", "p2", "p3"))
    }
    tank = TankModel(capacity_m3=500, height_m=5, rng=random.Random(9), level_m=1.9)
    station = StationModel(pumps=pumps, pump_order=list(pumps), tanks={"t": tank}, static_head_m=40)
    station.advance(1.0, 0, 20.0)
    assert [p.running for p in pumps.values()] == [True, False, False]
    for _ in range(600):
        station.advance(1.0, 0, 20.0)
    level = tank.level_m
    assert station.start_fraction * 5 < level < station.stop_fraction * 5
    pumps["p1"].trip(1)
    station.advance(1.0, 0, 20.0)
    assert [p.running for p in pumps.values()] == [False, True, False]
    assert tank.level_m > 0.99 * level  # no gap long enough to drain the tank
    for _ in range(2000):
        if not station.running:
            break
        station.advance(10.0, 0, 20.0)
    assert not station.calling and tank.level_m >= station.stop_fraction * 5


def test_the_labelled_pump_trip_hits_a_running_pump_and_the_standby_takes_over(
    demo_config: SiteConfig,
) -> None:
    scenario = load_scenario(DEMO_SITE / "scenarios" / "pump_trip.yaml", demo_config)
    assert scenario.start is not None
    start_ms = int(scenario.start.timestamp() * 1000)
    [fault] = scenario.faults
    sim = Simulation(demo_config, seed=scenario.seed or 1, start_ms=start_ms, scenario=scenario)
    station = sim.world.stations[fault.key[:2]]
    duty, standby = station.pumps["pump_1"], station.pumps["pump_2"]
    sim.advance_to(start_ms + int(fault.at_s * 1000) - 1000)
    assert duty.running and not standby.running, "the trip must hit the running duty pump"
    flow = station.flow_m3h
    sim.advance_to(start_ms + int(fault.at_s * 1000) + 30_000)
    assert duty.tripped and not duty.running
    assert standby.running and station.flow_m3h == pytest.approx(flow, rel=0.05)


def test_occupancy_stays_within_capacity_and_matches_gate_counts(demo_config: SiteConfig) -> None:
    sim = Simulation(parking_only(demo_config), seed=8, start_ms=START_MS, step_s=5.0)
    lots = {k: m for k, m in sim.world.models.items() if isinstance(m, ParkingLotModel)}
    initial = {k: m.occupied for k, m in lots.items()}
    seen_max = dict.fromkeys(lots, 0)
    for _ in range(2 * 24 * 12):
        sim.advance_to(sim.t_ms + 300_000)
        for key, lot in lots.items():
            assert 0 <= lot.occupied <= lot.capacity
            seen_max[key] = max(seen_max[key], lot.occupied)
            gates = list(lot.gates.values())
            entered = sum(g.count_in for g in gates)
            left = sum(g.count_out for g in gates)
            assert lot.occupied == initial[key] + entered - left
    for key, lot in lots.items():
        assert seen_max[key] < lot.capacity, f"{key} filled up on a nominal day"
        assert sum(g.count_in for g in lot.gates.values()) > 300


def test_gates_only_pass_cars_in_their_lane_direction(demo_config: SiteConfig) -> None:
    sim = run_day(parking_only(demo_config), seed=9, step_s=5.0)
    for model in sim.world.models.values():
        if isinstance(model, GateModel):
            if "in" not in model.lanes:
                assert model.count_in == 0, model.id
            if "out" not in model.lanes:
                assert model.count_out == 0, model.id


def test_night_closed_exit_passes_no_car_at_night(demo_config: SiteConfig) -> None:
    sim = Simulation(parking_only(demo_config), seed=10, start_ms=START_MS, step_s=5.0)
    gate = sim.world.models[("xingshui", "xingshui_lot", "north_out_2")]
    assert isinstance(gate, GateModel)
    sim.advance_to(START_MS + 17 * 3600 * 1000)  # to 23:00 local
    before = gate.count_out
    sim.advance_to(START_MS + 24 * 3600 * 1000)  # to 06:00 local
    assert gate.count_out == before


def test_a_faulted_gate_reports_its_code_and_its_traffic_takes_the_other_gates(
    demo_config: SiteConfig,
) -> None:
    scenario = load_scenario(DEMO_SITE / "scenarios" / "gate_fault.yaml", demo_config)
    sim = Simulation(
        parking_only(demo_config), seed=1, start_ms=START_MS, scenario=scenario, step_s=5.0
    )
    gates = {
        k[2]: m for k, m in sim.world.models.items() if isinstance(m, GateModel) and k[0] == "wanda"
    }
    sim.advance_to(START_MS + 3600 * 1000)  # the fault starts: north gate, 07:00 to 08:00
    before = {gid: g.count_in + g.count_out for gid, g in gates.items()}
    states = [
        m.payload
        for _, m in sim.advance_to(START_MS + 2 * 3600 * 1000 - 5000).messages
        if m.asset == "north_gate" and m.topic == "state"
    ]
    passed = {gid: g.count_in + g.count_out - before[gid] for gid, g in gates.items()}
    assert passed["north_gate"] == 0 and passed["main_gate"] > 20, passed
    assert states[0]["fault"] is True and states[0]["fault_code"] == 3  # published at once
    assert all(s["fault"] and s["barrier"] == "closed" for s in states)
    assert len(states) >= 59  # still reporting every minute
    sim.advance_to(START_MS + 3 * 3600 * 1000)
    north = gates["north_gate"]
    assert not north.fault and north.fault_code == 0
    assert north.count_in + north.count_out > before["north_gate"]  # in use again


def parking_only(config: SiteConfig) -> SiteConfig:
    return replace(config, sites=[s for s in config.sites if s.kind == "parking"])


def feed_bytes(config: SiteConfig, seed: int) -> bytes:
    out = io.StringIO()
    sim = Simulation(config, seed=seed, start_ms=START_MS, step_s=5.0)
    record(sim, out, duration_s=2 * 3600, sample_s=60)
    return out.getvalue().encode()


def test_same_seed_gives_the_same_feed_bit_for_bit(demo_config: SiteConfig) -> None:
    first, second = feed_bytes(demo_config, 11), feed_bytes(demo_config, 11)
    assert len(first) > 100_000
    assert first == second
    assert feed_bytes(demo_config, 12) != first
