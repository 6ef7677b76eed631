"""How fast the site gateway moves readings, what it costs, and how it catches up.

Every figure is measured with real components: a private Mosquitto on a free port in a
temporary folder, the SQLite outbox on disk, real Modbus TCP where acquisition is
involved, and the ingest Receiver acking each batch from its own process.

1. Pipeline throughput. (a) Modbus acquisition -> accept -> outbox -> uplink -> broker ->
   receiver ack, with the real Gateway (BusWorkers polling as fast as they can) and 20
   simulated devices of 120 uint16 input registers (one 120-register read a poll) served
   by a pymodbus server in another process, polled over 1 and over 4 bus connections;
   readings acquired/s and acked/s, and the gateway process's CPU per million readings.
   (b) The same stages without Modbus, in process and at full speed: the pipeline's
   ceiling on one core, stage by stage.
2. Modbus requests of one poll of the demo site: planned vs the exhaustive minimum.
3. RSS of `facility gateway run` for the demo's largest stations, polling
   `facility simulate` and delivering to an acking receiver, and of the simulator.
4. Backlog drain: 24 h of a 300-signal station (5.2M readings) leaves the outbox while
   live readings keep arriving; drain time and live delay (acquired -> at the ingest),
   with the backfill capped at 100k readings/s and then uncapped.

    .venv/bin/python bench/bench_gateway.py [--only 1,4] [--seconds 10] [--buses 1,4]

About 2.5 minutes in all; each section cleans up its processes, even when it fails.

The machine has few cores: the Modbus server, Mosquitto and the receiver share them with
the gateway, so section 1a also prints what each of them used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facility.codec import DataType
from facility.config import SiteConfig, load_site_config
from facility.profile import ModbusProfile, ModbusSignal, Table
from facility.registers import RegisterImage
from facility.site import (
    Asset,
    AssetKind,
    Bus,
    GatewaySettings,
    ModbusAddress,
    Site,
    Station,
    Transport,
)
from facility.site import Uplink as UplinkTarget
from facility.wire import BadRow, Batch, Reading, decode_batch, encode_rows
from gateway.daemon import Gateway
from gateway.modbus.planner import minimum_requests, plan_reads
from gateway.modbus.poller import _reading
from gateway.normalise import ReportByException
from gateway.outbox import Outbox, OutboxConfig
from gateway.uplink.mqtt import Uplink
from ingest.receiver import Receiver
from simulators.modbus_server import BusServer
from wiring.services import Mosquitto

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "deploy" / "sites" / "demo"
FACILITY = Path(sys.executable).parent / "facility"
CLK_TCK = os.sysconf("SC_CLK_TCK")

THINGSBOARD_READINGS_S = 12_000  # ThingsBoard's Python gateway, 120-register block reads
TARGET_READINGS_S = 120_000
TARGET_RSS_MB = 60.0
TARGET_DRAIN_S = 120.0
TARGET_LIVE_S = 2.0

BLOCK_SIGNALS = 120
PIPELINE_UNITS = 20
LIVE_PREFIX = "live_"  # assets of the live feeder in section 4: the receiver times them

BACKLOG_SIGNALS = 300
BACKLOG_DEVICES = 10  # 30 signals a device: one chunk a device poll
BACKLOG_POLL_S = 5.0  # the demo's poll interval
BACKLOG_HOURS = 24
DRAIN_BACKFILL_PER_S = 100_000.0
UNCAPPED_PER_S = 1e9  # the second drain: as fast as the uplink and the receiver go
DRAIN_TIMEOUT_S = 150.0

RSS_SECONDS = 20.0


# --- machine and processes ---------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{platform.node()} {model}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, sqlite {sqlite3.sqlite_version}, {mosquitto_version()}"
    )


def mosquitto_version() -> str:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    try:
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "mosquitto ?"
    return out.splitlines()[0] if out else "mosquitto ?"


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem_mb(pid: int, key: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def start_broker(workdir: Path) -> Mosquitto:
    """A private Mosquitto: free port, own folder, own log."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(workdir)
    broker.start()
    return broker


def stop_broker(broker: Mosquitto | None) -> None:
    if broker is None:
        return
    try:
        broker.stop()
    except subprocess.TimeoutExpired:
        broker.kill()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class Child:
    """A helper process with its log file and, for our own helpers, a JSON status file."""

    def __init__(self, name: str, args: list[str], workdir: Path, status: bool = True) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.status_path: Path | None = workdir / f"{name}.json" if status else None
        if self.status_path is not None:
            args = [*args, "--status", str(self.status_path)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def status(self) -> dict[str, Any]:
        if self.status_path is None:
            return {}
        try:
            body = json.loads(self.status_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return body if isinstance(body, dict) else {}

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(self, key: str, timeout_s: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status()
            if key in status:
                return status
            if not self.alive():
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not report {key!r}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> dict[str, Any]:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.status()


def helper(name: str, *args: str) -> list[str]:
    """Command line of one of this script's own helper processes."""
    return [sys.executable, str(Path(__file__).resolve()), f"_{name}", *args]


def write_status(path: Path, body: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


async def until_stopped(tick_s: float, each: Callable[[], None]) -> None:
    """Call `each` every tick until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        each()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(tick_s):
                await stop.wait()


# --- helper process: a pymodbus server of N block devices --------------------------------


def block_profile(signals: int = BLOCK_SIGNALS) -> ModbusProfile:
    """A device of `signals` consecutive uint16 input registers: one block read a poll."""
    return ModbusProfile(
        profile=f"bench_block_{signals}",
        protocol="modbus",
        signals=[
            ModbusSignal(name=f"r{i:03d}", table=Table.INPUT, address=i, type=DataType.UINT16)
            for i in range(signals)
        ],
    )


async def serve_modbus(units: int, status: Path) -> None:
    profile = block_profile()
    rnd = random.Random(1)
    images = {unit: RegisterImage(profile) for unit in range(1, units + 1)}
    for image in images.values():
        image.write_values({s.name: rnd.randrange(65536) for s in profile.signals})
    server = BusServer(Bus(id="bench", transport=Transport.TCP, port=0), images)
    await server.start()
    for unit in images:
        await server.push(unit)

    def each() -> None:
        write_status(status, {"port": server.port, "requests": server.requests})

    async def move() -> None:  # the values change every second, as a plant's do
        while True:
            await asyncio.sleep(1.0)
            for unit, image in images.items():
                image.write_values({s.name: rnd.randrange(65536) for s in profile.signals})
                await server.push(unit, (Table.INPUT,))

    mover = asyncio.create_task(move())
    try:
        await until_stopped(0.5, each)
    finally:
        mover.cancel()
        each()
        await server.stop()


# --- helper process: the ingest receiver, acking every batch -----------------------------


async def receive(port: int, status: Path) -> None:
    delays: list[int] = []

    async def store(batch: Batch, rejected: list[BadRow]) -> None:
        now = time.time_ns() // 1_000_000
        delays.extend(now - r.ts_ms for r in batch.readings if r.asset.startswith(LIVE_PREFIX))

    receiver = Receiver("127.0.0.1", port, store, client_id=f"bench-ingest-{os.getpid()}")
    await receiver.start()

    def body() -> dict[str, Any]:
        return {
            "ready": True,
            "readings": receiver.readings,
            "batches": receiver.batches,
            "live": len(delays),
            "per_station": {f"{a}/{b}": n for (a, b), n in receiver.per_station.items()},
            "malformed": sum(receiver.malformed.values()),
        }

    try:
        await until_stopped(0.1, lambda: write_status(status, body()))
    finally:
        await receiver.stop()
        write_status(status, {**body(), "delays_ms": delays, "final": True})


# --- 1a. the real pipeline, with Modbus acquisition --------------------------------------


def pipeline_config(tmp: Path, modbus_port: int, units: int, buses: int) -> SiteConfig:
    profile = block_profile()
    bus_list = [Bus(id=f"bus{b}", transport=Transport.TCP, port=modbus_port) for b in range(buses)]
    assets = [Asset(id="gateway", kind=AssetKind.GATEWAY)] + [
        Asset(
            id=f"dev_{unit:02d}",
            kind=AssetKind.PUMP,
            profile=profile.profile,
            modbus=ModbusAddress(bus=f"bus{(unit - 1) % buses}", unit_id=unit),
        )
        for unit in range(1, units + 1)
    ]
    site = Site(
        id="bench",
        kind="water_supply",
        gateway=GatewaySettings(poll_s=1e-6),  # as fast as the bus answers
        stations=[Station(id="pipeline", buses=bus_list, assets=assets)],
    )
    return SiteConfig(root=tmp, sites=[site], profiles={profile.profile: profile})


@dataclass
class Snap:
    t: float
    cpu: float
    value_readings: int
    readings_in: int
    acked: int
    polls: int
    requests: int
    others: dict[str, float]

    @classmethod
    def take(cls, gateway: Gateway, others: dict[str, Callable[[], float]]) -> Snap:
        devices = [d for b in gateway.buses.values() for d in b.worker.devices]
        good = sum(d.status.polls - d.status.failures for d in devices)
        return cls(
            time.perf_counter(),
            time.process_time(),
            good * BLOCK_SIGNALS,
            gateway.counters.readings_in,
            gateway.uplink.stats.readings_acked,
            sum(d.status.polls for d in devices),
            sum(b.worker.requests for b in gateway.buses.values()),
            {name: cpu() for name, cpu in others.items()},
        )


@dataclass
class PipelineResult:
    buses: int
    units: int
    seconds: float
    acquired_s: float
    in_s: float
    acked_s: float
    polls_s: float
    requests_per_poll: float
    cpu_share: float
    cpu_s_per_m: float
    backlog: int
    others: dict[str, float] = field(default_factory=dict)  # share of a core

    @property
    def core_capacity_s(self) -> float:
        return 1e6 / self.cpu_s_per_m if self.cpu_s_per_m else float("nan")


async def pipeline_modbus(tmp: Path, buses: int, seconds: float) -> PipelineResult:
    work = Path(tempfile.mkdtemp(prefix=f"pipeline-{buses}-", dir=tmp))
    broker = start_broker(work / "mqtt")
    children: list[Child] = []
    gateway: Gateway | None = None
    try:
        server = Child("modbus", helper("modbus-server", "--units", str(PIPELINE_UNITS)), work)
        children.append(server)
        receiver = Child("receiver", helper("receiver", "--port", str(broker.port)), work)
        children.append(receiver)
        port = int(server.wait_for("port")["port"])
        receiver.wait_for("ready")
        config = pipeline_config(work, port, PIPELINE_UNITS, buses)
        gateway = Gateway(
            config, "bench", "pipeline", work / "data", uplink_address=("127.0.0.1", broker.port)
        )
        gateway.start()
        assert broker.proc is not None
        mqtt_pid = broker.proc.pid
        others = {
            "Modbus server": server.cpu_s,
            "receiver": receiver.cpu_s,
            "Mosquitto": lambda: proc_cpu_s(mqtt_pid),
        }
        await asyncio.sleep(2.0)  # connect, fill the pipe
        first = Snap.take(gateway, others)
        await asyncio.sleep(seconds)
        last = Snap.take(gateway, others)
        wall = last.t - first.t
        value_readings = last.value_readings - first.value_readings
        readings_in = last.readings_in - first.readings_in
        cpu = last.cpu - first.cpu
        polls = last.polls - first.polls
        return PipelineResult(
            buses=buses,
            units=PIPELINE_UNITS,
            seconds=wall,
            acquired_s=value_readings / wall,
            in_s=readings_in / wall,
            acked_s=(last.acked - first.acked) / wall,
            polls_s=polls / wall,
            requests_per_poll=(last.requests - first.requests) / max(1, polls),
            cpu_share=cpu / wall,
            cpu_s_per_m=cpu / max(1, readings_in) * 1e6,
            backlog=gateway.outbox.stats().readings,
            others={k: (last.others[k] - first.others[k]) / wall for k in others},
        )
    finally:
        if gateway is not None:
            with contextlib.suppress(Exception):
                await gateway.stop(grace_s=2.0)
        for child in children:
            child.stop()
        stop_broker(broker)


# --- 1b. the stages without Modbus, in process -------------------------------------------


@dataclass
class StagesResult:
    readings_s: float
    us_per_reading: dict[str, float]
    rbe_on_us: float
    ingest_decode_us: float


def stages_ceiling(tmp: Path, seconds: float = 4.0) -> StagesResult:
    """decode -> Reading -> normalise -> outbox.put -> take -> encode_rows -> ack, one core."""
    profile = block_profile()
    settings = GatewaySettings()
    plan = plan_reads(profile, max_gap=8)
    assert len(plan) == 1
    request = plan.requests[0]
    rnd = random.Random(2)
    responses = [[rnd.randrange(65536) for _ in range(BLOCK_SIGNALS)] for _ in range(64)]
    rbe = ReportByException(settings.report_by_exception, int(settings.max_silence_s * 1000))
    config = OutboxConfig(sync=settings.outbox_sync, live_window_s=settings.live_window_s)
    header: dict[str, Any] = {
        "site": "bench",
        "station": "stages",
        "boot": 1,
        "seq": 0,
        "lane": "live",
        "sent_ms": 0,
    }
    spent = dict.fromkeys(
        ("Modbus decode", "Reading", "normalise", "outbox.put", "take", "encode_rows", "ack"),
        0.0,
    )
    clock = time.perf_counter
    count = pending = 0
    payload = b""
    with Outbox(tmp / "stages.outbox.sqlite", config) as outbox:
        t_start = clock()
        i = 0
        while clock() - t_start < seconds:
            i += 1
            asset = f"dev_{i % PIPELINE_UNITS:02d}"
            t0 = clock()
            ts = time.time_ns() // 1_000_000
            decoded = request.decode(profile, responses[i % len(responses)])
            t1 = clock()
            readings = [_reading(asset, s.name, ts, v) for s, v in decoded]
            t2 = clock()
            kept = rbe.filter(readings)
            t3 = clock()
            outbox.put(kept)
            t4 = clock()
            spent["Modbus decode"] += t1 - t0
            spent["Reading"] += t2 - t1
            spent["normalise"] += t3 - t2
            spent["outbox.put"] += t4 - t3
            count += len(kept)
            pending += len(kept)
            if pending >= settings.batch_max_readings:
                t0 = clock()
                lease = outbox.take("live", settings.batch_max_readings, ts)
                assert lease is not None
                t1 = clock()
                header["seq"] += 1
                header["sent_ms"] = ts
                payload = encode_rows(header, lease.rows_json)
                t2 = clock()
                outbox.ack(lease.lease_id)
                t3 = clock()
                spent["take"] += t1 - t0
                spent["encode_rows"] += t2 - t1
                spent["ack"] += t3 - t2
                pending -= lease.count
        wall = clock() - t_start
    per_reading = {k: v / count * 1e6 for k, v in spent.items()}
    per_reading["loop, timers"] = wall / count * 1e6 - sum(per_reading.values())

    # normalise with report by exception on and every value moving: the worst case
    rbe_on = ReportByException(True, 300_000)
    polls = [
        [Reading(f"dev_{n % 20}", f"r{k:03d}", n, n + k) for k in range(BLOCK_SIGNALS)]
        for n in range(2000)
    ]
    t0 = clock()
    for poll in polls:
        rbe_on.filter(poll)
    rbe_on_us = (clock() - t0) / (len(polls) * BLOCK_SIGNALS) * 1e6

    # what the ingest pays to read a batch (its own process, not the gateway's core)
    rounds = 20
    t0 = clock()
    for _ in range(rounds):
        batch, _rejected = decode_batch(payload)
    decode_us = (clock() - t0) / (rounds * len(batch.readings)) * 1e6
    return StagesResult(count / wall, per_reading, rbe_on_us, decode_us)


# --- 2. requests per poll of the demo site -----------------------------------------------


@dataclass
class PlannerResult:
    devices: int
    planned: int
    minimum: int
    naive: int


def planner_summary() -> PlannerResult:
    config = load_site_config(DEMO)
    devices = planned = best = naive = 0
    for ref in config.assets():
        if ref.asset.modbus is None or ref.asset.profile is None:
            continue
        profile = config.profile_of(ref)
        assert isinstance(profile, ModbusProfile)
        max_gap = ref.station.bus(ref.asset.modbus.bus).max_gap
        devices += 1
        planned += len(plan_reads(profile, max_gap=max_gap))
        best += sum(
            minimum_requests(profile, profile.signals, table, max_gap=max_gap) for table in Table
        )
        naive += len(profile.signals)
    return PlannerResult(devices, planned, best, naive)


# --- 3. RSS of a real gateway process ----------------------------------------------------


@dataclass
class RssResult:
    site_note: str
    gateways: dict[str, tuple[int, int, float, float]]  # devices, signals, RSS, peak RSS
    readings_s: dict[str, float]
    sim_rss: float
    sim_peak: float
    errors: list[str] = field(default_factory=list)


def largest_stations(config: SiteConfig) -> dict[str, tuple[int, int]]:
    """The station with the most devices and the one with the most signals."""
    sizes: dict[str, tuple[int, int]] = {}
    for site in config.sites:
        for station in site.stations:
            profiles = [config.profiles[a.profile] for a in station.assets if a.profile]
            sizes[f"{site.id}/{station.id}"] = (
                len(profiles),
                sum(len(p.signals) for p in profiles),
            )
    by_devices = max(sizes, key=lambda k: sizes[k])
    by_signals = max(sizes, key=lambda k: (sizes[k][1], sizes[k][0]))
    return {name: sizes[name] for name in dict.fromkeys((by_devices, by_signals))}


def simulated_site(tmp: Path) -> tuple[Path, str]:
    """The demo folder if its Modbus ports are free, else a copy on free ports."""
    config = load_site_config(DEMO)
    ports = sorted(
        {
            b.port
            for site in config.sites
            for station in site.stations
            for b in station.buses
            if b.transport is not Transport.RTU
        }
    )
    busy = [p for p in ports if not port_free(p)]
    if not busy:
        return DEMO, f"deploy/sites/demo on its own ports {ports[0]}..{ports[-1]}"
    mapping = {p: free_port() for p in ports}
    copy = tmp / "demo-site"
    copy.mkdir()
    for file in DEMO.glob("*.yaml"):
        text = re.sub(
            r"\bport: (\d+)",
            lambda m: f"port: {mapping.get(int(m[1]), int(m[1]))}",
            file.read_text(encoding="utf-8"),
        )
        (copy / file.name).write_text(text, encoding="utf-8")
    if (DEMO / "profiles").is_dir():
        shutil.copytree(DEMO / "profiles", copy / "profiles")
    return copy, f"a copy of deploy/sites/demo on free ports (busy: {busy})"


def import_rss_mb(module: str) -> float:
    """RSS of a fresh interpreter that only imported `module` ("" for none)."""
    code = (
        f"import {module}\n" if module else ""
    ) + "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
        ).stdout
        return int(out.split()[0]) / 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return float("nan")


def gateway_rss(tmp: Path, seconds: float = RSS_SECONDS) -> RssResult:
    work = tmp / "rss"
    work.mkdir()
    site_dir, note = simulated_site(work)
    config = load_site_config(site_dir)
    stations = largest_stations(config)
    broker = start_broker(work / "mqtt")
    children: list[Child] = []
    errors: list[str] = []
    try:
        address = f"127.0.0.1:{broker.port}"
        receiver = Child("receiver", helper("receiver", "--port", str(broker.port)), work)
        children.append(receiver)
        sim_args = [str(FACILITY), "simulate", str(site_dir), "--speed", "60", "--plain"]
        sim = Child("simulate", [*sim_args, "--broker", address], work, status=False)
        children.append(sim)
        receiver.wait_for("ready")
        for name in stations:
            site_id, _, station_id = name.partition("/")
            for bus in config.site(site_id).station(station_id).buses:
                if not wait_for_port(bus.port, 30.0):
                    raise RuntimeError(f"simulator not listening on {bus.port}:\n{sim.log_tail()}")
        gateways: dict[str, Child] = {}
        for name in stations:
            args = [str(FACILITY), "gateway", "run", "--site", str(site_dir), "--gateway", name]
            args += ["--data-dir", str(work / name.replace("/", "-"))]
            args += ["--uplink", address, "--devices-broker", address, "--log-level", "warning"]
            gateways[name] = Child(f"gateway-{name.replace('/', '-')}", args, work, status=False)
            children.append(gateways[name])
        deadline = time.monotonic() + seconds
        mid: dict[str, Any] = {}
        t_mid = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if not mid and time.monotonic() > deadline - seconds / 2:
                mid, t_mid = receiver.status(), time.monotonic()
            for name, child in gateways.items():
                if not child.alive():
                    errors.append(f"gateway {name} exited:\n{child.log_tail()}")
            if not sim.alive():
                errors.append(f"simulator exited:\n{sim.log_tail()}")
            if errors:
                break
        end, t_end = receiver.status(), time.monotonic()
        rates = {
            name: (
                end.get("per_station", {}).get(name, 0) - mid.get("per_station", {}).get(name, 0)
            )
            / max(1e-9, t_end - t_mid)
            for name in stations
        }
        figures = {
            name: (
                *stations[name],
                proc_mem_mb(child.pid, "VmRSS"),
                proc_mem_mb(child.pid, "VmHWM"),
            )
            for name, child in gateways.items()
        }
        for name, child in gateways.items():
            problems = [
                line
                for line in child.log_tail(200).splitlines()
                if "ERROR" in line or "Traceback" in line
            ]
            if problems:
                errors.append(f"gateway {name} logged: {problems[:3]}")
        return RssResult(
            note,
            figures,
            rates,
            proc_mem_mb(sim.pid, "VmRSS"),
            proc_mem_mb(sim.pid, "VmHWM"),
            errors,
        )
    finally:
        for child in reversed(children):
            child.stop()
        stop_broker(broker)


# --- 4. backlog drain with live data ------------------------------------------------------


@dataclass
class DrainResult:
    backfill_per_s: float
    drained: bool
    drain_s: float
    remaining: int
    cpu_share: float
    receiver_share: float
    broker_share: float
    live_put: int
    live_received: int
    live_p50_ms: float
    live_p99_ms: float
    live_max_ms: float
    uplink_max_live_ms: int
    expired_batches: int
    receiver_readings: int


def backlog_polls(end_ms: int) -> Iterator[list[Reading]]:
    """24 h of polls of a 300-signal station: one chunk of 30 readings a device poll."""
    per_device = BACKLOG_SIGNALS // BACKLOG_DEVICES
    polls = int(BACKLOG_HOURS * 3600 / BACKLOG_POLL_S)
    poll_ms = int(BACKLOG_POLL_S * 1000)
    start = end_ms - polls * poll_ms
    rnd = random.Random(4)
    values = [round(rnd.uniform(0, 500), 2) for _ in range(997)]
    names = [f"s{i:02d}" for i in range(per_device)]
    for k in range(polls):
        for d in range(BACKLOG_DEVICES):
            ts = start + k * poll_ms + d * poll_ms // BACKLOG_DEVICES
            base = k * 7 + d * 131
            yield [
                Reading(f"dev_{d}", name, ts, values[(base + i) % 997])
                for i, name in enumerate(names)
            ]


def fill_backlog(path: Path, config: OutboxConfig) -> tuple[int, int]:
    """Write the backlog fast (sync off: the fill is not what is measured)."""
    fast = OutboxConfig(
        max_bytes=config.max_bytes,
        max_age_s=config.max_age_s,
        sync="off",
        live_window_s=config.live_window_s,
    )
    end_ms = time.time_ns() // 1_000_000 - 30_000  # all of it outside the live window
    count = 0
    with Outbox(path, fast) as outbox:
        for chunk in backlog_polls(end_ms):
            outbox.put(chunk)
            count += len(chunk)
        stats = outbox.stats()
    return count, stats.dropped_readings_overflow + stats.dropped_readings_age


async def live_feeder(outbox: Outbox, uplink: Uplink, every_s: float, put: list[int]) -> None:
    """300 fresh readings every `every_s`, one chunk per device, as the bus workers would."""
    per_device = BACKLOG_SIGNALS // BACKLOG_DEVICES
    rnd = random.Random(5)
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        for d in range(BACKLOG_DEVICES):
            ts = time.time_ns() // 1_000_000
            outbox.put(
                [
                    Reading(f"{LIVE_PREFIX}dev_{d}", f"s{i:02d}", ts, round(rnd.uniform(0, 500), 2))
                    for i in range(per_device)
                ]
            )
            put[0] += per_device
            uplink.data_ready()
        next_at += every_s
        await asyncio.sleep(max(0.0, next_at - loop.time()))


def drain_settings(broker_port: int, backfill_per_s: float) -> GatewaySettings:
    return GatewaySettings(
        backfill_readings_per_s=backfill_per_s,
        batch_max_readings=5000,
        uplink=UplinkTarget(host="127.0.0.1", port=broker_port),
    )


def outbox_config(settings: GatewaySettings) -> OutboxConfig:
    """The outbox as the Gateway opens it."""
    return OutboxConfig(
        max_bytes=int(settings.outbox_max_mb * 1024 * 1024),
        max_age_s=settings.outbox_max_age_h * 3600,
        sync=settings.outbox_sync,
        live_window_s=settings.live_window_s,
    )


async def backlog_drain(
    work: Path, template: Path, backlog: int, live_every_s: float, backfill_per_s: float
) -> DrainResult:
    """Drain a copy of the filled outbox through the real Uplink while live data flows."""
    work.mkdir()
    broker = start_broker(work / "mqtt")
    children: list[Child] = []
    tasks: list[asyncio.Task[None]] = []
    outbox: Outbox | None = None
    try:
        receiver = Child("receiver", helper("receiver", "--port", str(broker.port)), work)
        children.append(receiver)
        settings = drain_settings(broker.port, backfill_per_s)
        path = work / "backlog.outbox.sqlite"
        shutil.copyfile(template, path)
        receiver.wait_for("ready")

        outbox = Outbox(path, outbox_config(settings))
        uplink = Uplink("bench", "backlog", settings, outbox)
        live_put = [0]
        assert broker.proc is not None
        mqtt_pid = broker.proc.pid
        start, cpu0 = time.monotonic(), time.process_time()
        receiver0, broker0 = receiver.cpu_s(), proc_cpu_s(mqtt_pid)
        start_ms = time.time_ns() // 1_000_000
        tasks.append(asyncio.create_task(uplink.run()))
        tasks.append(asyncio.create_task(live_feeder(outbox, uplink, live_every_s, live_put)))
        drained = False
        while time.monotonic() - start < DRAIN_TIMEOUT_S:
            await asyncio.sleep(0.1)
            if uplink.stats.readings_acked < backlog:
                continue
            oldest = outbox.stats().oldest_ts_ms  # a backlog chunk is older than the start
            if oldest is None or oldest >= start_ms:
                drained = True
                break
        drain_s = time.monotonic() - start
        cpu_share = (time.process_time() - cpu0) / drain_s
        receiver_share = (receiver.cpu_s() - receiver0) / drain_s
        broker_share = (proc_cpu_s(mqtt_pid) - broker0) / drain_s
        remaining = 0 if drained else outbox.stats().readings
        await _cancel(tasks.pop())  # the feeder; let the last live readings arrive
        deadline = time.monotonic() + 10
        while receiver.status().get("live", 0) < live_put[0] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        final = receiver.stop()
        delays = sorted(final.get("delays_ms", []))
        return DrainResult(
            backfill_per_s=backfill_per_s,
            drained=drained,
            drain_s=drain_s,
            remaining=remaining,
            cpu_share=cpu_share,
            receiver_share=receiver_share,
            broker_share=broker_share,
            live_put=live_put[0],
            live_received=len(delays),
            live_p50_ms=statistics.median(delays) if delays else float("nan"),
            live_p99_ms=delays[int(0.99 * (len(delays) - 1))] if delays else float("nan"),
            live_max_ms=delays[-1] if delays else float("nan"),
            uplink_max_live_ms=uplink.stats.max_live_delay_ms,
            expired_batches=uplink.stats.batches_expired,
            receiver_readings=int(final.get("readings", 0)),
        )
    finally:
        for task in tasks:
            await _cancel(task)
        if outbox is not None:
            outbox.close()
        for child in children:
            child.stop()
        stop_broker(broker)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# --- report -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--only", default="1,2,3,4", help="sections to run, e.g. 1,4")
    parser.add_argument("--seconds", type=float, default=10.0, help="section 1a window")
    parser.add_argument(
        "--buses",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 4],
        help="section 1a: bus workers (connections) to poll the 20 devices over, e.g. 1,4",
    )
    parser.add_argument("--live-every", type=float, default=1.0, help="section 4 live period")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",")}
    # A bus worker stopped mid-request gets its late answer reported by pymodbus as an
    # error; that is the stop, not a fault of the run.
    logging.getLogger("pymodbus").setLevel(logging.ERROR + 1)
    logging.basicConfig(
        level=logging.WARNING, format="  log %(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    print(f"machine: {machine()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    summary: list[tuple[str, str, str, str]] = []
    (ROOT / "run").mkdir(exist_ok=True)  # the real disk (not tmpfs), ignored by git
    with tempfile.TemporaryDirectory(prefix="bench-gateway-", dir=ROOT / "run") as name:
        tmp = Path(name)
        if "1" in only:
            section_pipeline(tmp, args.seconds, args.buses, summary)
        if "2" in only:
            section_planner(summary)
        if "3" in only:
            section_rss(tmp, summary)
        if "4" in only:
            section_drain(tmp, args.live_every, summary)
    print()
    print("summary")
    widths = [max(len(row[i]) for row in summary) for i in range(3)] if summary else [0, 0, 0]
    head = ("figure", "measured", "target", "")
    print(f"  {head[0]:<{widths[0]}}  {head[1]:>{widths[1]}}  {head[2]:<{widths[2]}}")
    for row in summary:
        print(f"  {row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")


def section_pipeline(
    tmp: Path, seconds: float, bus_counts: list[int], summary: list[tuple[str, str, str, str]]
) -> None:
    print()
    print(
        f"1a. Modbus TCP -> gateway -> Mosquitto -> receiver (acking, own process): "
        f"{PIPELINE_UNITS} devices x {BLOCK_SIGNALS} uint16 input registers served by one "
        f"pymodbus server in another process, polled back to back, {seconds:.0f} s window"
    )
    results: list[PipelineResult] = []
    for buses in bus_counts:
        try:
            r = asyncio.run(pipeline_modbus(tmp, buses, seconds))
        except Exception as exc:  # one failed run must not hide the other sections
            print(f"  {buses} bus(es): FAILED: {exc!r}")
            continue
        results.append(r)
        others = ", ".join(f"{k} {v:.0%}" for k, v in r.others.items())
        print(
            f"  {buses} bus{'es' if buses > 1 else ''} ({r.units // buses} devices each): "
            f"acquired {r.acquired_s:,.0f} value readings/s "
            f"({r.polls_s:,.0f} polls/s, {r.requests_per_poll:.2f} requests a poll); "
            f"into the outbox {r.in_s:,.0f}/s with status readings; acked {r.acked_s:,.0f}/s; "
            f"outbox backlog at the end {r.backlog:,}"
        )
        print(
            f"      gateway process {r.cpu_share:.0%} of a core, {r.cpu_s_per_m:.1f} CPU s per "
            f"million readings = {r.core_capacity_s:,.0f} readings/s per core; "
            f"meanwhile {others} of a core"
        )
    if results:
        best = max(results, key=lambda r: r.acked_s)
        summary.append(
            (
                f"1a pipeline acked/s, Modbus TCP, {best.buses} bus(es)",
                f"{best.acked_s:,.0f}",
                f">= {TARGET_READINGS_S:,}",
                verdict(best.acked_s >= TARGET_READINGS_S),
            )
        )
        cheapest = min(results, key=lambda r: r.cpu_s_per_m)
        summary.append(
            (
                "1a gateway capacity per core (from CPU s/M)",
                f"{cheapest.core_capacity_s:,.0f}",
                f">= {TARGET_READINGS_S:,}",
                verdict(cheapest.core_capacity_s >= TARGET_READINGS_S),
            )
        )
    print(f"  (ThingsBoard's Python gateway: about {THINGSBOARD_READINGS_S:,} readings/s)")

    print()
    print(
        "1b. the same stages without Modbus, in process, one core: decode a 120-register "
        "response -> Readings -> normalise -> outbox.put (chunk of 120, sync=normal) -> "
        "take 5000 -> encode_rows -> ack"
    )
    s = stages_ceiling(tmp)
    print(f"  {s.readings_s:,.0f} readings/s")
    print(
        "  µs a reading: "
        + ", ".join(f"{k} {v:.2f}" for k, v in s.us_per_reading.items())
        + f"; total {1e6 / s.readings_s:.2f}"
    )
    print(
        f"  normalise with report by exception on (every value moved): {s.rbe_on_us:.2f} µs; "
        f"the ingest's decode_batch: {s.ingest_decode_us:.2f} µs a reading (its own process)"
    )
    summary.append(
        (
            "1b pipeline ceiling without Modbus, readings/s",
            f"{s.readings_s:,.0f}",
            f">= {TARGET_READINGS_S:,}",
            verdict(s.readings_s >= TARGET_READINGS_S),
        )
    )


def section_planner(summary: list[tuple[str, str, str, str]]) -> None:
    print()
    p = planner_summary()
    print(
        f"2. one poll of all {p.devices} Modbus devices of the demo site: planned "
        f"{p.planned} requests, exhaustive minimum {p.minimum}, one per signal {p.naive} "
        "(bench/bench_planner.py has the detail)"
    )
    summary.append(
        (
            "2 Modbus requests a demo poll (planned/min)",
            f"{p.planned}/{p.minimum}",
            "equal",
            verdict(p.planned == p.minimum),
        )
    )


def section_rss(tmp: Path, summary: list[tuple[str, str, str, str]]) -> None:
    print()
    print(
        f"3. RSS of `facility gateway run` after {RSS_SECONDS:.0f} s polling `facility "
        "simulate --speed 60` and delivering to an acking receiver"
    )
    try:
        r = gateway_rss(tmp)
    except Exception as exc:
        print(f"  FAILED: {exc}")
        summary.append(("3 gateway RSS", "failed", f"<= {TARGET_RSS_MB:.0f} MB", "NOT met"))
        return
    print(f"  site: {r.site_note}")
    for name, (devices, signals, rss, peak) in r.gateways.items():
        print(
            f"  gateway {name} ({devices} devices, {signals} signals, poll 5 s): "
            f"RSS {rss:.1f} MB (peak {peak:.1f} MB), delivering {r.readings_s[name]:.0f} "
            "readings/s"
        )
        summary.append(
            (
                f"3 gateway RSS, {name}",
                f"{rss:.1f} MB",
                f"<= {TARGET_RSS_MB:.0f} MB",
                verdict(rss <= TARGET_RSS_MB and not r.errors),
            )
        )
    print(f"  simulator (whole demo site): RSS {r.sim_rss:.1f} MB (peak {r.sim_peak:.1f} MB)")
    print(
        "  for scale, a fresh python after importing: nothing "
        f"{import_rss_mb(''):.1f} MB, gateway.daemon {import_rss_mb('gateway.daemon'):.1f} MB, "
        f"wiring.cli (what `facility gateway run` loads) {import_rss_mb('wiring.cli'):.1f} MB"
    )
    for error in r.errors:
        print(f"  problem: {error}")


def section_drain(tmp: Path, live_every_s: float, summary: list[tuple[str, str, str, str]]) -> None:
    print()
    print(
        f"4. backlog drain: {BACKLOG_HOURS} h of a {BACKLOG_SIGNALS}-signal station polled "
        f"every {BACKLOG_POLL_S:.0f} s, in chunks of {BACKLOG_SIGNALS // BACKLOG_DEVICES}, "
        f"through the real Uplink (batches of 5000) to an acking receiver; "
        f"{BACKLOG_SIGNALS} live readings every {live_every_s:g} s meanwhile"
    )
    template = tmp / "backlog-template.outbox.sqlite"
    t0 = time.perf_counter()
    backlog, dropped = fill_backlog(template, outbox_config(GatewaySettings()))
    fill_s = time.perf_counter() - t0
    print(
        f"  backlog {backlog:,} readings written in {fill_s:.1f} s "
        f"({backlog / fill_s:,.0f}/s, sync=off), {dropped} dropped by the bounds, "
        f"outbox file {template.stat().st_size / 1e6:.0f} MB"
    )
    runs: list[DrainResult] = []
    for n, rate in enumerate((DRAIN_BACKFILL_PER_S, UNCAPPED_PER_S)):
        label = "uncapped" if rate >= UNCAPPED_PER_S else f"backfill cap {rate:,.0f}/s"
        try:
            r = asyncio.run(
                backlog_drain(tmp / f"drain-{n}", template, backlog, live_every_s, rate)
            )
        except Exception as exc:
            print(f"  {label}: FAILED: {exc!r}")
            continue
        runs.append(r)
        if r.drained:
            done = (
                f"drained in {r.drain_s:.1f} s ({backlog / r.drain_s:,.0f} readings/s), "
                f"{r.expired_batches} batches timed out and resent, receiver stored "
                f"{r.receiver_readings:,} readings; CPU, share of a core: uplink process "
                f"{r.cpu_share:.0%}, receiver {r.receiver_share:.0%}, Mosquitto "
                f"{r.broker_share:.0%}"
            )
        else:
            done = f"NOT drained after {r.drain_s:.0f} s: {r.remaining:,} readings still waiting"
        print(f"  {label}: {done}")
        print(
            f"      live readings: {r.live_received:,} of {r.live_put:,} at the ingest; "
            f"acquired -> stored p50 {r.live_p50_ms:.0f} ms, p99 {r.live_p99_ms:.0f} ms, "
            f"max {r.live_max_ms:.0f} ms (the uplink's acquired -> sent max "
            f"{r.uplink_max_live_ms} ms)"
        )
    default_rate = GatewaySettings().backfill_readings_per_s
    print(
        f"  at the default backfill_readings_per_s ({default_rate:,.0f}) the drain cannot "
        f"take less than {backlog / default_rate:.0f} s"
    )
    for r in runs:
        capped = r.backfill_per_s < UNCAPPED_PER_S
        label = f"cap {r.backfill_per_s / 1000:,.0f}k/s" if capped else "uncapped"
        summary.append(
            (
                f"4 backlog drain, 24 h x 300 signals, {label}",
                f"{r.drain_s:.1f} s" if r.drained else f"> {r.drain_s:.0f} s",
                f"<= {TARGET_DRAIN_S:.0f} s",
                verdict(r.drained and r.drain_s <= TARGET_DRAIN_S),
            )
        )
        summary.append(
            (
                f"4 live delay meanwhile, {label}, max (p50)",
                f"{r.live_max_ms / 1000:.2f} s ({r.live_p50_ms / 1000:.2f} s)",
                f"<= {TARGET_LIVE_S:.0f} s",
                verdict(r.live_max_ms <= TARGET_LIVE_S * 1000 and r.live_received >= r.live_put),
            )
        )


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("_modbus-server", "_receiver"))
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--units", type=int, default=PIPELINE_UNITS)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.role == "_modbus-server":
        asyncio.run(serve_modbus(args.units, args.status))
    else:
        asyncio.run(receive(args.port, args.status))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child_main(sys.argv[1:])
    else:
        main(sys.argv[1:])
