"""Simulators -> gateway -> real Mosquitto -> receiver: every reading arrives, once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.site import Broker, Transport
from gateway.daemon import Gateway
from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.runner import SiteRunner
from tests.integration._gateway import Recorder, gateway_for, one_station, recorded, served_at
from tests.receiver import Receiver
from tests.services import Mosquitto, PtyPair

START_MS = 1780264800000


class RunningSite(SiteRunner):
    """A SiteRunner that ticks in the background until stopped."""

    task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await super().stop()


async def start_site(config: SiteConfig, broker: Mosquitto, speed: float = 1e-6) -> RunningSite:
    sim = Simulation(config, seed=2, start_ms=START_MS)
    sim.advance_to(START_MS + 3 * 3600_000)
    runner = RunningSite(
        config,
        sim,
        SimClock(sim.t_ms, speed=speed),
        any_port=True,
        broker=Broker(host="127.0.0.1", port=broker.port),
        tick_s=0.1,
    )
    await runner.start()
    if speed > 1:  # else the registers hold the first tick's values, noise and all
        runner.task = asyncio.create_task(runner.run())
    return runner


async def xiba_delivering(
    config: SiteConfig, mosquitto: Mosquitto, tmp_path: Path
) -> tuple[RunningSite, Receiver, Gateway, Recorder]:
    """Xiba served (frozen clock: values hold still), its gateway started and recorded,
    delivering to the test receiver."""
    runner = await start_site(config, mosquitto)
    receiver = Receiver(mosquitto.port)
    await receiver.start()
    gateway = gateway_for(served_at(config, runner), "fengshou", "xiba", tmp_path, mosquitto.port)
    return runner, receiver, gateway, recorded(gateway)


async def test_every_polled_reading_arrives_once_with_the_served_value(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    config = one_station(demo_config, "fengshou", "xiba")
    runner, receiver, gateway, recorder = await xiba_delivering(config, mosquitto, tmp_path)
    try:
        await asyncio.sleep(3.0)
        await gateway.stop()
        acquired = recorder.keys("xiba")
        await receiver.wait_for(lambda: acquired <= receiver.received())
    finally:
        await receiver.stop()
        await runner.stop()
    assert len(acquired) > 5 * 19 * 3  # 5 devices, ~19 signals, several polls each
    assert max(receiver.seen.values()) == 1, "a reading was delivered twice"
    for asset in ("pump_1", "pump_2", "pump_3", "transformer", "tank_no4"):
        _, _, image = runner._images[("fengshou", "xiba", asset)]
        for signal in image.profile.signals:
            got = [
                v
                for (st, kind, a, s, _), v in receiver.values.items()
                if a == asset and s == signal.name and kind == "v"
            ]
            assert got, f"{asset}.{signal.name} never arrived"
            assert set(map(repr, got)) == {repr(image.read(signal))}, f"{asset}.{signal.name}"
    status = [k for k in receiver.received("s") if k[3] == "comm_ok"]
    assert status and all(receiver.values[k] is True for k in status)
    health = {k[3] for k in receiver.received("h")}
    assert {"outbox_readings", "readings_in_per_s", "rss_mb", "uplink_connected"} <= health


async def test_mqtt_device_messages_become_readings(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    config = one_station(demo_config, "wanda", "wanda_lot")
    receiver = Receiver(mosquitto.port)
    await receiver.start()
    gateway = gateway_for(config, "wanda", "wanda_lot", tmp_path, mosquitto.port)
    gateway.start()
    # the persistent subscription exists before devices talk
    await receiver.wait_for(lambda: gateway.mqtt is not None and gateway.mqtt.connected, 10)
    runner = await start_site(config, mosquitto, speed=600.0)
    try:
        await receiver.wait_for(lambda: any(k[3] == "passage" for k in receiver.received()), 30)
        await receiver.wait_for(lambda: any(k[3] == "occupied" for k in receiver.received()), 30)
    finally:
        await runner.stop()
        await gateway.stop()
        await receiver.stop()
    occupied = [v for k, v in receiver.values.items() if k[3] == "occupied"]
    assert all(isinstance(v, int) and 0 <= v <= 453 for v in occupied)
    open_states = {v for k, v in receiver.values.items() if k[3] == "barrier_open"}
    assert open_states <= {True, False}


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_broker_outage_loses_nothing_and_live_data_resumes_first(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
    how: str,
) -> None:
    # a slow backfill lane, so the backlog is still draining while live data flows
    config = one_station(
        demo_config,
        "fengshou",
        "xiba",
        backfill_readings_per_s=300.0,
        batch_max_readings=200,
        live_window_s=2.0,
    )
    runner, receiver, gateway, recorder = await xiba_delivering(config, mosquitto, tmp_path)
    try:
        await receiver.wait_for(lambda: gateway.uplink.stats.readings_acked > 0)  # delivering
        mosquitto.stop() if how == "stop" else mosquitto.kill()
        await asyncio.sleep(6.0)
        backlog = gateway.outbox.stats().readings
        mosquitto.start()
        restarted_ms = now_ms()
        await asyncio.sleep(4.0)
        draining = gateway.outbox.stats().readings
        acquired = recorder.keys("xiba")
        await receiver.wait_for(lambda: acquired <= receiver.received(), 60)
    finally:
        await gateway.stop()
        await receiver.stop()
        await runner.stop()
    assert backlog > 1000, "readings piled up in the outbox during the outage"
    assert draining > 0, "the backlog was still draining while live data flowed"
    assert acquired <= receiver.received()
    assert not receiver.bad
    fresh = [  # batches of readings acquired once the broker was back
        (at, min(r.ts_ms for r in b.readings))
        for at, b in zip(receiver.arrived_ms, receiver.batches, strict=True)
        if min(r.ts_ms for r in b.readings) > restarted_ms + 1000
    ]
    assert fresh, "no live data after the broker came back"
    late = max(at - oldest for at, oldest in fresh)
    assert late < 2000, f"live data arrived {late} ms after acquisition while backfilling"


async def test_gateway_polls_a_serial_rtu_line(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
    pty_pair: PtyPair,
) -> None:
    """RS-485 as a pseudo-terminal pair: the simulator on one end, the gateway on the other."""
    base = one_station(demo_config, "chaheihai", "chaheihai_intake")

    def on_serial(port: str) -> SiteConfig:
        site = base.sites[0]
        station = site.stations[0]
        bus = station.buses[0].model_copy(
            update={
                "transport": Transport.RTU,
                "serial_port": port,
                "baudrate": 19200,
                "timeout_s": 0.5,
            }
        )
        station = station.model_copy(update={"buses": [bus]})
        return dataclasses.replace(base, sites=[site.model_copy(update={"stations": [station]})])

    runner = await start_site(on_serial(pty_pair.a), mosquitto)
    receiver = Receiver(mosquitto.port)
    await receiver.start()
    gateway = gateway_for(
        on_serial(pty_pair.b), "chaheihai", "chaheihai_intake", tmp_path, mosquitto.port
    )
    gateway.start()
    try:
        await receiver.wait_for(lambda: len({k[2] for k in receiver.received()}) >= 7, 30)
    finally:
        await gateway.stop()
        await receiver.stop()
        await runner.stop()
    _, _, image = runner._images[("chaheihai", "chaheihai_intake", "tank_no1")]
    signal = image.profile.signal("level_m")
    got = {v for k, v in receiver.values.items() if k[2] == "tank_no1" and k[3] == "level_m"}
    assert got == {image.read(signal)}
