"""Many small Modbus devices at high rates: what a request costs and what happens past
saturation (issue 16).

A pymodbus simulator serves N devices of M holding registers, one TCP port (one bus) a
device, the values changing every second. The real Gateway runs in this process pinned
to core 1 (`os.sched_setaffinity`, as `taskset -c 1`); the simulator, Mosquitto and an
acking ingest Receiver run on core 0 (`taskset -c 0`). After a warm-up, readings are
counted at the receiver over a window; the gateway's CPU is this process's CPU time
(`time.process_time`), so its µs per request and per reading do not depend on how busy
the rest of the machine is, while the readings/s and lags do.

    .venv/bin/python bench/bench_many_devices.py [--devices 100,200,500] [--registers 30]
        [--poll-ms 100] [--seconds 20] [--warmup 10] [--float32] [--py-spy profile.txt]
    .venv/bin/python bench/bench_many_devices.py --devices 100 --outage 30   # ingest outage
        [--silent-outage]   # the ingest says nothing during it instead of "not stored"
    .venv/bin/python bench/bench_many_devices.py --clients   # Modbus client libraries

Prints the issue's table (expected/s, stored/s, gateway CPU %, Modbus req/s, live lag
p50) plus CPU µs per request and per reading, and the health counters past saturation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Child,
    machine,
    start_broker,
    until_stopped,
    write_status,
)
from bench.common import stop_service as stop_broker  # noqa: E402
from facility.clock import now_ms  # noqa: E402
from facility.codec import DataType  # noqa: E402
from facility.config import SiteConfig  # noqa: E402
from facility.profile import ModbusProfile, ModbusSignal, Table  # noqa: E402
from facility.registers import RegisterImage  # noqa: E402
from facility.site import (  # noqa: E402
    Asset,
    AssetKind,
    Bus,
    GatewaySettings,
    ModbusAddress,
    Site,
    Station,
    Transport,
)
from facility.wire import BadRow, Batch  # noqa: E402
from gateway.daemon import Gateway  # noqa: E402
from gateway.modbus.client import StreamModbusClient  # noqa: E402
from gateway.modbus.poller import make_pymodbus_client  # noqa: E402
from ingest.receiver import Receiver  # noqa: E402
from simulators.modbus_server import BusServer  # noqa: E402

GATEWAY_CORE = 1
OTHERS_CORE = 0
LAG_SAMPLE_EVERY = 97  # readings between two lag samples at the receiver


def device_profile(registers: int, float32: bool) -> ModbusProfile:
    kind = DataType.FLOAT32 if float32 else DataType.UINT16
    width = 2 if float32 else 1
    return ModbusProfile(
        profile=f"bench_small_{registers}{'_f' if float32 else ''}",
        protocol="modbus",
        signals=[
            ModbusSignal(name=f"r{i:03d}", table=Table.HOLDING, address=i * width, type=kind)
            for i in range(registers)
        ],
    )


def random_values(profile: ModbusProfile, rnd: random.Random) -> dict[str, Any]:
    if profile.signals[0].type is DataType.FLOAT32:
        return {s.name: rnd.uniform(-1000, 1000) for s in profile.signals}
    return {s.name: rnd.randrange(65536) for s in profile.signals}


# --- helper process: N ports, one device each ----------------------------------------


async def serve_ports(
    ports: int, registers: int, float32: bool, status: Path, rtu: bool = False
) -> None:
    profile = device_profile(registers, float32)
    rnd = random.Random(1)
    servers: list[tuple[BusServer, RegisterImage]] = []
    transport = Transport.RTU_OVER_TCP if rtu else Transport.TCP
    for n in range(ports):
        image = RegisterImage(profile)
        image.write_values(random_values(profile, rnd))
        server = BusServer(Bus(id=f"p{n}", transport=transport, port=0), {1: image})
        await server.start()
        await server.push(1)
        servers.append((server, image))

    def each() -> None:
        write_status(
            status,
            {
                "ports": [s.port for s, _ in servers],
                "requests": sum(s.requests for s, _ in servers),
            },
        )

    async def move() -> None:  # the values change every second
        while True:
            await asyncio.sleep(1.0)
            for server, image in servers:
                image.write_values(random_values(profile, rnd))
                await server.push(1, (Table.HOLDING,))

    mover = asyncio.create_task(move())
    try:
        await until_stopped(0.5, each)
    finally:
        mover.cancel()
        each()
        for server, _ in servers:
            await server.stop()


async def receive_counting(port: int, status: Path, silent_outage: bool = False) -> None:
    """SIGUSR1 starts and ends an outage: the store raises, as the ingest's does while its
    InfluxDB is down (the receiver answers "not stored"), or with `silent_outage` the
    receiver answers nothing at all (the gateway's ack timeout runs out)."""
    lags: list[tuple[int, int]] = []  # (acquired ms, lag ms)
    counted = {"values": 0, "seen": 0}
    influx = {"down": False}
    worst = {"ms": 0}  # the largest sampled live lag since the last status
    ticks: list[tuple[int, int]] = []  # (status ms, largest lag since the one before)

    async def store(batch: Batch, rejected: list[BadRow]) -> None:
        if influx["down"]:
            raise ConnectionError("InfluxDB down (bench outage)")
        now = now_ms()
        live = batch.lane == "live"
        for r in batch.readings:
            if r.kind != "v":
                continue
            counted["values"] += 1
            if live and counted["values"] % LAG_SAMPLE_EVERY == 0:
                lags.append((r.ts_ms, now - r.ts_ms))
                worst["ms"] = max(worst["ms"], now - r.ts_ms)

    receiver = Receiver("127.0.0.1", port, store, client_id=f"bench-many-{os.getpid()}")
    await receiver.start()

    def toggle() -> None:
        if silent_outage:
            receiver.acking = not receiver.acking
        else:
            influx["down"] = not influx["down"]

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, toggle)

    def each() -> None:
        del lags[:-200]
        ticks.append((now_ms(), worst["ms"]))
        worst["ms"] = 0
        del ticks[:-600]
        recent = [lag for _, lag in lags]
        write_status(
            status,
            {
                "ready": True,
                "values": counted["values"],
                "lag_samples": len(lags),
                "lag_p50_recent_ms": statistics.median(recent) if recent else None,
                "lag_max_recent_ms": max(recent) if recent else None,
                "acking": receiver.acking,
                "influx_down": influx["down"],
                "not_stored_replies": receiver.not_stored_replies,
                "recent": lags,
                "lag_max_ticks": ticks,
            },
        )

    try:
        await until_stopped(0.2, each)
    finally:
        await receiver.stop()


# --- the gateway under test -----------------------------------------------------------


def site_config(tmp: Path, ports: list[int], profile: ModbusProfile, poll_s: float) -> SiteConfig:
    buses = [Bus(id=f"b{n}", transport=Transport.TCP, port=p) for n, p in enumerate(ports)]
    assets = [Asset(id="gateway", kind=AssetKind.GATEWAY)] + [
        Asset(
            id=f"dev_{n:04d}",
            kind=AssetKind.PUMP,
            profile=profile.profile,
            modbus=ModbusAddress(bus=f"b{n}", unit_id=1),
        )
        for n in range(len(ports))
    ]
    site = Site(
        id="bench",
        kind="water_supply",
        gateway=GatewaySettings(poll_s=poll_s, health_every_s=2.0),
        stations=[Station(id="many", buses=buses, assets=assets)],
    )
    return SiteConfig(root=tmp, sites=[site], profiles={profile.profile: profile})


@dataclass
class Row:
    devices: int
    registers: int
    poll_ms: float
    float32: bool
    seconds: float
    expected_s: float
    acquired_s: float
    stored_s: float
    cpu_pct: float
    requests_s: float
    lag_p50_ms: float
    lag_max_ms: float
    us_per_request: float
    us_per_reading: float
    overruns_s: float
    failed_s: float  # polls that failed (timeouts on a starved machine, mostly)
    simulator_cpu_pct: float
    outbox_end: int
    rss_mb: float
    rss_start_mb: float  # after the warm-up: flat means the two are close

    def line(self) -> str:
        name = f"{self.devices} × {self.registers}, {self.poll_ms:g} ms" + (
            ", float32" if self.float32 else ""
        )
        return (
            f"| {name} | {self.expected_s:,.0f} | {self.stored_s:,.0f} | {self.cpu_pct:.1f} % "
            f"| {self.requests_s:,.0f} | {self.lag_p50_ms:,.0f} / {self.lag_max_ms:,.0f} ms "
            f"| {self.us_per_request:.0f} "
            f"| {self.us_per_reading:.1f} | {self.overruns_s:,.0f} | {self.failed_s:,.0f} "
            f"| {self.simulator_cpu_pct:.0f} % | {self.outbox_end:,} "
            f"| {self.rss_start_mb:.0f} → {self.rss_mb:.0f} |"
        )


HEADER = (
    "| devices × registers, poll | expected/s | stored/s | gateway CPU | Modbus req/s "
    "| live lag p50 / max | CPU µs/request | CPU µs/reading | overruns/s | failed polls/s "
    "| simulator CPU | outbox at end | RSS MB (window start → end) |\n" + "|---" * 13 + "|"
)


def enough_files() -> None:
    """A socket a device on each side: 1,000 devices pass the usual soft limit of 1,024."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def helper(name: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), f"_{name}", *args]


def pin(pid: int, core: int) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, {core})


def taskset(args: list[str]) -> list[str]:
    return ["taskset", "-c", str(OTHERS_CORE), *args] if shutil.which("taskset") else args


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


async def measure(
    tmp: Path, devices: int, registers: int, poll_ms: float, float32: bool, args: argparse.Namespace
) -> Row:
    work = Path(tempfile.mkdtemp(prefix=f"many-{devices}-", dir=tmp))
    broker = start_broker(work / "mqtt")
    assert broker.proc is not None
    pin(broker.proc.pid, OTHERS_CORE)
    children: list[Child] = []
    gateway: Gateway | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        sim_args = ["--ports", str(devices), "--registers", str(registers)]
        sim = Child(
            "simulator",
            taskset(helper("simulator", *sim_args, *(["--float32"] if float32 else []))),
            work,
        )
        children.append(sim)
        receiver = Child("receiver", taskset(helper("receiver", "--port", str(broker.port))), work)
        children.append(receiver)
        ports = [int(p) for p in sim.wait_for("ports", 60)["ports"]]
        receiver.wait_for("ready")
        profile = device_profile(registers, float32)
        config = site_config(work, ports, profile, poll_ms / 1000)
        gateway = Gateway(
            config, "bench", "many", work / "data", uplink_address=("127.0.0.1", broker.port)
        )
        gateway.start()
        await asyncio.sleep(args.warmup)

        def snap() -> dict[str, float]:
            workers = [b.worker for b in (gateway.buses.values() if gateway else [])]
            return {
                "t": time.perf_counter(),
                "cpu": time.process_time(),
                "requests": sum(w.requests for w in workers),
                "acquired": gateway.counters.readings_in if gateway else 0,
                "stored": float(receiver.status().get("values", 0)),
                "overruns": sum(d.overruns for w in workers for d in w.devices),
                "failed": sum(d.status.failures for w in workers for d in w.devices),
                "sim_cpu": sim.cpu_s(),
                "rss": rss_mb(),
            }

        if args.py_spy:
            spy = subprocess.Popen(
                taskset(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--nonblocking",
                        "-f",
                        "raw",
                        "-o",
                        args.py_spy,
                        "-d",
                        str(int(args.seconds)),
                        "-p",
                        str(os.getpid()),
                    ]
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        first = snap()
        window_start_ms = now_ms()
        lags: list[float] = []
        end = time.perf_counter() + args.seconds
        while time.perf_counter() < end:
            await asyncio.sleep(1.0)
            lag = receiver.status().get("lag_p50_recent_ms")
            if lag is not None:
                lags.append(float(lag))
        last = snap()
        ticks = receiver.status().get("lag_max_ticks", [])
        worst = [lag for at, lag in ticks if at >= window_start_ms]
        wall = last["t"] - first["t"]
        cpu = last["cpu"] - first["cpu"]
        requests = last["requests"] - first["requests"]
        acquired = last["acquired"] - first["acquired"]
        return Row(
            devices=devices,
            registers=registers,
            poll_ms=poll_ms,
            float32=float32,
            seconds=wall,
            expected_s=devices * registers * 1000 / poll_ms,
            acquired_s=acquired / wall,
            stored_s=(last["stored"] - first["stored"]) / wall,
            cpu_pct=100 * cpu / wall,
            requests_s=requests / wall,
            lag_p50_ms=statistics.median(lags) if lags else float("nan"),
            lag_max_ms=max(worst) if worst else float("nan"),
            us_per_request=cpu / max(1, requests) * 1e6,
            us_per_reading=cpu / max(1, acquired) * 1e6,
            overruns_s=(last["overruns"] - first["overruns"]) / wall,
            failed_s=(last["failed"] - first["failed"]) / wall,
            simulator_cpu_pct=100 * (last["sim_cpu"] - first["sim_cpu"]) / wall,
            outbox_end=gateway.outbox.stats().readings,
            rss_mb=rss_mb(),
            rss_start_mb=first["rss"],
        )
    finally:
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
        if gateway is not None:
            with contextlib.suppress(Exception):
                await gateway.stop(grace_s=2.0)
        for child in children:
            child.stop()
        stop_broker(broker)


@dataclass
class OutageResult:
    devices: int
    outage_s: float
    backlog: int  # readings in the outbox when the ingest came back
    drained_s: float  # until the outbox held under a second of acquisition
    lag_p50_ms: float
    lag_max_ms: float
    overruns: int
    batches_not_stored: int  # released at the ingest's "not stored"
    batches_expired: int  # released when ack_timeout_s ran out


async def measure_outage(tmp: Path, devices: int, args: argparse.Namespace) -> OutageResult:
    """The ingest's InfluxDB is down for `outage_s` (the ingest answers "not stored", or
    nothing with --silent-outage), then comes back: how long until the backlog has left
    the outbox, and how late live data is meanwhile."""
    work = Path(tempfile.mkdtemp(prefix=f"outage-{devices}-", dir=tmp))
    broker = start_broker(work / "mqtt")
    assert broker.proc is not None
    pin(broker.proc.pid, OTHERS_CORE)
    children: list[Child] = []
    gateway: Gateway | None = None
    try:
        sim_args = ["--ports", str(devices), "--registers", str(args.registers)]
        sim = Child("simulator", taskset(helper("simulator", *sim_args)), work)
        children.append(sim)
        silent = ["--silent-outage"] if args.silent_outage else []
        receiver_args = helper("receiver", "--port", str(broker.port), *silent)
        receiver = Child("receiver", taskset(receiver_args), work)
        children.append(receiver)
        ports = [int(p) for p in sim.wait_for("ports", 60)["ports"]]
        receiver.wait_for("ready")
        profile = device_profile(args.registers, False)
        config = site_config(work, ports, profile, args.poll_ms / 1000)
        gateway = Gateway(
            config, "bench", "many", work / "data", uplink_address=("127.0.0.1", broker.port)
        )
        gateway.start()
        await asyncio.sleep(args.warmup)
        receiver.proc.send_signal(signal.SIGUSR1)  # InfluxDB down: nothing stored
        await asyncio.sleep(args.outage)
        backlog = gateway.outbox.stats().readings
        receiver.proc.send_signal(signal.SIGUSR1)
        back = time.perf_counter()
        back_ms = now_ms()
        overruns_before = sum(d.overruns for b in gateway.buses.values() for d in b.worker.devices)
        lags: list[float] = []
        lag_max: list[float] = []
        per_s = devices * args.registers * 1000 / args.poll_ms
        drained = float("nan")
        while time.perf_counter() - back < args.drain_limit:
            await asyncio.sleep(0.5)
            # Live data is what was acquired after the return; the last live_window_s of
            # the outage also takes the live lane, late by the outage itself.
            fresh = [lag for ts, lag in receiver.status().get("recent", []) if ts >= back_ms]
            if fresh:
                lags.append(statistics.median(fresh))
                lag_max.append(max(fresh))
            if gateway.outbox.stats().readings < per_s:
                drained = time.perf_counter() - back
                break
        overruns = sum(d.overruns for b in gateway.buses.values() for d in b.worker.devices)
        return OutageResult(
            devices=devices,
            outage_s=args.outage,
            backlog=backlog,
            drained_s=drained,
            lag_p50_ms=statistics.median(lags) if lags else float("nan"),
            lag_max_ms=max(lag_max) if lag_max else float("nan"),
            overruns=overruns - overruns_before,
            batches_not_stored=gateway.uplink.stats.batches_not_stored,
            batches_expired=gateway.uplink.stats.batches_expired,
        )
    finally:
        if gateway is not None:
            with contextlib.suppress(Exception):
                await gateway.stop(grace_s=2.0)
        for child in children:
            child.stop()
        stop_broker(broker)


# --- Modbus client libraries compared (issue 16) ---------------------------------------


ClientRead = Callable[[int, int], Awaitable[Sequence[int]]]  # address, count -> registers


class RefusedRead(Exception):
    """A Modbus exception response, as whichever library reported it."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exception {code}")
        self.code = code


async def pymodbus_reader(port: int, rtu: bool, timeout_s: float) -> tuple[ClientRead, Any]:
    transport = Transport.RTU_OVER_TCP if rtu else Transport.TCP
    client = make_pymodbus_client(Bus(id="c", transport=transport, port=port, timeout_s=timeout_s))
    assert await client.connect()
    return holding_reader(client), client.close


async def stream_reader(port: int, rtu: bool, timeout_s: float) -> tuple[ClientRead, Any]:
    client = StreamModbusClient("127.0.0.1", port, rtu=rtu, timeout=timeout_s)
    assert await client.connect()
    return holding_reader(client), client.close


def holding_reader(client: Any) -> ClientRead:
    """Reads of unit 1's holding registers through a client with pymodbus's API."""

    async def read(address: int, count: int) -> Sequence[int]:
        response = await client.read_holding_registers(address, count=count, device_id=1)
        if response.isError():
            raise RefusedRead(response.exception_code)
        return list(response.registers)

    return read


async def async_modbus_reader(port: int, rtu: bool, timeout_s: float) -> tuple[ClientRead, Any]:
    """async-modbus (umodbus over asyncio streams): no timeout of its own, so the
    poller's asyncio.timeout is part of what a request costs."""
    import async_modbus  # type: ignore[import-not-found,import-untyped,unused-ignore]  # GPL-3.0, only measured here
    from umodbus.exceptions import ModbusError  # type: ignore[import-not-found,import-untyped,unused-ignore]

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    kind = async_modbus.AsyncRTUClient if rtu else async_modbus.AsyncTCPClient
    client = kind((reader, writer))

    async def read(address: int, count: int) -> Sequence[int]:
        try:
            async with asyncio.timeout(timeout_s):
                return list(await client.read_holding_registers(1, address, count))
        except ModbusError as exc:
            raise RefusedRead(int(exc.error_code)) from exc

    return read, writer.close


CLIENTS: dict[str, Callable[[int, bool, float], Awaitable[tuple[ClientRead, Any]]]] = {
    "pymodbus client (AsyncModbusTcpClient)": pymodbus_reader,
    "pymodbus framer/PDU over asyncio (gateway/modbus/client.py)": stream_reader,
    "async-modbus 0.2.3 (umodbus over asyncio streams)": async_modbus_reader,
}


@dataclass
class ClientResult:
    client: str
    framing: str
    requests_s: float
    us_per_request: float
    exception_2: str

    def line(self) -> str:
        return (
            f"| {self.client} | {self.framing} | {self.requests_s:,.0f} "
            f"| {self.us_per_request:.0f} | {self.exception_2} |"
        )


async def measure_client(
    name: str, ports: list[int], rtu: bool, registers: int, seconds: float
) -> ClientResult:
    """One connection a device, each reading its registers back to back (the server on the
    other core is the pace); CPU is this process's, so the client's own cost shows."""
    framing = "RTU over TCP" if rtu else "Modbus TCP"
    try:
        opened = [await CLIENTS[name](port, rtu, 2.0) for port in ports]
    except ImportError as exc:
        return ClientResult(name, framing, float("nan"), float("nan"), f"not installed ({exc})")
    first_read = opened[0][0]
    try:
        await first_read(60000, 10)
        refused = "no exception raised"
    except RefusedRead as exc:
        refused = f"yes (code {exc.code})" if exc.code == 2 else f"code {exc.code}"
    except Exception as exc:  # what the library does is the finding
        refused = f"no: {type(exc).__name__}"
    for read, _ in opened:  # the same values as pymodbus's client reads
        assert len(await read(0, registers)) == registers
    count = 0
    stop = time.perf_counter() + seconds

    async def loop(read: ClientRead) -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await read(0, registers)
            count += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop(read) for read, _ in opened))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    for _, close in opened:
        close()
    return ClientResult(name, framing, count / wall, cpu / max(1, count) * 1e6, refused)


async def compare_clients(tmp: Path, args: argparse.Namespace) -> list[ClientResult]:
    results = []
    for rtu in (False, True):
        work = Path(tempfile.mkdtemp(prefix="clients-", dir=tmp))
        sim_args = ["--ports", str(args.client_ports), "--registers", str(args.registers)]
        sim = Child(
            "simulator", taskset(helper("simulator", *sim_args, *(["--rtu"] if rtu else []))), work
        )
        try:
            ports = [int(p) for p in sim.wait_for("ports", 60)["ports"]]
            for name in CLIENTS:
                result = await measure_client(name, ports, rtu, args.registers, args.seconds)
                print(result.line(), flush=True)
                results.append(result)
        finally:
            sim.stop()
    return results


CLIENT_HEADER = (
    "| client | framing | requests/s | CPU µs/request | exception 2 reported |\n"
    "|---|---|---|---|---|"
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="100,200,500")
    parser.add_argument("--registers", type=int, default=30)
    parser.add_argument("--poll-ms", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--py-spy", default="", help="record a py-spy profile to this file")
    parser.add_argument(
        "--outage", type=float, default=0.0, help="instead: an ingest outage of this many s"
    )
    parser.add_argument("--drain-limit", type=float, default=120.0)
    parser.add_argument(
        "--silent-outage",
        action="store_true",
        help="during the outage the ingest answers nothing (not 'not stored')",
    )
    parser.add_argument(
        "--clients", action="store_true", help="instead: compare Modbus client libraries"
    )
    parser.add_argument("--client-ports", type=int, default=20)
    args = parser.parse_args(argv)
    enough_files()
    logging.basicConfig(level=logging.ERROR)  # one line per device would drown the table
    pin(0, GATEWAY_CORE)
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    print(f"command: {' '.join([Path(sys.argv[0]).name, *argv])}")
    if args.clients:
        with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp:
            results = asyncio.run(compare_clients(Path(tmp), args))
        print(CLIENT_HEADER)
        for result in results:
            print(result.line())
        return
    if args.outage:
        with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp:
            for n in (int(x) for x in args.devices.split(",")):
                print(asyncio.run(measure_outage(Path(tmp), n, args)), flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp:
        for n in (int(x) for x in args.devices.split(",")):
            row = asyncio.run(
                measure(Path(tmp), n, args.registers, args.poll_ms, args.float32, args)
            )
            rows.append(row)
            print(row.line(), flush=True)
    print(HEADER)
    for row in rows:
        print(row.line())


def child_main(argv: list[str]) -> None:
    enough_files()
    name, rest = argv[0], argv[1:]
    parser = argparse.ArgumentParser()
    parser.add_argument("--status", type=Path, required=True)
    if name == "_simulator":
        parser.add_argument("--ports", type=int, required=True)
        parser.add_argument("--registers", type=int, required=True)
        parser.add_argument("--float32", action="store_true")
        parser.add_argument("--rtu", action="store_true")
        a = parser.parse_args(rest)
        asyncio.run(serve_ports(a.ports, a.registers, a.float32, a.status, a.rtu))
    elif name == "_receiver":
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--silent-outage", action="store_true")
        a = parser.parse_args(rest)
        asyncio.run(receive_counting(a.port, a.status, a.silent_outage))
    else:
        raise SystemExit(f"unknown helper {name}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child_main(sys.argv[1:])
    else:
        main(sys.argv[1:])
