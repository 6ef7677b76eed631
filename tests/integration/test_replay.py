"""Record a feed, replay it over real Modbus TCP and MQTT: a field incident reproduced."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest
from pymodbus.client import AsyncModbusTcpClient

from facility.config import SiteConfig
from facility.profile import ModbusProfile
from facility.registers import decode_signal, encode_signal
from facility.site import Broker
from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.feed import FeedError, Replay, read_feed, record
from simulators.runner import SiteRunner
from simulators.scenario import load_scenario
from tests.conftest import DEMO_SITE
from tests.services import Mosquitto


def trip_at_s(config: SiteConfig) -> float:
    """When the labelled trip happens, after the scenario's start."""
    [fault] = load_scenario(DEMO_SITE / "scenarios" / "pump_trip.yaml", config).faults
    return fault.at_s


def record_incident(config: SiteConfig, path: Path) -> int:
    scenario = load_scenario(DEMO_SITE / "scenarios" / "pump_trip.yaml", config)
    assert scenario.start is not None
    sim = Simulation(
        config,
        seed=3,
        start_ms=int(scenario.start.timestamp() * 1000),
        scenario=scenario,
        step_s=5.0,
    )
    with open(path, "w", encoding="utf-8") as f:
        return record(sim, f, duration_s=trip_at_s(config) + 3600, sample_s=30)


def test_feed_records_faults_with_their_labels(demo_config: SiteConfig, tmp_path: Path) -> None:
    feed = tmp_path / "incident.feed.jsonl"
    count = record_incident(demo_config, feed)
    records = [r for _, r in read_feed(feed)]
    assert len(records) == count
    faults = [r for r in records if r["k"] == "f"]
    assert faults[0]["fault"] == "pump_trip" and faults[0]["on"] is True
    assert faults[0]["expect"]["alarm"] == "pump_trip"
    times = [r["t"] for r in records]
    assert times == sorted(times)
    tripped = [
        r
        for r in records
        if r["k"] == "s" and r["a"] == "fengshou/xiba/pump_1" and r["v"]["tripped"]
    ]
    assert tripped and tripped[0]["t"] >= faults[0]["t"]


def test_a_broken_feed_names_its_line(tmp_path: Path) -> None:
    feed = tmp_path / "bad.jsonl"
    feed.write_text(
        '{"format": "facility-feed", "version": 1, "start_ms": 0}\n'
        '{"t": 1, "k": "s", "a": "x/y/z", "v": {}}\n{"t": "soon"\n'
    )
    with pytest.raises(FeedError, match=r"bad.jsonl:3: not JSON"):
        list(read_feed(feed))


async def test_replay_serves_recorded_values_over_modbus_and_mqtt(
    demo_config: SiteConfig,
    tmp_path: Path,
    mosquitto: Mosquitto,
) -> None:
    config = replace(demo_config, sites=[demo_config.site("fengshou"), demo_config.site("wanda")])
    feed = tmp_path / "incident.feed.jsonl"
    record_incident(config, feed)
    replay = Replay(feed)
    # A frozen clock just after the trip: 10 minutes later.
    at_ms = replay.t_ms + int(trip_at_s(config) * 1000) + 10 * 60_000
    runner = SiteRunner(
        config,
        replay,
        SimClock(at_ms, speed=1e-9),
        any_port=True,
        broker=Broker(host="127.0.0.1", port=mosquitto.port),
    )
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe("parking/wanda/#", qos=1)
        await runner.start()
        try:
            key = ("fengshou", "xiba", "pump_1")
            expected = replay.values(key)
            assert expected["tripped"] is True and expected["fault_code"] == 1
            endpoint, unit = runner.endpoint_of(key)
            profile = config.profiles["pump_vfd"]
            assert isinstance(profile, ModbusProfile)
            client = AsyncModbusTcpClient("127.0.0.1", port=endpoint.server.port, timeout=2)
            await client.connect()
            for name in ("tripped", "fault_code", "bearing_temp_c", "run_hours", "flow_m3h"):
                signal = profile.signal(name)
                read = {
                    "discrete": client.read_discrete_inputs,
                    "input": client.read_input_registers,
                }[signal.table.value]
                resp = await read(
                    profile.protocol_address(signal), count=signal.count, device_id=unit
                )
                regs = (
                    [int(b) for b in resp.bits[:1]] if signal.table.is_bit_table else resp.registers
                )
                want = decode_signal(
                    profile, signal, encode_signal(profile, signal, expected[name])
                )
                assert decode_signal(profile, signal, regs) == want, name
            client.close()
            message = await asyncio.wait_for(anext(aiter(sub.messages)), timeout=10)
            assert isinstance(message.payload, bytes)
            payload = json.loads(message.payload)
            assert payload["ts"] <= at_ms
        finally:
            await runner.stop()
