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
import sys
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from facility.config import SiteConfig, load_site_config
from facility.profile import ModbusProfile
from facility.registers import encode_signal
from facility.site import Broker
from facility.wire import Reading
from gateway.modbus.poller import BusWorker, build_device
from simulators.clock import SimClock
from simulators.engine import Simulation
from tests.integration._gateway import served_at
from tests.integration.test_gateway_e2e import RunningSite
from tests.own_devices import write_site
from tests.services import Mosquitto, PtyPair

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
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "facility.cli",
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
        worker.close()
    finally:
        await runner.stop()
    assert device.status.ok, device.status.error
    assert [(r.address, r.count) for r in device.plan] == [(0, 4), (8, 2), (16, 1)]
    assert worker.requests - first == 3  # the learned plan, no more refusals
    assert first == 5  # 0..16 refused, 0..9 refused, then the three that work
    assert device.learned == ["exception 2 on merged reads: 1 requests became 3"]
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
    config = load_site_config(write_site(tmp_path / "site", flow_meter_modbus=STRICT))
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
    assert {r.signal for r in got if r.kind == "v"} == {s.name for s in profile.signals}
    assert "refused alone: ghost" in device.learned[0]


async def test_probe_shows_requests_registers_values_and_what_it_learned(
    tmp_path: Path,
) -> None:
    folder = write_site(tmp_path / "site", flow_meter_modbus=STRICT)
    config = load_site_config(folder)
    runner = await _serve(config)
    try:
        port = str(_meters_port(runner))
        code, out = await _facility(
            "probe", str(folder), "--device", "plant/works/flow_meter", "--port", port
        )
        meter_code, meter_out = await _facility(
            "probe", str(folder), "--device", "plant/works/energy_meter", "--port", port
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
    assert meter_out.count("good") == 11


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
        bad_code, bad_out = await _facility(
            "probe", str(folder), "--device", "plant/works/chlorine", "--seconds", "3"
        )
    finally:
        await runner.stop()
    assert code == 0, out
    assert "every signal matched" in out
    assert "chlorine_mg_l = " in out and "sample_flow_ok = True" in out
    assert bad_code == 1, bad_out
    assert "signals that matched nothing:" in bad_out
    assert "chlorine_mg_l: $.chlorine not in the message (keys: ['cl2', 'ph'," in bad_out
