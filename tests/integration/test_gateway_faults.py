"""Device faults and bad input: the gateway reports them and keeps everything else going."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt

from facility.config import SiteConfig
from gateway.daemon import Gateway
from gateway.outbox import Outbox
from simulators.modbus_server import CommsFault, UnitFault
from tests.integration._gateway import (
    Recorder,
    gateway_for,
    one_station,
    record_for,
    recorded,
    served_at,
)
from tests.integration.test_gateway_e2e import RunningSite, start_site
from tests.services import Mosquitto

XIBA = ("fengshou", "xiba")
RECOVERING = ("tank_no4", "transformer", "pump_3", "pump_1")
# No ingest acknowledges these gateways' batches: stopping with a grace would wait it out
# whole for acks that never come (5 s a test), and nothing here is about the uplink.
NO_INGEST = 0.0


async def until(done: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.05)


def statuses_of(recorder: Recorder) -> set[tuple[str, str, object]]:
    return {(r.asset, r.signal, r.value) for r in recorder.readings if r.kind == "s"}


def polls(recorder: Recorder, asset: str) -> int:
    return sum(
        1 for r in recorder.readings if r.kind == "s" and r.asset == asset and r.signal == "comm_ok"
    )


def last_status(recorder: Recorder, asset: str) -> dict[str, object]:
    latest: dict[str, object] = {}
    for r in recorder.readings:
        if r.kind == "s" and r.asset == asset:
            latest[r.signal] = r.value
    return latest


def with_bus_timeout(config: SiteConfig, timeout_s: float) -> SiteConfig:
    site = config.sites[0]
    station = site.stations[0]
    buses = [b.model_copy(update={"timeout_s": timeout_s}) for b in station.buses]
    station = station.model_copy(update={"buses": buses})
    return dataclasses.replace(config, sites=[site.model_copy(update={"stations": [station]})])


async def faulty_xiba(
    demo_config: SiteConfig, mosquitto: Mosquitto, tmp_path: Path, faults: dict[str, UnitFault]
) -> tuple[RunningSite, Gateway]:
    """Xiba served with these assets' devices faulty, and a gateway on it with a short bus
    timeout (not yet started)."""
    config = one_station(demo_config, *XIBA)
    runner = await start_site(config, mosquitto)
    runner.source.comms.update({(*XIBA, asset): fault for asset, fault in faults.items()})
    await runner.tick()
    gateway = gateway_for(
        with_bus_timeout(served_at(config, runner), 0.4), *XIBA, tmp_path, mosquitto.port
    )
    return runner, gateway


async def test_a_dead_slave_does_not_starve_its_bus(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    faults = {"pump_2": UnitFault(CommsFault.NO_RESPONSE)}
    runner, gateway = await faulty_xiba(demo_config, mosquitto, tmp_path, faults)
    recorder = await record_for(6.0, gateway, runner)
    healthy = polls(recorder, "pump_1")
    assert healthy >= 0.8 * 6.0 / 0.5, f"pump_1 polled only {healthy} times in 6 s"
    assert polls(recorder, "pump_2") <= healthy / 2, "the dead slave was not backed off"
    dead = last_status(recorder, "pump_2")
    assert dead["comm_ok"] is False and dead["error"] == "timeout"
    assert int(str(dead["consecutive_failures"])) >= 2
    assert last_status(recorder, "pump_1")["comm_ok"] is True


async def test_exception_codes_and_garbled_frames_are_reported_per_device(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    faults = {
        "tank_no4": UnitFault(CommsFault.EXCEPTION, 2),
        "transformer": UnitFault(CommsFault.EXCEPTION, 6),
        "pump_3": UnitFault(CommsFault.GARBLED),
    }
    runner, gateway = await faulty_xiba(demo_config, mosquitto, tmp_path, faults)
    comms = runner.source.comms
    recorder = recorded(gateway)
    faulty = {("tank_no4", "exception_code", 2), ("transformer", "exception_code", 6)}
    faulty.add(("pump_3", "comm_ok", False))
    try:
        await until(lambda: faulty <= statuses_of(recorder), "each fault reported")
        comms.clear()
        await runner.tick()
        await until(
            lambda: all(last_status(recorder, a).get("comm_ok") is True for a in RECOVERING),
            "every device answering again",
        )
    finally:
        await gateway.stop(grace_s=NO_INGEST)
        await runner.stop()
    statuses = [(r.asset, r.signal, r.value) for r in recorder.readings if r.kind == "s"]
    assert ("tank_no4", "exception_code", 2) in statuses
    assert ("transformer", "exception_code", 6) in statuses  # busy: retried, then reported
    assert ("pump_3", "comm_ok", False) in statuses
    for asset in RECOVERING:
        assert last_status(recorder, asset)["comm_ok"] is True, f"{asset} did not recover"


async def test_garbage_on_device_topics_is_counted_and_the_daemon_keeps_running(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    config = one_station(demo_config, "wanda", "wanda_lot")
    gateway = gateway_for(config, "wanda", "wanda_lot", tmp_path, mosquitto.port)
    recorder = recorded(gateway)
    assert gateway.mqtt is not None
    garbage = [
        b"{not json",
        b"[1, 2, 3]",
        json.dumps({"occupied": "many"}).encode(),
        json.dumps({"occupied": 1e400}).encode().replace(b"inf", b"1e999"),
        b"x" * 200_000,
        json.dumps({"barrier": "sideways"}).encode(),
        json.dumps({"unrelated": 1}).encode(),
    ]
    try:
        await until(lambda: gateway.mqtt is not None and gateway.mqtt.connected, "subscribed")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
            for payload in garbage:
                await device.publish("parking/wanda/lot/occupancy", payload, qos=1)
            await device.publish("parking/wanda/main_gate/state", garbage[5], qos=1)
            good = {"ts": 1, "occupied": 12, "capacity": 453, "free": 441, "full": False}
            await device.publish("parking/wanda/lot/occupancy", json.dumps(good), qos=1)
        for _ in range(100):
            if any(r.signal == "occupied" for r in recorder.readings):
                break
            await asyncio.sleep(0.05)
    finally:
        await gateway.stop(grace_s=NO_INGEST)
    assert sum(gateway.mqtt.rejected.values()) >= len(garbage)
    assert {"not JSON", "not a JSON object"} <= set(gateway.mqtt.rejected)
    assert [r.value for r in recorder.readings if r.signal == "occupied"] == [12]


async def test_reload_restarts_only_the_buses_that_changed(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    runner = await start_site(one_station(demo_config, "fengshou", "xiba"), mosquitto)
    config = served_at(one_station(demo_config, "fengshou", "xiba"), runner)
    site = config.sites[0]
    station = site.stations[0]
    extra = station.buses[0].model_copy(update={"id": "rs485_b", "port": 1})
    two_buses = station.model_copy(update={"buses": [*station.buses, extra]})
    assets = [
        a.model_copy(update={"modbus": a.modbus.model_copy(update={"bus": "rs485_b"})})
        if a.id == "tank_no4" and a.modbus
        else a
        for a in two_buses.assets
    ]
    two_buses = two_buses.model_copy(update={"assets": assets})
    first = dataclasses.replace(config, sites=[site.model_copy(update={"stations": [two_buses]})])
    gateway = gateway_for(first, "fengshou", "xiba", tmp_path, mosquitto.port)
    gateway.start()
    try:
        before = {bus_id: bus.worker for bus_id, bus in gateway.buses.items()}
        slower = [
            a.model_copy(update={"modbus": a.modbus.model_copy(update={"poll_s": 9.0})})
            if a.id == "tank_no4" and a.modbus
            else a
            for a in assets
        ]
        second_station = two_buses.model_copy(update={"assets": slower})
        second = dataclasses.replace(
            first, sites=[site.model_copy(update={"stations": [second_station]})]
        )
        changed = await gateway.reload(second)
        after = {bus_id: bus.worker for bus_id, bus in gateway.buses.items()}
    finally:
        await gateway.stop()
        await runner.stop()
    assert changed == ["rs485_b"]
    assert after["rtu_gw"] is before["rtu_gw"]
    assert after["rs485_b"] is not before["rs485_b"]
    assert after["rs485_b"].devices[0].interval_s == 9.0


async def test_outbox_disk_full_is_a_clear_error_not_a_crash(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
    caplog: Any,
) -> None:
    config = one_station(demo_config, *XIBA)
    runner = await start_site(config, mosquitto)
    gateway = gateway_for(served_at(config, runner), *XIBA, tmp_path, mosquitto.port)
    # A volume with three pages left (the new outbox takes five): the outbox's test hook
    # caps the file's size.
    gateway.outbox.close()
    gateway.outbox = Outbox(gateway.outbox_path, max_pages=8)
    gateway.uplink.outbox = gateway.outbox
    gateway.start()
    try:
        async with asyncio.timeout(20):
            while gateway.counters.readings_lost_disk_full == 0:
                await asyncio.sleep(0.1)
        polls_then = gateway.counters.readings_in
        lost_then = gateway.counters.readings_lost_disk_full
        # Instead of a fixed 2 s: polls go on and two more stores are refused by the full
        # disk and counted (status readings are stored every poll); a task dying of a
        # refusal has died by then.
        await until(
            lambda: (
                gateway.counters.readings_lost_disk_full > lost_then
                and gateway.counters.readings_in > polls_then
            ),
            "polls refused by the full disk",
        )
        lost_then = gateway.counters.readings_lost_disk_full
        await until(
            lambda: gateway.counters.readings_lost_disk_full > lost_then,
            "a second poll refused by the full disk",
        )
        assert gateway.counters.readings_in > polls_then, "polling stopped after disk full"
        assert all(not t.done() for t in gateway.tasks.values()), "a task died"
    finally:
        await gateway.stop(grace_s=NO_INGEST)
        await runner.stop()
    errors = [r.getMessage() for r in caplog.records if "disk full" in r.getMessage()]
    assert errors and "readings lost" in errors[0]
    assert gateway.outbox_path.exists()
