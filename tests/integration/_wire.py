"""Helpers for the wire-level integration tests: simulated sites, Modbus reads, mbpoll.

Everything here talks to real sockets and real programs; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from facility.config import SiteConfig
from facility.profile import ModbusProfile, ModbusSignal, Table
from facility.registers import RegisterImage, Value, decode_signal, encode_signal
from facility.site import Transport
from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.physics.pump import PumpModel
from simulators.runner import Endpoint, SiteRunner
from simulators.world import AssetKey
from tests.services import require

START_MS = 1_780_243_200_000  # 2026-06-01 00:00 in Asia/Shanghai
HOUR_MS = 3_600_000
CLIENT_TIMEOUT_S = 0.5

Client = AsyncModbusTcpClient | AsyncModbusSerialClient


def subset_config(config: SiteConfig, stations: dict[str, list[str]]) -> SiteConfig:
    """Only the named stations of the named sites."""
    sites = []
    for site_id, station_ids in stations.items():
        site = config.site(site_id)
        kept = [site.station(s) for s in station_ids]
        sites.append(site.model_copy(update={"stations": kept}))
    return dataclasses.replace(config, sites=sites)


def running_pumps(sim: Simulation, station: tuple[str, str]) -> list[AssetKey]:
    return [
        key
        for key, model in sim.world.models.items()
        if key[:2] == station
        and isinstance(model, PumpModel)
        and model.running
        and model.flow_m3h > 0
        and model.frequency_hz > 0.1
    ]


def advance_until_pumping(
    sim: Simulation, stations: Iterable[tuple[str, str]], max_hours: int = 48
) -> None:
    """Run the physics (1 h, then 10-minute steps) until every station pumps at once."""
    wanted = list(stations)
    sim.advance_to(sim.t_ms + HOUR_MS)
    for _ in range(max_hours * 6):
        if all(running_pumps(sim, s) for s in wanted):
            return
        sim.advance_to(sim.t_ms + HOUR_MS // 6)
    raise AssertionError(f"no pump ran at {wanted} within {max_hours} simulated hours")


def image_of(runner: SiteRunner, key: AssetKey) -> tuple[Endpoint, int, RegisterImage]:
    return runner._images[key]


def profile_of(runner: SiteRunner, key: AssetKey) -> ModbusProfile:
    profile = image_of(runner, key)[2].profile
    assert isinstance(profile, ModbusProfile)
    return profile


def served(profile: ModbusProfile, signal: ModbusSignal, value: Value) -> Value:
    """A physical value as a device puts it on the wire: quantised by the profile."""
    return decode_signal(profile, signal, encode_signal(profile, signal, value))


def framer_of(endpoint: Endpoint) -> FramerType:
    if endpoint.bus.transport in (Transport.RTU, Transport.RTU_OVER_TCP):
        return FramerType.RTU
    return FramerType.SOCKET


@asynccontextmanager
async def tcp_client(endpoint: Endpoint, timeout: float = CLIENT_TIMEOUT_S) -> AsyncIterator[Any]:
    """A pymodbus TCP client for a TCP or RTU-over-TCP bus (framing chosen by the bus)."""
    client = AsyncModbusTcpClient(
        "127.0.0.1",
        port=endpoint.server.port,
        framer=framer_of(endpoint),
        timeout=timeout,
        retries=0,
        reconnect_delay=0.05,
    )
    async with connected(client, f"cannot connect to {endpoint.address}") as open_client:
        yield open_client


@asynccontextmanager
async def connected(client: Any, refused: str) -> AsyncIterator[Any]:
    """The pymodbus client connected (else fails saying `refused`), closed after."""
    assert await client.connect(), refused
    try:
        yield client
    finally:
        client.close()


@asynccontextmanager
async def frozen_site(
    config: SiteConfig, sim: Simulation, any_port: bool = False
) -> AsyncIterator[SiteRunner]:
    """The simulation served at ~0.1 simulated ms per wall second: ticks re-encode the
    images but never step physics. Comms faults injected meanwhile are cleared after."""
    site_runner = SiteRunner(config, sim, SimClock(sim.t_ms, speed=0.0001), any_port=any_port)
    await site_runner.start()
    try:
        yield site_runner
    finally:
        sim.injector.comms.clear()
        await site_runner.stop()


async def wait_connected(client: Client, timeout_s: float = 3.0) -> None:
    """Wait for the client's own reconnect after the server or its framer dropped the link."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not client.connected:
        assert loop.time() < deadline, "client did not reconnect"
        await asyncio.sleep(0.02)


async def read_signal(
    client: Client, profile: ModbusProfile, signal: ModbusSignal, unit: int
) -> Any:
    """Read one signal at its own address and return the raw response."""
    address = profile.protocol_address(signal)
    if signal.table is Table.COIL:
        return await client.read_coils(address, count=1, device_id=unit)
    if signal.table is Table.DISCRETE:
        return await client.read_discrete_inputs(address, count=1, device_id=unit)
    if signal.table is Table.HOLDING:
        return await client.read_holding_registers(address, count=signal.count, device_id=unit)
    return await client.read_input_registers(address, count=signal.count, device_id=unit)


async def read_value(
    client: Client, profile: ModbusProfile, signal: ModbusSignal, unit: int
) -> Value:
    """Read one signal from the wire and decode it through the profile."""
    response = await read_signal(client, profile, signal, unit)
    assert not response.isError(), f"{signal.name} on unit {unit}: {response}"
    registers = [int(response.bits[0])] if signal.table.is_bit_table else response.registers
    return decode_signal(profile, signal, registers)


async def read_table(client: Client, image: RegisterImage, table: Table, unit: int) -> list[int]:
    """A whole table span of one device, as raw registers (bits as 0/1)."""
    span = image.spans[table]
    if table is Table.COIL:
        rr = await client.read_coils(span.start, count=span.count, device_id=unit)
    elif table is Table.DISCRETE:
        rr = await client.read_discrete_inputs(span.start, count=span.count, device_id=unit)
    elif table is Table.HOLDING:
        rr = await client.read_holding_registers(span.start, count=span.count, device_id=unit)
    else:
        rr = await client.read_input_registers(span.start, count=span.count, device_id=unit)
    assert not rr.isError(), f"{table} of unit {unit}: {rr}"
    if table.is_bit_table:
        return [int(b) for b in rr.bits[: span.count]]
    return list(rr.registers)


async def assert_device_matches_image(client: Client, runner: SiteRunner, key: AssetKey) -> int:
    """Every signal and every table span of a device read over the wire equals its image.

    Returns how many signals were compared.
    """
    _, unit, image = image_of(runner, key)
    profile = image.profile
    for signal in profile.signals:
        got = await read_value(client, profile, signal, unit)
        want = image.read(signal)
        assert type(got) is type(want), f"{key} {signal.name}: {got!r} vs {want!r}"
        assert got == want, f"{key} {signal.name}: wire {got!r} != image {want!r}"
    for table in image.spans:
        assert await read_table(client, image, table, unit) == image.tables[table], (key, table)
    return len(profile.signals)


# --- mbpoll -------------------------------------------------------------------------

# "[ref]: <TAB>value"; a 16-bit register above 32767 reads "52820 (-12716)"
MBPOLL_LINE = re.compile(r"^\[(\d+)\]:\s+(\S+(?: \(-\d+\))?)\s*$", re.M)


async def mbpoll(*args: str, timeout_s: float = 10.0) -> dict[int, str]:
    """Run mbpoll once (without blocking the loop the servers run in); return ref -> text."""
    proc = await asyncio.create_subprocess_exec(
        require("mbpoll"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"mbpoll {' '.join(args)} -> {proc.returncode}: {err.decode()}"
    return {int(ref): value for ref, value in MBPOLL_LINE.findall(text)}


def mbpoll_tcp_args(port: int, unit: int, table: str, start: int, count: int) -> list[str]:
    return [
        "-m", "tcp", "-a", str(unit), "-t", table, "-r", str(start), "-c", str(count),
        "-0", "-1", "-o", "2", "-p", str(port), "127.0.0.1",
    ]  # fmt: skip


def parse_register(text: str) -> int:
    """A 16-bit register as mbpoll prints it (decimal, "u16 (i16)" or hex) -> uint16."""
    if text.lower().startswith("0x"):
        return int(text, 16)
    unsigned, _, signed = text.partition(" (")
    value = int(unsigned)
    if signed:
        assert value > 0x7FFF and int(signed.rstrip(")")) == value - 0x10000, text
    return value
