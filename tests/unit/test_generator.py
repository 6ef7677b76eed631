"""The signal generator: any device served without physics, deterministic, with truth.

Runs the tutorial's four devices (tests/own_devices.py) through the simulation engine:
same seed -> same values bit for bit; counters equal the integral of their source;
walks stay in range; states change about as often as their dwell says; faults (stuck,
drift, not responding) apply to generated signals and MQTT messages; MQTT payloads map
back through the gateway's own conversion to the values generated.
"""

from __future__ import annotations

import io
import itertools
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility.config import SiteConfig, load_site_config
from facility.profile import MqttProfile
from facility.simspec import CounterSpec, RandomWalkSpec, StateSpec
from facility.sourcemap import ConfigError
from gateway.mqtt_devices.subscriber import routes_for
from gateway.probe import map_signals
from simulators.engine import Simulation
from simulators.feed import Replay, record
from simulators.generator import GeneratedDevice
from simulators.scenario import Scenario, load_scenario
from tests.own_devices import write_site

START = 1_780_264_800_000  # 2026-06-01T06:00:00+08:00
METER = ("plant", "works", "energy_meter")
FLOW = ("plant", "works", "flow_meter")
PRESSURE = ("plant", "works", "outlet_pressure")
CHLORINE = ("plant", "works", "chlorine")


@pytest.fixture
def config(tmp_path: Path) -> SiteConfig:
    return load_site_config(write_site(tmp_path / "site"))


def _scenario(*faults: dict[str, object]) -> Scenario:
    return Scenario.model_validate({"scenario": "t", "faults": list(faults)})


def test_same_seed_same_values_other_seed_others(config: SiteConfig) -> None:
    runs = []
    for seed in (1, 1, 2):
        sim = Simulation(config, seed=seed, start_ms=START)
        trace = []
        for minute in range(1, 61):
            sim.advance_to(START + minute * 60_000)
            trace.append([sim.values(k) for k in (METER, FLOW, PRESSURE, CHLORINE)])
        runs.append(json.dumps(trace))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_counters_are_the_exact_integral_of_their_source(config: SiteConfig) -> None:
    sim = Simulation(config, seed=3, start_ms=START)
    volume = energy = 0.0
    for _ in range(6 * 3600):  # six hours in the engine's 1 s steps
        before = sim.values(FLOW)["flow_m3h"], sim.values(METER)["power_kw"]
        sim.advance_to(sim.t_ms + 1000)
        volume += float(before[0]) / 3600
        energy += float(before[1]) / 3600
    flow, meter = sim.generated[FLOW], sim.generated[METER]
    assert flow.counter_increase()["volume_total_m3"] == pytest.approx(volume, rel=1e-9)
    assert meter.counter_increase()["import_energy_kwh"] == pytest.approx(energy, rel=1e-9)
    assert sim.values(FLOW)["volume_total_m3"] == pytest.approx(254310 + volume, rel=1e-12)
    assert 6 * 60 < volume < 6 * 180  # the flow's sine runs 60..180 m3/h
    assert 6 * 25 < energy < 6 * 55


def test_walks_stay_in_range_sines_swing_states_change(config: SiteConfig) -> None:
    site = load_site_config(
        write_site(
            config.root.parent / "fast_states",
            flow_meter_extra="        simulate: {empty_pipe: "
            "{kind: state, values: [false, true], mean_dwell: [10m, 1m]}}\n",
        )
    )
    sim = Simulation(site, seed=5, start_ms=START)
    pressures, voltages, empty = [], [], []
    for minute in range(1, 24 * 60 + 1):
        sim.advance_to(START + minute * 60_000)
        pressures.append(float(sim.values(PRESSURE)["pressure_bar"]))
        voltages.append(float(sim.values(METER)["voltage_l1_v"]))
        empty.append(bool(sim.values(FLOW)["empty_pipe"]))
    assert 3.6 <= min(pressures) < max(pressures) <= 4.8
    assert max(pressures) - min(pressures) > 0.2  # it wanders, it is not stuck
    assert 226 < min(voltages) < 229 and 233 < max(voltages) < 236  # 231 +- 3, noise 0.3
    changes = sum(a != b for a, b in itertools.pairwise(empty))
    # ~11 min per cycle: about 130 changes a day; far from 0 and from every minute
    assert 60 < changes < 260
    assert 0.03 < sum(empty) / len(empty) < 0.2  # true about 1/11 of the time


def test_a_signal_nobody_described_stays_quiet_inside_its_limits(tmp_path: Path) -> None:
    folder = write_site(tmp_path / "site")
    (folder / "profiles" / "pressure_transmitter_485.yaml").write_text(
        "profile: pressure_transmitter_485\nprotocol: modbus\nsignals:\n"
        "  - {name: pressure_bar, table: holding, address: 0, type: int16, scale: 0.001}\n"
        "  - {name: alarm, table: holding, address: 1, type: bit, bit: 3}\n"
        "  - {name: status, table: holding, address: 2, type: uint16, enum: {4: ok, 5: bad}}\n"
    )
    sim = Simulation(load_site_config(folder), seed=1, start_ms=START)
    seen = []
    for minute in range(1, 6 * 60):
        sim.advance_to(START + minute * 60_000)
        values = sim.values(PRESSURE)
        seen.append(float(values["pressure_bar"]))
        assert values["alarm"] is False and values["status"] == 4
    assert 3.0 <= min(seen) < max(seen) <= 5.5  # the asset's limits low..high


def test_faults_apply_to_generated_signals(config: SiteConfig) -> None:
    scenario = _scenario(
        {"kind": "sensor_stuck", "target": "plant/works/flow_meter", "at": "10m",
         "duration": "20m", "params": {"signal": "flow_m3h"}},
        {"kind": "sensor_drift", "target": "plant/works/chlorine", "at": "10m",
         "params": {"signal": "chlorine_mg_l", "rate_per_h": 6.0}},
        {"kind": "device_not_responding", "target": "plant/works/chlorine", "at": "40m",
         "duration": "10m"},
    )  # fmt: skip
    sim = Simulation(config, seed=1, start_ms=START, scenario=scenario)
    clean = Simulation(config, seed=1, start_ms=START)
    stuck: list[object] = []
    times: list[int] = []
    for minute in range(1, 61):
        t = START + minute * 60_000
        messages = sim.advance_to(t).messages
        clean.advance_to(t)
        times.extend(m.t_ms for _, m in messages if m.asset == "chlorine")
        if 11 <= minute < 30:
            stuck.append(sim.values(FLOW)["flow_m3h"])
        if minute == 35:  # drifted 25 min at 6 mg/L per hour: +2.5 mg/L
            drifted = float(sim.values(CHLORINE)["chlorine_mg_l"])
            assert drifted - float(clean.values(CHLORINE)["chlorine_mg_l"]) == pytest.approx(2.5)
            payloads = [m.payload for _, m in messages if m.asset == "chlorine"]
            assert payloads and payloads[-1]["cl2"]["value"] > 2.5  # in what it publishes
    assert len(set(stuck)) == 1
    assert sim.values(FLOW)["flow_m3h"] == clean.values(FLOW)["flow_m3h"]  # freed again
    silent = [t for t in times if START + 40 * 60_000 < t <= START + 50 * 60_000]
    assert silent == [] and len(times) == 60 * 6 - 10 * 6  # every 10 s but while silent


def test_mqtt_messages_map_back_to_the_generated_values(config: SiteConfig) -> None:
    sim = Simulation(config, seed=1, start_ms=START)
    profile = config.profiles["chlorine_analyser_mqtt"]
    assert isinstance(profile, MqttProfile)
    routes = routes_for("plant", "works", {"chlorine": profile})
    checked = 0
    for minute in range(1, 31):
        for _, msg in sim.advance_to(START + minute * 60_000).messages:
            topic = profile.topic_for(msg.topic, "plant", "works", msg.asset)
            assert topic == "plant/plant/chlorine/data"
            last, problems = map_signals(routes[topic].signals, json.dumps(msg.payload).encode())
            assert problems == {} and set(last) == {s.name for s in profile.signals}
            checked += 1
    values = sim.values(CHLORINE)
    assert last["sample_flow_ok"] is values["sample_flow_ok"]
    assert last["chlorine_mg_l"] == pytest.approx(float(values["chlorine_mg_l"]), abs=1e-6)
    assert checked == 30 * 6


def test_a_recorded_generated_site_replays_its_values(config: SiteConfig, tmp_path: Path) -> None:
    sim = Simulation(config, seed=9, start_ms=START)
    out = io.StringIO()
    record(sim, out, duration_s=600, sample_s=60)
    feed = tmp_path / "feed.jsonl"
    feed.write_text(out.getvalue())
    replay = Replay(feed)
    replay.advance_to(START + 600_000)
    generated = sim.generated[FLOW].values()  # (the stand-in kind's physics adds noisy others)
    replayed = replay.values(FLOW)
    assert {name: replayed[name] for name in generated} == json.loads(json.dumps(generated))
    kinds = [json.loads(line)["k"] for line in out.getvalue().splitlines()[1:]]
    assert kinds.count("m") == 60 and kinds.count("s") == 11 * 3


def test_scenarios_aim_device_faults_at_generated_mqtt_devices_not_car_park_physics(
    config: SiteConfig, demo_config: SiteConfig, tmp_path: Path
) -> None:
    def issues(site: SiteConfig, faults: str) -> list[str]:
        path = tmp_path / "scenario.yaml"
        path.write_text(f"scenario: s\nfaults:\n{faults}")
        try:
            load_scenario(path, site)
        except ConfigError as exc:
            return [f"{i.line} {i.message}" for i in exc.issues]
        return []

    ok = (
        "  - {kind: sensor_stuck, target: plant/works/chlorine, at: 1m,"
        " params: {signal: chlorine_mg_l}}\n"
        "  - {kind: device_not_responding, target: plant/works/chlorine, at: 1m}\n"
    )
    assert issues(config, ok) == []
    wrong = "  - {kind: modbus_exception, target: plant/works/chlorine, at: 1m}\n"
    assert issues(config, wrong) == [
        "3 modbus_exception needs a Modbus device, 'plant/works/chlorine' is not one (an MQTT "
        "device: device_not_responding, sensor_drift, sensor_stuck)"
    ]
    gate = (
        "  - {kind: device_not_responding, target: wanda/wanda_lot/main_gate, at: 1m}\n"
        "  - {kind: sensor_drift, target: wanda/wanda_lot/main_gate, at: 1m,"
        " params: {signal: vehicles_in_total}}\n"
    )
    assert issues(demo_config, gate) == [
        "4 sensor_drift needs a Modbus device, 'wanda/wanda_lot/main_gate' is not one "
        "(an MQTT device: device_not_responding)"
    ]


walks = st.builds(
    lambda lo, width, step, start: RandomWalkSpec(
        kind="random_walk", min=lo, max=lo + width, step=step, start=lo + start * width
    ),
    st.floats(-1e6, 1e6),
    st.floats(1e-3, 1e4),
    st.floats(1e-4, 1e5),
    st.floats(0, 1),
)
counters = st.builds(
    lambda start, rate: CounterSpec(kind="counter", start=start, rate_per_h=rate),
    st.floats(0, 1e9),
    st.floats(0, 1e6),
)
states = st.lists(st.integers(-5, 5), min_size=1, max_size=4, unique=True).flatmap(
    lambda values: st.builds(
        lambda dwell: StateSpec(kind="state", values=values, mean_dwell_s=dwell),
        st.lists(st.floats(0.5, 1e5), min_size=len(values), max_size=len(values)),
    )
)


@settings(max_examples=60, deadline=None, database=None)
@given(walks, counters, states, st.sampled_from([0.5, 1.0, 10.0]), st.integers(0, 2**32))
def test_generators_keep_their_promises_whatever_the_spec(
    walk: RandomWalkSpec, counter: CounterSpec, state: StateSpec, step_s: float, seed: int
) -> None:
    """Walks never leave their range, counters never fall and gain exactly rate x time,
    states only take their values; the same seed repeats it all."""
    profile = MqttProfile.model_validate(
        {
            "profile": "p",
            "protocol": "mqtt",
            "topics": {"t": "x/{asset}"},
            "signals": [
                {"name": n, "topic": "t", "json_path": f"$.{n}", "type": "float"}
                for n in ("w", "c", "s")
            ],
        }
    )
    runs = []
    for _ in range(2):
        device = GeneratedDevice(
            ("a", "b", "c"), profile, {"w": walk, "c": counter, "s": state},
            random.Random(seed), START,
        )  # fmt: skip
        trace, last = [], counter.start
        for _ in range(300):
            device.step(step_s)
            values = device.values()
            assert walk.min <= float(values["w"]) <= walk.max
            assert float(values["c"]) >= last
            last = float(values["c"])
            assert values["s"] in state.values
            trace.append(values)
        runs.append(trace)
    assert runs[0] == runs[1]
    rate = counter.rate_per_h or 0.0
    gained = device.counter_increase()["c"]
    assert gained == pytest.approx(rate * 300 * step_s / 3600, rel=1e-9, abs=1e-9)
