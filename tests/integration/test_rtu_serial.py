"""A station bus on a real serial line: Modbus RTU over a socat pty pair.

The Chaheihai intake bus is moved from its serial-to-Ethernet converter onto a local
serial port (transport rtu). The SiteRunner serves one end of the pty pair; pymodbus's
serial client and mbpoll read the other end, one at a time, as on a real RS-485 line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from facility.config import SiteConfig
from facility.profile import Table
from facility.site import Transport
from simulators.engine import Simulation
from simulators.modbus_server import CommsFault, UnitFault
from simulators.runner import SiteRunner
from tests.integration._wire import (
    CLIENT_TIMEOUT_S,
    START_MS,
    advance_until_pumping,
    assert_device_matches_image,
    connected,
    frozen_site,
    image_of,
    mbpoll,
    parse_register,
    read_value,
    running_pumps,
)
from tests.services import PtyPair

pytestmark = pytest.mark.timeout(60)

BAUD = 19200
INTAKE = ("chaheihai", "chaheihai_intake")
PUMP = (*INTAKE, "pump_1")
TANK = (*INTAKE, "tank_no1")
TRANSFORMER = (*INTAKE, "transformer")


def serial_config(config: SiteConfig, serial_port: str) -> SiteConfig:
    """The Chaheihai intake alone, its bus moved onto a local serial port."""
    site = config.site("chaheihai")
    station = site.station("chaheihai_intake")
    buses = [
        bus.model_copy(
            update={"transport": Transport.RTU, "serial_port": serial_port, "baudrate": BAUD}
        )
        for bus in station.buses
    ]
    station = station.model_copy(update={"buses": buses})
    site = site.model_copy(update={"stations": [station]})
    return dataclasses.replace(config, sites=[site])


@pytest.fixture(scope="module")
def sim(demo_config: SiteConfig) -> Simulation:
    # the physics does not care where the bus is; the serial port is bound per test
    simulation = Simulation(serial_config(demo_config, "/dev/null"), seed=3, start_ms=START_MS)
    advance_until_pumping(simulation, [INTAKE])
    return simulation


@pytest.fixture
async def runner(
    demo_config: SiteConfig, sim: Simulation, pty_pair: PtyPair
) -> AsyncIterator[SiteRunner]:
    async with frozen_site(serial_config(demo_config, pty_pair.a), sim) as site_runner:
        yield site_runner


@pytest.fixture
async def client(runner: SiteRunner, pty_pair: PtyPair) -> AsyncIterator[Any]:
    serial = AsyncModbusSerialClient(
        pty_pair.b,
        framer=FramerType.RTU,
        baudrate=BAUD,
        parity="N",
        stopbits=1,
        bytesize=8,
        timeout=CLIENT_TIMEOUT_S,
        retries=0,
    )
    async with connected(serial, f"cannot open {pty_pair.b}") as open_serial:
        yield open_serial


async def test_bus_is_served_on_the_serial_port(runner: SiteRunner, pty_pair: PtyPair) -> None:
    (endpoint,) = runner.endpoints
    assert endpoint.bus.transport is Transport.RTU
    assert endpoint.address == f"rtu {pty_pair.a} {BAUD} N"


async def test_every_signal_of_pump_and_tank_over_rtu(
    runner: SiteRunner, sim: Simulation, client: Any
) -> None:
    assert running_pumps(sim, INTAKE) == [PUMP]
    compared = 0
    for key in (PUMP, TANK, TRANSFORMER):
        compared += await assert_device_matches_image(client, runner, key)
    assert compared >= 30
    _, unit, image = image_of(runner, PUMP)
    profile = image.profile
    assert await read_value(client, profile, profile.signal("running"), unit) is True
    flow = await read_value(client, profile, profile.signal("flow_m3h"), unit)
    assert isinstance(flow, float) and flow > 0


async def test_mbpoll_reads_the_serial_line(runner: SiteRunner, pty_pair: PtyPair) -> None:
    # mbpoll alone on the line (no pymodbus client open): 8N1 needs -P none
    for key in (PUMP, TANK):
        _, unit, image = image_of(runner, key)
        for table, flag in ((Table.INPUT, "3"), (Table.DISCRETE, "1")):
            span = image.spans[table]
            lines = await mbpoll(
                "-m", "rtu", "-b", str(BAUD), "-P", "none", "-a", str(unit), "-t", flag,
                "-r", str(span.start), "-c", str(span.count), "-0", "-1", "-o", "2",
                pty_pair.b,
            )  # fmt: skip
            assert sorted(lines) == list(range(span.start, span.start + span.count)), lines
            got = [parse_register(lines[span.start + i]) for i in range(span.count)]
            assert got == image.tables[table], (key, table)
    assert any(image_of(runner, PUMP)[2].tables[Table.INPUT])


async def test_garbled_rtu_frame_times_out_and_neighbours_answer(
    runner: SiteRunner, sim: Simulation, client: Any
) -> None:
    _, unit, _ = image_of(runner, TANK)
    sim.injector.comms[TANK] = UnitFault(CommsFault.GARBLED)
    await runner.tick()
    with pytest.raises(ModbusIOException):  # bad CRC: the client discards the frame
        await client.read_input_registers(0, count=1, device_id=unit)
    assert await assert_device_matches_image(client, runner, PUMP)
    del sim.injector.comms[TANK]
    await runner.tick()
    assert await assert_device_matches_image(client, runner, TANK)


async def test_unconfigured_unit_never_gives_data(runner: SiteRunner, client: Any) -> None:
    (endpoint,) = runner.endpoints
    free = next(u for u in range(1, 248) if u not in endpoint.units)
    try:
        response = await client.read_input_registers(0, count=1, device_id=free)
    except ModbusIOException:
        pass  # what a real RS-485 line gives: nobody answers
    else:
        assert response.isError(), response
    assert await assert_device_matches_image(client, runner, TANK)
