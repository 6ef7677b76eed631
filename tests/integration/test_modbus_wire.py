"""The simulated Modbus buses on real sockets: every signal, mbpoll, and injected faults.

Two stations are served by a SiteRunner: Fengshou/Xiba (Modbus TCP) and
Chaheihai/intake (RTU framing over TCP, as through a serial-to-Ethernet converter).
The simulated clock is all but frozen, so the register images stay put while the
tests read them; the physics was run beforehand until pumps deliver water.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus.exceptions import ModbusException, ModbusIOException

from facility.config import SiteConfig
from facility.profile import Table
from facility.registers import Value
from facility.site import Transport
from simulators.engine import Simulation
from simulators.modbus_server import CommsFault, UnitFault
from simulators.physics.pump import PumpModel
from simulators.physics.transformer import TransformerModel
from simulators.runner import Endpoint, SiteRunner
from simulators.world import AssetKey
from tests.integration._wire import (
    START_MS,
    advance_until_pumping,
    assert_device_matches_image,
    frozen_site,
    image_of,
    mbpoll,
    mbpoll_tcp_args,
    parse_register,
    profile_of,
    read_value,
    running_pumps,
    served,
    subset_config,
    tcp_client,
    wait_connected,
)

pytestmark = pytest.mark.timeout(60)

XIBA = ("fengshou", "xiba")
INTAKE = ("chaheihai", "chaheihai_intake")
PUMP_1 = (*XIBA, "pump_1")
PUMP_2 = (*XIBA, "pump_2")
XIBA_TRANSFORMER = (*XIBA, "transformer")
INTAKE_PUMP = (*INTAKE, "pump_1")
INTAKE_TANK = (*INTAKE, "tank_no1")


@pytest.fixture(scope="module")
def wire_config(demo_config: SiteConfig) -> SiteConfig:
    return subset_config(demo_config, {"fengshou": ["xiba"], "chaheihai": ["chaheihai_intake"]})


@pytest.fixture(scope="module")
def sim(wire_config: SiteConfig) -> Simulation:
    simulation = Simulation(wire_config, seed=3, start_ms=START_MS)
    advance_until_pumping(simulation, [XIBA, INTAKE])
    return simulation


@pytest.fixture
async def runner(wire_config: SiteConfig, sim: Simulation) -> AsyncIterator[SiteRunner]:
    async with frozen_site(wire_config, sim, any_port=True) as site_runner:
        yield site_runner


async def set_fault(
    runner: SiteRunner, sim: Simulation, key: AssetKey, fault: UnitFault
) -> tuple[Endpoint, int]:
    """Injects the fault; answers where the faulty device is served (endpoint, unit)."""
    sim.injector.comms[key] = fault
    await runner.tick()
    endpoint, unit, _ = image_of(runner, key)
    return endpoint, unit


async def clear_fault(runner: SiteRunner, sim: Simulation, key: AssetKey) -> None:
    del sim.injector.comms[key]
    await runner.tick()


async def assert_no_data(client: Any, call: Any) -> BaseException | Any:
    """The call must give an exception response or raise; never data."""
    try:
        response = await call(client)
    except ModbusException as exc:
        return exc
    assert response.isError(), f"expected no valid data, got {response}"
    return response


# --- every signal ----------------------------------------------------------------


async def test_every_signal_on_the_wire_equals_the_image(
    runner: SiteRunner, sim: Simulation
) -> None:
    assert runner.endpoints, "no bus served"
    transports = {e.bus.transport for e in runner.endpoints}
    assert transports == {Transport.TCP, Transport.RTU_OVER_TCP}
    assert running_pumps(sim, XIBA) and running_pumps(sim, INTAKE)

    compared = 0
    for endpoint in runner.endpoints:
        async with tcp_client(endpoint) as client:
            for key in endpoint.units.values():
                compared += await assert_device_matches_image(client, runner, key)
    assert compared > 60

    # the snapshot is not trivially zero: the running pumps deliver water on the wire
    for key in running_pumps(sim, XIBA) + running_pumps(sim, INTAKE):
        endpoint, unit, image = image_of(runner, key)
        profile = image.profile
        async with tcp_client(endpoint) as client:
            flow = await read_value(client, profile, profile.signal("flow_m3h"), unit)
            running = await read_value(client, profile, profile.signal("running"), unit)
        assert running is True
        assert isinstance(flow, float) and flow > 0


async def test_served_values_follow_the_physics(runner: SiteRunner, sim: Simulation) -> None:
    """Noiseless signals equal the physics state quantised by the profile."""
    for key in (PUMP_1, INTAKE_PUMP):
        model = sim.world.models[key]
        assert isinstance(model, PumpModel)
        endpoint, unit, image = image_of(runner, key)
        profile = profile_of(runner, key)
        physics: dict[str, Value] = {
            "running": model.running,
            "ready": model.can_run,
            "starts": model.starts,
            "run_hours": model.run_hours,
            "frequency_hz": round(model.frequency_hz, 2),
            "fault_code": model.fault_code,
            "drive_model": model.model_name[:16],
        }
        async with tcp_client(endpoint) as client:
            for name, value in physics.items():
                signal = profile.signal(name)
                got = await read_value(client, profile, signal, unit)
                assert got == served(profile, signal, value) == image.read(signal), (key, name)
            # a noisy one: within the flowmeter's noise of the hydraulic solution
            flow = await read_value(client, profile, profile.signal("flow_m3h"), unit)
        assert isinstance(flow, float)
        assert math.isclose(flow, model.flow_m3h, rel_tol=0.03), (key, flow, model.flow_m3h)
        run_hours = image.read(profile.signal("run_hours"))
        assert isinstance(run_hours, float)
        assert abs(run_hours - model.run_hours) <= 0.05 + 1e-9

    model = sim.world.models[XIBA_TRANSFORMER]
    assert isinstance(model, TransformerModel)
    endpoint, unit, image = image_of(runner, XIBA_TRANSFORMER)
    profile = profile_of(runner, XIBA_TRANSFORMER)
    async with tcp_client(endpoint) as client:
        for name, value in (
            ("energy_kwh", model.energy_kwh),
            ("load_pct", 100 * model.load_factor),
        ):
            signal = profile.signal(name)
            got = await read_value(client, profile, signal, unit)
            assert got == served(profile, signal, value) == image.read(signal), name
        current = await read_value(client, profile, profile.signal("current_l1_a"), unit)
        assert isinstance(current, float) and current > 0


# --- mbpoll ----------------------------------------------------------------------


async def test_mbpoll_reads_the_input_registers(runner: SiteRunner) -> None:
    for key in (PUMP_1, XIBA_TRANSFORMER):
        endpoint, unit, image = image_of(runner, key)
        span = image.spans[Table.INPUT]
        want = image.tables[Table.INPUT]
        assert any(want), f"{key}: all input registers are zero"
        port = endpoint.server.port
        for table in ("3", "3:hex"):
            lines = await mbpoll(*mbpoll_tcp_args(port, unit, table, span.start, span.count))
            assert sorted(lines) == list(range(span.start, span.start + span.count)), lines
            got = [parse_register(lines[span.start + i]) for i in range(span.count)]
            assert got == want, f"{key} mbpoll -t {table}"


async def test_mbpoll_reads_discrete_inputs(runner: SiteRunner) -> None:
    endpoint, unit, image = image_of(runner, PUMP_1)
    span = image.spans[Table.DISCRETE]
    lines = await mbpoll(*mbpoll_tcp_args(endpoint.server.port, unit, "1", span.start, span.count))
    assert [int(lines[span.start + i]) for i in range(span.count)] == image.tables[Table.DISCRETE]
    assert lines[0] == "1"  # running


async def test_mbpoll_reads_an_abcd_float(runner: SiteRunner) -> None:
    endpoint, unit, image = image_of(runner, XIBA_TRANSFORMER)
    profile = image.profile
    signal = profile.signal("current_l1_a")
    assert profile.order_of(signal).value == "ABCD"
    address = profile.protocol_address(signal)
    want = image.read(signal)
    assert isinstance(want, float) and want > 0
    # -B: big-endian word order, i.e. ABCD; mbpoll prints about 6 significant digits
    args = mbpoll_tcp_args(endpoint.server.port, unit, "3:float", address, 1)
    lines = await mbpoll(*args[:-1], "-B", args[-1])
    assert math.isclose(float(lines[address]), want, rel_tol=1e-5), (lines, want)
    # without -B the words are swapped: a different number
    swapped = struct.unpack(">f", struct.pack(">f", want)[2:] + struct.pack(">f", want)[:2])[0]
    lines = await mbpoll(*args)
    assert not math.isclose(float(lines[address]), want, rel_tol=1e-3)
    assert math.isclose(float(lines[address]), swapped, rel_tol=1e-5, abs_tol=1e-30)


# --- faults on the wire ----------------------------------------------------------


async def read_pump_1_ok(client: Any, runner: SiteRunner) -> None:
    profile = profile_of(runner, PUMP_1)
    _, unit, image = image_of(runner, PUMP_1)
    for name in ("starts", "flow_m3h", "running"):
        signal = profile.signal(name)
        assert await read_value(client, profile, signal, unit) == image.read(signal), name


async def test_no_response_times_out_while_neighbours_answer(
    runner: SiteRunner, sim: Simulation
) -> None:
    endpoint, unit = await set_fault(runner, sim, PUMP_2, UnitFault(CommsFault.NO_RESPONSE))
    async with tcp_client(endpoint) as client:
        with pytest.raises(ModbusIOException):
            await client.read_input_registers(0, count=1, device_id=unit)
        await read_pump_1_ok(client, runner)
        await clear_fault(runner, sim, PUMP_2)
        assert await assert_device_matches_image(client, runner, PUMP_2)


@pytest.mark.parametrize("code", [2, 6])
async def test_exception_code_comes_back(runner: SiteRunner, sim: Simulation, code: int) -> None:
    endpoint, unit = await set_fault(
        runner, sim, PUMP_2, UnitFault(CommsFault.EXCEPTION, exception_code=code)
    )
    async with tcp_client(endpoint) as client:
        for call in (
            client.read_input_registers(0, count=2, device_id=unit),
            client.read_discrete_inputs(0, count=4, device_id=unit),
            client.read_holding_registers(0, count=1, device_id=unit),
        ):
            response = await call
            assert response.isError()
            assert response.exception_code == code
        await read_pump_1_ok(client, runner)
        await clear_fault(runner, sim, PUMP_2)
        assert await assert_device_matches_image(client, runner, PUMP_2)


async def test_garbled_tcp_frame_gives_no_data_then_recovers(
    runner: SiteRunner, sim: Simulation
) -> None:
    endpoint, unit = await set_fault(runner, sim, PUMP_2, UnitFault(CommsFault.GARBLED))
    async with tcp_client(endpoint) as client:
        await assert_no_data(client, lambda c: c.read_input_registers(0, count=2, device_id=unit))
        # the client dropped the connection on the undecodable frame; it reconnects by itself
        await wait_connected(client)
        await read_pump_1_ok(client, runner)
        await clear_fault(runner, sim, PUMP_2)
        assert await assert_device_matches_image(client, runner, PUMP_2)


async def test_garbled_rtu_over_tcp_frame_times_out(runner: SiteRunner, sim: Simulation) -> None:
    endpoint, unit = await set_fault(runner, sim, INTAKE_TANK, UnitFault(CommsFault.GARBLED))
    async with tcp_client(endpoint) as client:
        with pytest.raises(ModbusIOException):  # bad CRC: the frame is discarded
            await client.read_input_registers(0, count=1, device_id=unit)
        await wait_connected(client)
        assert await assert_device_matches_image(client, runner, INTAKE_PUMP)
        await clear_fault(runner, sim, INTAKE_TANK)
        assert await assert_device_matches_image(client, runner, INTAKE_TANK)


@pytest.mark.parametrize("key", [PUMP_2, INTAKE_TANK], ids=["tcp", "rtu_over_tcp"])
async def test_short_frame_times_out(runner: SiteRunner, sim: Simulation, key: AssetKey) -> None:
    endpoint, unit, _ = image_of(runner, key)
    neighbour = PUMP_1 if key == PUMP_2 else INTAKE_PUMP
    await set_fault(runner, sim, key, UnitFault(CommsFault.SHORT))
    async with tcp_client(endpoint) as client:
        with pytest.raises(ModbusIOException):  # the frame never completes
            await client.read_input_registers(0, count=2, device_id=unit)
        # the half frame left in the client's buffer does not spoil the next answer
        assert await assert_device_matches_image(client, runner, neighbour)
        await clear_fault(runner, sim, key)
        assert await assert_device_matches_image(client, runner, key)


@pytest.mark.parametrize("station", [XIBA, INTAKE], ids=["tcp", "rtu_over_tcp"])
async def test_unconfigured_unit_never_gives_data(
    runner: SiteRunner, station: tuple[str, str]
) -> None:
    endpoint = next(e for e in runner.endpoints if e.station == station)
    free = next(u for u in range(1, 248) if u not in endpoint.units)
    assert free not in endpoint.units
    async with tcp_client(endpoint) as client:
        for call in (
            lambda c: c.read_input_registers(0, count=1, device_id=free),
            lambda c: c.read_holding_registers(0, count=1, device_id=free),
            lambda c: c.read_discrete_inputs(0, count=1, device_id=free),
        ):
            await assert_no_data(client, call)
        await wait_connected(client)
        some_key = next(iter(endpoint.units.values()))
        assert await assert_device_matches_image(client, runner, some_key)


@pytest.mark.parametrize(
    "fault",
    [UnitFault(CommsFault.NO_RESPONSE), UnitFault(CommsFault.EXCEPTION, exception_code=6)],
    ids=["no_response", "busy"],
)
async def test_a_failing_device_stores_no_write(
    runner: SiteRunner, sim: Simulation, fault: UnitFault
) -> None:
    endpoint, unit, _ = image_of(runner, PUMP_2)
    async with tcp_client(endpoint) as client:
        before = (await client.read_holding_registers(0, count=1, device_id=unit)).registers
        await set_fault(runner, sim, PUMP_2, fault)
        with contextlib.suppress(ModbusIOException):
            response = await client.write_register(0, before[0] ^ 0x55, device_id=unit)
            assert response.isError()
        await clear_fault(runner, sim, PUMP_2)
        await wait_connected(client)
        after = (await client.read_holding_registers(0, count=1, device_id=unit)).registers
        assert after == before


async def test_tcp_gateway_answers_gateway_no_response_for_an_absent_unit(
    runner: SiteRunner,
) -> None:
    endpoint = next(e for e in runner.endpoints if e.station == XIBA)
    free = next(u for u in range(1, 248) if u not in endpoint.units)
    async with tcp_client(endpoint) as client:
        response = await client.read_input_registers(0, count=1, device_id=free)
        assert response.isError() and response.exception_code == 11
