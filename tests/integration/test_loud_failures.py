"""Failures are loud: a broker refusing the gateway's credentials, a profile's JSON path
that a device never fills, a Modbus exception. Each is logged with what an operator
needs to act on, and shows in the gateway's health. Real Mosquitto and Modbus."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiomqtt
import pytest

from facility.clock import now_ms
from facility.config import SiteConfig
from gateway.daemon import Gateway
from gateway.telemetry import CpuMeter, RateMeter
from simulators.modbus_server import CommsFault, UnitFault
from tests.integration._gateway import gateway_for, one_station, record_for, recorded, served_at
from tests.integration.test_gateway_e2e import start_site
from tests.integration.test_uplink_security import (
    PASSWORD_ENV,
    password_broker,
    tank_only,
    with_uplink,
    zhongba_gateway,
)
from wiring.services import Mosquitto

__all__ = ["password_broker"]  # a fixture, used by name

REFUSED = "connection refused by the broker: Not authorized (CONNACK reason code 135)"


def health_of(gateway: Gateway) -> dict[str, object]:
    return {r.signal: r.value for r in gateway.health(RateMeter(), CpuMeter())}


async def health_after(gateway: Gateway, seconds: float) -> dict[str, object]:
    """Start the gateway, let it run, read its health, stop it."""
    try:
        gateway.start()
        await asyncio.sleep(seconds)
        return health_of(gateway)
    finally:
        await gateway.stop(grace_s=0.5)


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and text in r.getMessage()
    ]


@pytest.mark.parametrize("password", ["wrong", None])
async def test_a_broker_refusing_the_credentials_is_an_error_with_its_reason_and_in_health(
    demo_config: SiteConfig,
    password_broker: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    password: str | None,
) -> None:
    """A wrong password, or the password's environment variable not set at all."""
    if password is None:
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
    else:
        monkeypatch.setenv(PASSWORD_ENV, password)
    config = with_uplink(tank_only(demo_config), username="gw-zhongba", password_env=PASSWORD_ENV)
    gateway = zhongba_gateway(config, tmp_path / "data", password_broker.port)
    health = await health_after(gateway, 3.0)
    logged = errors(caplog, REFUSED)
    assert len(logged) == 1, f"one ERROR for the refusal, not one per retry: {logged}"
    assert f"127.0.0.1:{password_broker.port}" in logged[0]
    assert health["uplink_connected"] is False
    assert REFUSED in str(health["uplink_error"])
    if password is None:
        unset = f"gateway.uplink.password_env names {PASSWORD_ENV}, which is not set"
        assert errors(caplog, unset), "the missing variable is named at start"
        assert unset in str(health["uplink_error"])


async def test_a_device_broker_refusing_the_gateway_is_an_error_in_health(
    demo_config: SiteConfig,
    password_broker: Mosquitto,
    mosquitto: Mosquitto,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = one_station(demo_config, "wanda", "wanda_lot")
    gateway = Gateway(
        config,
        "wanda",
        "wanda_lot",
        tmp_path / "data",
        uplink_address=("127.0.0.1", mosquitto.port),
        devices_address=("127.0.0.1", password_broker.port),
    )
    health = await health_after(gateway, 3.0)
    assert len(errors(caplog, f"device broker 127.0.0.1:{password_broker.port}: {REFUSED}")) == 1
    assert health["mqtt_broker_error"] == REFUSED
    assert health["uplink_error"] == "" and health["uplink_connected"] is True


async def test_a_json_path_that_matches_nothing_is_counted_and_logged_once(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """This gate's firmware calls its fault code `faultCode`: the profile's $.fault_code
    never matches; the rest of the message is still used."""
    config = one_station(demo_config, "wanda", "wanda_lot")
    gateway = gateway_for(config, "wanda", "wanda_lot", tmp_path, mosquitto.port)
    recorder = recorded(gateway)
    state = {"barrier": "closed", "fault": False, "faultCode": 0, "count_in": 7, "count_out": 5}
    try:
        async with asyncio.timeout(10):
            while gateway.mqtt is None or not gateway.mqtt.connected:
                await asyncio.sleep(0.05)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
            for n in range(3):
                body = {**state, "ts": 1_000 * n + now_ms() - 5_000}
                await device.publish("parking/wanda/north_gate/state", json.dumps(body), qos=1)
        async with asyncio.timeout(10):
            while gateway.mqtt.unmatched < 3:
                await asyncio.sleep(0.05)
        health = health_of(gateway)
    finally:
        await gateway.stop(grace_s=0.5)
    warned = [r.getMessage() for r in caplog.records if "matches nothing" in r.getMessage()]
    assert warned == [
        "north_gate: $.fault_code (signal fault_code) matches nothing in a message on "
        "parking/wanda/north_gate/state (counted; logged once)"
    ]
    assert health["mqtt_unmatched"] == 3
    kept = {r.signal for r in recorder.readings if r.asset == "north_gate"}
    assert kept == {"barrier_open", "fault", "vehicles_in_total", "vehicles_out_total"}


async def test_a_modbus_exception_names_the_register_range_and_the_signals_it_cost(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = one_station(demo_config, "fengshou", "xiba")
    runner = await start_site(config, mosquitto)
    runner.source.comms[("fengshou", "xiba", "tank_no4")] = UnitFault(CommsFault.EXCEPTION, 2)
    await runner.tick()
    gateway = gateway_for(served_at(config, runner), "fengshou", "xiba", tmp_path, mosquitto.port)
    recorder = await record_for(2.0, gateway, runner)
    reported = {r.value for r in recorder.readings if (r.asset, r.signal) == ("tank_no4", "error")}
    expected = (
        "exception 2 (illegal data address) reading input 0-4 (protocol addresses), "
        "which holds level_m, volume_m3, level_pct"
    )
    assert reported == {expected}
    logged = [r.getMessage() for r in caplog.records if "tank_no4" in r.getMessage()]
    assert logged == [f"tank_no4 unit 20 on rtu_gw: {expected}"], "logged once, in full"
