"""Strict devices and `facility probe`, over real Modbus TCP, a serial pty and Mosquitto.

The tutorial's four devices (tests/own_devices.py) served by the real simulator with
generated signals: a strict flow meter refuses reads spanning its unmapped registers
with exception 2 and the gateway's bus worker splits, learns and reads every signal;
`facility probe` (the real command, in a subprocess) shows requests, raw registers,
values and what it learned, reads the RTU transmitter through a socat pty, and maps
the chlorine analyser's MQTT messages, naming a signal that matches nothing and why.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from pathlib import Path

import aiomqtt
from pymodbus.client import AsyncModbusTcpClient
from typer.testing import CliRunner

from facility.codec import FLOAT_TYPES, INTEGER_TYPES, ByteOrder, DataType
from facility.config import SiteConfig, load_site_config
from facility.profile import ModbusProfile, ModbusSignal, Table
from facility.registers import RegisterImage, encode_signal
from facility.site import Broker, Bus, Transport
from facility.wire import Reading
from gateway.modbus.poller import BusWorker, build_device
from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.modbus_server import BusServer, CommsFault, UnitFault
from tests.integration._gateway import gateway_for, one_station, record_for, served_at
from tests.integration.test_gateway_e2e import RunningSite
from tests.own_devices import write_site
from tests.services import Mosquitto, PtyPair, free_port
from wiring.cli import app

START = 1_780_264_800_000
STRICT = ", unmapped_registers: refuse"


async def _serve(config: SiteConfig, broker_port: int = 1, speed: float = 1e-6) -> RunningSite:
    sim = Simulation(config, seed=4, start_ms=START)
    sim.advance_to(START + 3600_000)
    runner = RunningSite(
        config,
        sim,
        SimClock(sim.t_ms, speed=speed),
        any_port=True,
        broker=Broker(host="127.0.0.1", port=broker_port),
        tick_s=0.1,
    )
    await runner.start()
    if speed > 1:
        runner.task = asyncio.create_task(runner.run())
    return runner


async def _facility(*args: str) -> tuple[int, str]:
    """`facility ARGS` in this process (a thread: the command runs its own event loop);
    the loggers the probe quiets are restored after."""
    levels = {name: logging.getLogger(name).level for name in ("gateway", "pymodbus")}
    try:
        result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    return result.exit_code, result.output


async def _facility_process(*args: str) -> tuple[int, str]:
    """The real command in its own process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wiring.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def _meters_port(runner: RunningSite) -> int:
    return next(e.server.port for e in runner.endpoints if e.bus.id == "meters")


async def test_a_strict_device_refuses_spans_and_the_gateway_learns_a_plan(
    tmp_path: Path,
) -> None:
    config = load_site_config(write_site(tmp_path / "site", flow_meter_modbus=STRICT))
    runner = await _serve(config)
    try:
        client = AsyncModbusTcpClient("127.0.0.1", port=_meters_port(runner))
        await client.connect()
        spanning = await client.read_holding_registers(0, count=17, device_id=2)
        assert spanning.isError() and spanning.exception_code == 2
        assert not (await client.read_holding_registers(0, count=4, device_id=2)).isError()
        assert not (await client.read_holding_registers(8, count=2, device_id=2)).isError()
        lenient = await client.read_input_registers(0, count=76, device_id=1)  # gaps and all
        assert not lenient.isError()
        client.close()

        served = served_at(config, runner).sites[0].station("works")
        profile = config.profiles["flow_meter_emf"]
        assert isinstance(profile, ModbusProfile)
        device = build_device("flow_meter", 2, profile, 1.0, served.bus("meters").max_gap)
        assert len(device.plan) == 1  # max_gap 8 merges 1..17 into one read
        got: list[Reading] = []
        worker = BusWorker(served.bus("meters"), [device], got.extend)
        await worker.poll(device)
        first = worker.requests
        await worker.poll(device)
        second = worker.requests
        assert device.status.ok, device.status.error
        flow = ("plant", "works", "flow_meter")
        runner.source.comms[flow] = UnitFault(CommsFault.EXCEPTION, 2)  # a fault, not a map
        await runner.tick()
        await worker.poll(device)
        faulted = (device.status.ok, device.status.exception_code, len(device.plan))
        runner.source.comms[flow] = UnitFault(CommsFault.EXCEPTION, 4)
        await runner.tick()
        await worker.poll(device)
        failure = device.status.error
        runner.source.comms.clear()
        await runner.tick()
        await worker.poll(device)
        device.relearn_after_s = 0.0  # the learned plan is due to be tried afresh
        await worker.poll(device)
        relearned = (device.status.ok, len(device.plan), len(device.learned))
        worker.close()
    finally:
        await runner.stop()
    assert faulted == (False, 2, 3)  # refused everything: the poll fails, the plan stays
    assert relearned == (True, 3, 2)  # the profile's plan again, refused, learned again
    assert failure.startswith("exception 4")  # the generated device answers its comms fault
    assert device.status.ok, device.status.error
    assert [(r.address, r.count) for r in device.plan] == [(0, 4), (8, 2), (16, 1)]
    assert second - first == 3  # the learned plan, no more refusals
    assert first == 5  # 0..16 refused, 0..9 refused, then the three that work
    assert device.learned[0] == "exception 2 on merged reads: 1 requests became 3"
    truth = runner.source.values(("plant", "works", "flow_meter"))
    values = [r for r in got if r.kind == "v"]
    assert {r.signal for r in values} == {s.name for s in profile.signals}
    for reading in values[-5:]:
        signal = profile.signal(reading.signal)
        expected = encode_signal(profile, signal, truth[reading.signal])
        assert reading.value is not None
        assert encode_signal(profile, signal, reading.value) == expected, reading.signal


async def test_a_signal_the_device_lacks_is_refused_alone_and_the_rest_still_read(
    tmp_path: Path,
) -> None:
    folder = write_site(tmp_path / "site")  # strict for every device of the type:
    path = folder / "profiles" / "flow_meter_emf.yaml"
    path.write_text(
        path.read_text().replace(
            "address_base: 1\n", "address_base: 1\nunmapped_registers: refuse\n"
        )
    )
    config = load_site_config(folder)
    runner = await _serve(config)
    profile = config.profiles["flow_meter_emf"]
    assert isinstance(profile, ModbusProfile)
    extra = profile.signals[0].model_copy(update={"name": "ghost", "address": 6})
    wrong = profile.model_copy(update={"signals": [*profile.signals, extra]})
    try:
        bus = served_at(config, runner).sites[0].station("works").bus("meters")
        device = build_device("flow_meter", 2, wrong, 1.0, bus.max_gap)
        got: list[Reading] = []
        worker = BusWorker(bus, [device], got.extend)
        await worker.poll(device)
        worker.close()
    finally:
        await runner.stop()
    assert device.status.ok
    assert device.refused == {"ghost"}
    assert len(device.plan) == 3
    assert {r.signal for r in got if r.kind == "v"} == {s.name for s in profile.signals}
    assert "refused alone: ghost" in device.learned[0]


async def test_probe_shows_requests_registers_values_and_what_it_learned(
    tmp_path: Path,
) -> None:
    sensor_fault = "        simulate: {velocity_m_s: {kind: constant, value: .nan}}\n"
    folder = write_site(tmp_path / "site", flow_meter_modbus=STRICT, flow_meter_extra=sensor_fault)
    config = load_site_config(folder)
    runner = await _serve(config)
    try:
        port = str(_meters_port(runner))
        code, out = await _facility_process(
            "probe", str(folder), "--device", "plant/works/flow_meter", "--port", port
        )
        meter_code, meter_out = await _facility(
            "probe", str(folder), "--device", "plant/works/energy_meter", "--port", port
        )
        rtu_port = next(str(e.server.port) for e in runner.endpoints if e.bus.id == "rs485")
        rtu_code, rtu_out = await _facility(
            "probe", str(folder), "--device", "plant/works/outlet_pressure", "--port", rtu_port
        )
    finally:
        await runner.stop()
    assert code == 0, out
    assert "holding 1..17 (protocol 0+17)" in out
    assert "exception 2 (illegal data address)" in out
    assert "learned: exception 2 on merged reads: 1 requests became 3" in out
    flow = runner.source.values(("plant", "works", "flow_meter"))
    total = config.profiles["flow_meter_emf"]
    assert isinstance(total, ModbusProfile)
    raw = encode_signal(total, total.signal("volume_total_m3"), flow["volume_total_m3"])
    assert " ".join(f"{r:04X}" for r in raw) in out  # CDAB: low word first
    assert meter_code == 0, meter_out
    assert "plan: 2 requests" in meter_out and "exception" not in meter_out
    velocity = next(line for line in out.splitlines() if "│ velocity_m_s " in line)
    assert "bad (NaN or infinite)" in velocity and "FC0 " in velocity  # a NaN, CDAB words
    assert meter_out.count("good") == 11
    assert rtu_code == 0 and f"rtu-over-tcp 127.0.0.1:{rtu_port}, unit 5" in rtu_out
    assert rtu_out.count("good") == 3


async def test_probe_reads_an_rtu_transmitter_through_a_serial_pty(
    tmp_path: Path, pty_pair: PtyPair
) -> None:
    rtu = f"{{id: rs485, transport: rtu, serial_port: {pty_pair.a}, baudrate: 19200}}"
    folder = write_site(tmp_path / "site", rtu_bus=rtu)
    runner = await _serve(load_site_config(folder))
    try:
        code, out = await _facility(
            "probe",
            str(folder),
            "--device",
            "plant/works/outlet_pressure",
            "--serial-port",
            pty_pair.b,
        )
    finally:
        await runner.stop()
    assert code == 0, out
    assert f"rtu {pty_pair.b} 19200 8N1" in out
    pressure = runner.source.values(("plant", "works", "outlet_pressure"))["pressure_bar"]
    assert f" {float(pressure):.3f} " in out
    assert "0 (ok)" in out  # the status enum, with its meaning


async def test_probe_maps_mqtt_messages_and_names_what_matched_nothing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    folder = write_site(tmp_path / "site", broker_port=mosquitto.port)
    broken = folder / "profiles" / "chlorine_analyser_mqtt.yaml"
    runner = await _serve(load_site_config(folder), mosquitto.port, speed=20.0)
    try:
        code, out = await _facility(
            "probe", str(folder), "--device", "plant/works/chlorine", "--seconds", "3"
        )
        broken.write_text(broken.read_text().replace("$.cl2.value", "$.chlorine"))
        stray = asyncio.create_task(_publish_stray(mosquitto.port, "plant/plant/cl2_old/data"))
        bad_code, bad_out = await _facility(
            "probe", str(folder), "--device", "plant/works/chlorine", "--seconds", "3"
        )
        stray.cancel()
    finally:
        await runner.stop()
    assert code == 0, out
    assert "every signal matched" in out
    assert "chlorine_mg_l = " in out and "sample_flow_ok = True" in out
    assert bad_code == 1, bad_out
    assert "signals that matched nothing:" in bad_out
    assert "chlorine_mg_l: $.chlorine not in the message (keys: ['cl2', 'ph'," in bad_out
    assert "messages on other topics: plant/plant/cl2_old/data (" in bad_out


async def _publish_stray(port: int, topic: str) -> None:
    """A device publishing under a neighbouring name, as a misconfigured one would."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        while True:
            await client.publish(topic, b'{"cl2": 1}')
            await asyncio.sleep(0.2)


def _random_map(rng: random.Random) -> ModbusProfile:
    """Holding and input signals of every numeric type, bits sharing registers, gaps of
    0..12 unmapped registers between them; each byte order."""
    signals: list[ModbusSignal] = []
    for table in (Table.HOLDING, Table.INPUT):
        at = rng.randrange(0, 50)
        for _ in range(rng.randrange(1, 14)):
            name = f"{table.value}_{len(signals)}"
            order = rng.choice(list(ByteOrder))
            if rng.random() < 0.25:
                bits = rng.sample(range(16), rng.randrange(1, 4))
                for bit in bits:
                    signals.append(
                        ModbusSignal(
                            name=f"{name}_b{bit}", table=table, address=at, type=DataType.BIT,
                            bit=bit,
                        )
                    )  # fmt: skip
                at += 1
            else:
                data_type = rng.choice([t for t in DataType if t in INTEGER_TYPES | FLOAT_TYPES])
                signal = ModbusSignal(
                    name=name, table=table, address=at, type=data_type, byte_order=order
                )
                signals.append(signal)
                at += signal.count
            at += rng.choice([0, 0, 1, 2, 4, 7, 12])
    return ModbusProfile(profile="random", protocol="modbus", signals=signals)


async def test_random_strict_maps_are_learned_and_every_signal_read(tmp_path: Path) -> None:
    """Twenty random register maps served strict over real Modbus TCP, half of them read
    with a profile listing a register the device lacks: whatever the gap setting, the
    worker ends with a plan the device answers, every mapped signal's value, and the
    lacking register named."""
    rng = random.Random(11)
    learned = 0
    for case in range(20):
        profile = _random_map(rng)
        image = RegisterImage(profile)
        for words in image.tables.values():
            words[:] = [rng.randrange(1 << 16) for _ in words]
        ghost = _ghost(profile, rng) if case % 2 else None
        read_as = profile if ghost is None else profile.model_copy(
            update={"signals": [*profile.signals, ghost]}
        )  # fmt: skip
        bus = Bus(id="b", transport=Transport.TCP, port=0, timeout_s=1.0)
        server = BusServer(bus, {1: image}, strict={1})
        await server.start()
        await server.push(1)
        try:
            served = bus.model_copy(update={"port": server.port})
            device = build_device("d", 1, read_as, 1.0, max_gap=rng.choice([0, 3, 8, 20]))
            got: list[Reading] = []
            worker = BusWorker(served, [device], got.extend)
            await worker.poll(device)
            before = worker.requests
            await worker.poll(device)
            worker.close()
        finally:
            await server.stop()
        assert device.status.ok, (case, device.status.error)
        assert worker.requests - before == len(device.plan), case  # no refusal any more
        assert device.refused == ({ghost.name} if ghost else set()), case
        learned += bool(device.learned)
        values = {r.signal: r.value for r in got if r.kind == "v"}  # the latest of each
        assert ghost is None or ghost.name not in values
        for signal in profile.signals:
            expected = image.read(signal)
            value = values[signal.name]
            assert value == expected or (value is None and expected != expected), (case, signal)
    assert learned >= 10  # most maps had gaps the planner read through


def _ghost(profile: ModbusProfile, rng: random.Random) -> ModbusSignal:
    """A uint16 at a register the map leaves out (inside its range, or just past it)."""
    table = rng.choice([Table.HOLDING, Table.INPUT])
    used = {
        a
        for s in profile.signals
        if s.table is table
        for a in range(profile.protocol_address(s), profile.protocol_address(s) + s.count)
    }
    free = [a for a in range(min(used), max(used) + 2) if a not in used]
    return ModbusSignal(name="ghost", table=table, address=rng.choice(free), type=DataType.UINT16)


async def test_probe_says_plainly_when_there_is_nothing_to_read(tmp_path: Path) -> None:
    folder = write_site(tmp_path / "site", broker_port=free_port())
    closed = str(free_port())
    runs = [
        await _facility("probe", str(folder), "--device", "plant/works/pump_9"),
        await _facility(
            "probe", str(folder), "--device", "plant/works/flow_meter", "--port", closed
        ),
        await _facility("probe", str(folder), "--device", "plant/works/chlorine", "--seconds", "1"),
    ]
    (unknown, unknown_out), (refused, refused_out), (no_broker, no_broker_out) = runs
    assert unknown == 2 and "no such device" in unknown_out
    assert "plant/works/flow_meter" in unknown_out  # it lists what there is
    assert refused == 1 and "device failed: connection refused or unreachable" in refused_out
    assert refused_out.count("not read") == 5
    assert no_broker == 1 and "error broker 127.0.0.1:" in no_broker_out


async def test_the_gateway_daemon_reads_all_four_devices_strict_meter_included(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """`facility gateway run`'s daemon on the four devices: every signal of the three
    Modbus devices and the MQTT analyser arrives, the strict meter's plan learned."""
    folder = write_site(tmp_path / "site", broker_port=mosquitto.port, flow_meter_modbus=STRICT)
    config = one_station(load_site_config(folder), "plant", "works")
    runner = await _serve(config, mosquitto.port, speed=20.0)
    gateway = gateway_for(served_at(config, runner), "plant", "works", tmp_path, mosquitto.port)
    # nobody acknowledges (no ingest here): a short grace
    recorder = await record_for(4.0, gateway, runner, grace_s=0.2)
    got = {(r.asset, r.signal) for r in recorder.readings if r.kind == "v"}
    for ref in config.assets():
        if ref.asset.profile is None:
            continue
        wanted = {(ref.asset.id, s.name) for s in config.profile_of(ref).signals}
        assert wanted <= got, f"{ref.asset.id} lacks {sorted(wanted - got)}"
    flow = next(
        d for b in gateway.buses.values() for d in b.worker.devices if d.asset == "flow_meter"
    )
    assert flow.learned and len(flow.plan) == 3 and flow.status.ok
