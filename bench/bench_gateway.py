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

    .venv/bin/python -m bench.bench_gateway [--only 1,4] [--seconds 10] [--buses 1,4]

About 2.5 minutes in all; each section cleans up its processes, even when it fails.

The machine has few cores: the Modbus server, Mosquitto and the receiver share them with
the gateway, so section 1a also prints what each of them used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import acking_receiver
from bench.acking_receiver import LIVE_PREFIX
from bench.common import (
    DEMO,
    Child,
    Summary,
    bench_session,
    cpu_seconds,
    helper_command,
    import_rss_mb,
    main_or_helper,
    memory_mb,
    run_or_report,
    service_pid,
    start_broker,
    stop_service,
    until_stopped,
    verdict,
    write_status,
)
from bench.simulated_demo import simulated_demo
from facility.clock import now_ms
from facility.config import SiteConfig, load_site_config
from facility.profile import ModbusProfile, Table
from facility.registers import RegisterImage
from facility.site import Bus, GatewaySettings, Transport
from facility.site import Uplink as UplinkTarget
from facility.wire import Reading, decode_batch, encode_rows
from gateway.daemon import Gateway
from gateway.modbus.planner import minimum_requests, plan_reads
from gateway.modbus.poller import decoded_reading
from gateway.normalise import ReportByException
from gateway.outbox import Outbox, OutboxConfig
from gateway.uplink.mqtt import Uplink
from simulators.modbus_server import BusServer
from tests.block_devices import block_station, uint16_block

HELPERS = "bench.bench_gateway"  # this module, run as its own helper processes

THINGSBOARD_READINGS_S = 12_000  # ThingsBoard's Python gateway, 120-register block reads
TARGET_READINGS_S = 120_000
TARGET_RSS_MB = 60.0
TARGET_DRAIN_S = 120.0
TARGET_LIVE_S = 2.0

BLOCK_SIGNALS = 120
PIPELINE_UNITS = 20

BACKLOG_SIGNALS = 300
BACKLOG_DEVICES = 10  # 30 signals a device: one chunk a device poll
BACKLOG_POLL_S = 5.0  # the demo's poll interval
BACKLOG_HOURS = 24
DRAIN_BACKFILL_PER_S = 100_000.0
UNCAPPED_PER_S = 1e9  # the second drain: as fast as the uplink and the receiver go
DRAIN_TIMEOUT_S = 150.0

RSS_SECONDS = 20.0


# --- helper process: a pymodbus server of N block devices --------------------------------


def block_profile(signals: int = BLOCK_SIGNALS) -> ModbusProfile:
    """A device of `signals` consecutive uint16 input registers: one block read a poll."""
    return uint16_block(f"bench_block_{signals}", signals, Table.INPUT)


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


# --- 1a. the real pipeline, with Modbus acquisition --------------------------------------


def pipeline_config(tmp: Path, modbus_port: int, units: int, buses: int) -> SiteConfig:
    bus_list = [Bus(id=f"bus{b}", transport=Transport.TCP, port=modbus_port) for b in range(buses)]
    devices = [(f"dev_{n:02d}", f"bus{(n - 1) % buses}", n) for n in range(1, units + 1)]
    fast = GatewaySettings(poll_s=1e-6)  # as fast as the bus answers
    return block_station(tmp, ("bench", "pipeline"), block_profile(), bus_list, devices, fast)


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
        serve = helper_command(HELPERS, "modbus-server", "--units", str(PIPELINE_UNITS))
        server = Child("modbus", serve, work)
        children.append(server)
        receiver = Child("receiver", acking_receiver.command(broker.port), work)
        children.append(receiver)
        port = int(server.wait_for("port")["port"])
        receiver.wait_for("ready")
        config = pipeline_config(work, port, PIPELINE_UNITS, buses)
        gateway = Gateway(
            config, "bench", "pipeline", work / "data", uplink_address=("127.0.0.1", broker.port)
        )
        gateway.start()
        mqtt_pid = service_pid(broker)
        others = {
            "Modbus server": server.cpu_s,
            "receiver": receiver.cpu_s,
            "Mosquitto": lambda: cpu_seconds(mqtt_pid),
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
        stop_service(broker)


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
            ts = now_ms()
            decoded = request.decode(profile, responses[i % len(responses)])
            t1 = clock()
            readings = [decoded_reading(asset, s.name, ts, v) for s, v in decoded]
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


def gateway_rss(tmp: Path, seconds: float = RSS_SECONDS) -> RssResult:
    work = tmp / "rss"
    work.mkdir()
    errors: list[str] = []
    with simulated_demo(work) as demo:
        receiver, sim, stations = demo.receiver, demo.simulator, demo.stations
        gateways = {name: demo.start_gateway(name) for name in stations}
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
            name: (*stations[name], memory_mb(child.pid, "VmRSS"), memory_mb(child.pid, "VmHWM"))
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
            "a copy of deploy/sites/demo on free ports",
            figures,
            rates,
            memory_mb(sim.pid, "VmRSS"),
            memory_mb(sim.pid, "VmHWM"),
            errors,
        )


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
    end_ms = now_ms() - 30_000  # all of it outside the live window
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
            ts = now_ms()
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
        receiver = Child("receiver", acking_receiver.command(broker.port), work)
        children.append(receiver)
        settings = drain_settings(broker.port, backfill_per_s)
        path = work / "backlog.outbox.sqlite"
        shutil.copyfile(template, path)
        receiver.wait_for("ready")

        outbox = Outbox(path, outbox_config(settings))
        uplink = Uplink("bench", "backlog", settings, outbox)
        live_put = [0]
        mqtt_pid = service_pid(broker)
        start, cpu0 = time.monotonic(), time.process_time()
        receiver0, broker0 = receiver.cpu_s(), cpu_seconds(mqtt_pid)
        start_ms = now_ms()
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
        broker_share = (cpu_seconds(mqtt_pid) - broker0) / drain_s
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
        stop_service(broker)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# --- report -------------------------------------------------------------------------------


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
    head = ("figure", "measured", "target", "")
    with bench_session("bench-gateway-", ("sqlite", "mosquitto"), head) as (tmp, summary):
        if "1" in only:
            section_pipeline(tmp, args.seconds, args.buses, summary)
        if "2" in only:
            section_planner(summary)
        if "3" in only:
            section_rss(tmp, summary)
        if "4" in only:
            section_drain(tmp, args.live_every, summary)


def section_pipeline(tmp: Path, seconds: float, bus_counts: list[int], summary: Summary) -> None:
    print()
    print(
        f"1a. Modbus TCP -> gateway -> Mosquitto -> receiver (acking, own process): "
        f"{PIPELINE_UNITS} devices x {BLOCK_SIGNALS} uint16 input registers served by one "
        f"pymodbus server in another process, polled back to back, {seconds:.0f} s window"
    )
    results: list[PipelineResult] = []
    for buses in bus_counts:
        r = run_or_report(f"{buses} bus(es)", pipeline_modbus(tmp, buses, seconds))
        if r is None:
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


def section_planner(summary: Summary) -> None:
    print()
    p = planner_summary()
    print(
        f"2. one poll of all {p.devices} Modbus devices of the demo site: planned "
        f"{p.planned} requests, exhaustive minimum {p.minimum}, one per signal {p.naive} "
        "(python -m bench.bench_planner has the detail)"
    )
    summary.append(
        (
            "2 Modbus requests a demo poll (planned/min)",
            f"{p.planned}/{p.minimum}",
            "equal",
            verdict(p.planned == p.minimum),
        )
    )


def section_rss(tmp: Path, summary: Summary) -> None:
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
        "gateway.commands and gateway.daemon (what `facility gateway run` loads) "
        f"{import_rss_mb('gateway.commands, gateway.daemon'):.1f} MB"
    )
    for error in r.errors:
        print(f"  problem: {error}")


def section_drain(tmp: Path, live_every_s: float, summary: Summary) -> None:
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
        work = tmp / f"drain-{n}"
        r = run_or_report(label, backlog_drain(work, template, backlog, live_every_s, rate))
        if r is None:
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


def helper_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("_modbus-server",))
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--units", type=int, default=PIPELINE_UNITS)
    args = parser.parse_args(argv)
    asyncio.run(serve_modbus(args.units, args.status))


if __name__ == "__main__":
    main_or_helper(main, helper_main)
