"""MQTT devices (barrier gates, lot counters) publish to a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import aiomqtt

from facility.config import SiteConfig
from facility.profile import MqttProfile
from facility.site import Broker
from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.runner import SiteRunner
from tests.services import Mosquitto

START_MS = 1780264800000  # 2026-06-01 06:00 +08:00


def json_path(payload: dict[str, object], path: str) -> object:
    value: object = payload
    for part in path.removeprefix("$.").split("."):
        assert isinstance(value, dict)
        value = value[part]
    return value


def fast_site(config: SiteConfig, site: str, seed: int, start_ms: int, port: int) -> SiteRunner:
    """One site of the config simulated at 600x, its devices publishing to the broker."""
    one_site = replace(config, sites=[config.site(site)])
    sim = Simulation(one_site, seed=seed, start_ms=start_ms)
    return SiteRunner(
        one_site,
        sim,
        SimClock(sim.t_ms, speed=600.0),
        broker=Broker(host="127.0.0.1", port=port),
        tick_s=0.05,
    )


async def collect(
    broker: Mosquitto, runner: SiteRunner, seconds: float
) -> list[tuple[str, dict[str, Any]]]:
    got: list[tuple[str, dict[str, Any]]] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe("parking/#", qos=1)
        await runner.start()

        async def listen() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                got.append((str(message.topic), json.loads(message.payload)))

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(runner.run(seconds), timeout=60)
        for publisher in runner.publishers.values():
            assert await publisher.drain(5.0)
        await asyncio.sleep(0.5)
        listener.cancel()
    await runner.stop()
    return got


async def test_gate_and_counter_messages_reach_the_broker_and_fit_their_profiles(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
) -> None:
    # 07:00, the morning rush
    runner = fast_site(demo_config, "wanda", 5, START_MS + 3600_000, mosquitto.port)
    got = await collect(mosquitto, runner, seconds=3600)

    topics = {t for t, _ in got}
    assert "parking/wanda/lot/occupancy" in topics
    assert {f"parking/wanda/{g}/state" for g in ("main_gate", "north_gate", "west_exit")} <= topics
    assert "parking/wanda/main_gate/heartbeat" in topics
    events = [p for t, p in got if t.endswith("/event")]
    assert len(events) > 20, "an hour of the morning rush passes more than 20 cars"

    gate_profile = demo_config.profiles["barrier_gate"]
    lot_profile = demo_config.profiles["parking_lot_counter"]
    assert isinstance(gate_profile, MqttProfile) and isinstance(lot_profile, MqttProfile)
    for topic, payload in got:
        profile = lot_profile if topic.endswith("/occupancy") else gate_profile
        key = topic.rsplit("/", 1)[1]
        for signal in profile.signals:
            if signal.topic == key:
                value = json_path(payload, signal.json_path)
                if signal.map is not None:
                    assert str(value) in signal.map
                assert isinstance(payload["ts"], int)

    occupancy = [p for t, p in got if t.endswith("/occupancy")]
    assert all(0 <= p["occupied"] <= p["capacity"] == 453 for p in occupancy)
    assert all(p["free"] == p["capacity"] - p["occupied"] for p in occupancy)
    ins = sum(1 for p in events if p["direction"] == "in")
    outs = len(events) - ins
    assert occupancy[-1]["occupied"] - occupancy[0]["occupied"] == ins - outs


async def test_device_publisher_survives_a_broker_restart(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
) -> None:
    runner = fast_site(demo_config, "xingshui", 6, START_MS + 12 * 3600_000, mosquitto.port)
    await runner.start()
    publisher = next(iter(runner.publishers.values()))
    for _ in range(100):
        await runner.tick()
        await asyncio.sleep(0.02)
        if publisher.published:
            break
    assert publisher.connected and publisher.published > 0
    mosquitto.kill()
    for _ in range(20):
        await runner.tick()
        await asyncio.sleep(0.05)
    assert not publisher.connected
    mosquitto.start()
    published = publisher.published
    for _ in range(200):
        await runner.tick()
        await asyncio.sleep(0.05)
        if publisher.connected and publisher.published > published:
            break
    await runner.stop()
    assert publisher.connected and publisher.published > published
