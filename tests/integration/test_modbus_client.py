"""The gateway's lean Modbus client (gateway/modbus/client.py) against real pymodbus
servers, Modbus TCP and RTU over TCP: it reads what pymodbus's own client reads, reports
exception codes the same way, never takes a late answer for the next request's, and says
when the connection is gone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from pymodbus.exceptions import ConnectionException, ModbusIOException

from facility.codec import DataType
from facility.profile import ModbusProfile, ModbusSignal, Table
from facility.registers import RegisterImage
from facility.site import Bus, Transport
from gateway.modbus.client import StreamModbusClient
from gateway.modbus.poller import make_client, make_pymodbus_client
from simulators.modbus_server import BusServer, CommsFault, UnitFault
from tests.integration.test_overload import SlowLink

PROFILE = ModbusProfile(
    profile="mixed_meter",
    protocol="modbus",
    signals=[
        *(
            ModbusSignal(name=f"h{i}", table=Table.HOLDING, address=i, type=DataType.UINT16)
            for i in range(40)
        ),
        *(
            ModbusSignal(name=f"i{i}", table=Table.INPUT, address=i, type=DataType.INT16)
            for i in range(7)
        ),
        *(
            ModbusSignal(name=f"c{i}", table=Table.COIL, address=i, type=DataType.BOOL)
            for i in range(11)
        ),
        *(
            ModbusSignal(name=f"d{i}", table=Table.DISCRETE, address=i, type=DataType.BOOL)
            for i in range(3)
        ),
    ],
)


def values(unit: int) -> dict[str, bool | int | float | str]:
    return {
        **{f"h{i}": 1000 + 37 * i + unit for i in range(40)},
        **{f"i{i}": -5 * i - unit for i in range(7)},
        **{f"c{i}": i % 3 == 0 for i in range(11)},
        **{f"d{i}": i == 1 for i in range(3)},
    }


UNITS = (1, 7)


@contextlib.asynccontextmanager
async def served(transport: Transport) -> AsyncIterator[BusServer]:
    images = {}
    for unit in UNITS:
        images[unit] = RegisterImage(PROFILE)
        images[unit].write_values(values(unit))
    server = BusServer(Bus(id="meters", transport=transport, port=0), images)
    await server.start()
    for unit in UNITS:
        await server.push(unit)
    try:
        yield server
    finally:
        await server.stop()


async def read_all(client: object, unit: int) -> list[object]:
    """Every table, a read past the end (exception 2), as the poller would ask."""
    out: list[object] = []
    for name, address, count in (
        ("read_holding_registers", 0, 40),
        ("read_holding_registers", 13, 5),
        ("read_input_registers", 0, 7),
        ("read_coils", 0, 11),
        ("read_discrete_inputs", 0, 3),
        ("read_holding_registers", 60000, 10),
    ):
        response = await getattr(client, name)(address, count=count, device_id=unit)
        if response.isError():
            out.append(("exception", response.exception_code))
        elif "coils" in name or "discrete" in name:
            out.append([bool(b) for b in response.bits[:count]])
        else:
            out.append(list(response.registers))
    return out


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.RTU_OVER_TCP])
async def test_reads_and_exceptions_equal_pymodbus_clients(transport: Transport) -> None:
    async with served(transport) as server:
        bus = Bus(id="meters", transport=transport, port=server.port, timeout_s=2.0)
        ours, theirs = make_client(bus), make_pymodbus_client(bus)
        assert isinstance(ours, StreamModbusClient) and ours.rtu == (
            transport is Transport.RTU_OVER_TCP
        )
        assert await ours.connect() and await theirs.connect()
        try:
            for unit in UNITS:
                got = await read_all(ours, unit)
                assert got == await read_all(theirs, unit)
                assert got[0] == [1000 + 37 * i + unit for i in range(40)]
                assert got[3] == [i % 3 == 0 for i in range(11)]
                assert got[-1] == ("exception", 2)
        finally:
            ours.close()
            theirs.close()


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.RTU_OVER_TCP])
async def test_a_device_that_stays_silent_times_out_and_the_next_answers(
    transport: Transport,
) -> None:
    async with served(transport) as server:
        server.faults[7] = UnitFault(CommsFault.NO_RESPONSE)
        client = StreamModbusClient("127.0.0.1", server.port, rtu=transport.value != "tcp")
        client.timeout = 0.3
        assert await client.connect()
        try:
            with pytest.raises(ModbusIOException, match="no response from unit 7"):
                await client.read_holding_registers(0, count=4, device_id=7)
            response = await client.read_holding_registers(0, count=4, device_id=1)
            assert response.registers == [1001, 1038, 1075, 1112]
        finally:
            client.close()


async def test_a_late_answer_is_never_taken_for_the_next_requests() -> None:
    """Over a link slower than the timeout, the answer to request 1 arrives while
    request 2 waits: the transaction id tells them apart (Modbus TCP)."""
    async with served(Transport.TCP) as server:
        link = SlowLink(server.port, delay_s=0.2)  # a round trip takes >= 0.4 s
        await link.start()
        client = StreamModbusClient("127.0.0.1", link.port, timeout=0.5)
        try:
            assert await client.connect()
            client.timeout = 0.3
            with pytest.raises(ModbusIOException):
                await client.read_holding_registers(0, count=2, device_id=1)
            client.timeout = 2.0
            second = await client.read_holding_registers(10, count=2, device_id=7)
            assert second.registers == [1000 + 370 + 7, 1000 + 407 + 7]
        finally:
            client.close()
            await link.stop()


async def test_a_lost_connection_is_reported_and_a_closed_port_refuses() -> None:
    async with served(Transport.TCP) as server:
        client = StreamModbusClient("127.0.0.1", server.port, timeout=2.0)
        assert await client.connect() and client.connected
        port = server.port
        server.faults[1] = UnitFault(CommsFault.NO_RESPONSE)
        waiting = asyncio.create_task(client.read_holding_registers(0, count=2, device_id=1))
        await asyncio.sleep(0.1)
        await server.stop()  # the server goes away while a request waits
        with pytest.raises(ConnectionException):
            await asyncio.wait_for(waiting, 5)
        assert not client.connected
        with pytest.raises(ConnectionException):
            await client.read_holding_registers(0, count=2, device_id=1)
    assert not await StreamModbusClient("127.0.0.1", port, timeout=1.0).connect()
