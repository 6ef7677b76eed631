"""How fast the ingest stores gateway batches in InfluxDB, where its time goes, what
InfluxDB itself accepts, and how late a reading lands at the demo site's nominal load.

Every figure is measured with real components: a private Mosquitto and a private
InfluxDB 1.x on free ports in a temporary folder, the real Receiver, Validator,
InfluxStore and InfluxV1Writer.

Batches are what the demo site's gateways send: the demo's stations, assets and signal
names; each Modbus device's values from the physics simulator, decoded through its
profile's register map exactly as the gateway's poller decodes them (scaled values are
floats, enums and counters ints, bits bools, the drive model a string), the six status
readings a gateway adds per device and poll, the gateway's health every 10 s and the car
parks' MQTT messages mapped as the gateway maps them; one poll cycle every 5 s with the
devices a few tens of ms apart, so one asset at one instant is one point; 5,000 readings
a batch (the gateway's batch_max_readings), zlib level 1 as the uplink sends them.

throughput  gateway batches published to Mosquitto by the 13 demo gateways (one client
            in another process, 8 batches in flight a gateway like the real uplink),
            received, validated, encoded, written and acked by one ingest process (the
            real Receiver: TCP_NODELAY, batches stored `max_in_flight` at once, in order
            per gateway): readings acked/s, as the gateways count acks. Variants
            (--variants, parts joined by +): `serial` max_in_flight=1 (one batch at a
            time, as before pipelining), `as-is` the Receiver's default (4), a number
            that many in flight, `gc` the collector tuned exactly as `facility ingest
            run` tunes it (ingest.commands.tune_gc), undone after the run.
breakdown   the same batches in process, no MQTT: decode, validate, line encoding and the
            HTTP write (gzip + POST, awaited), µs a reading each, default and tuned GC
            (--breakdown-clock cpu: this process's CPU time instead of wall time).
ceiling     what influxd alone accepts: the same batches' lines, encoded and gzipped in
            advance, POSTed by 1, 2 and 4 concurrent writers.
latency     the demo (wiring.demo.Demo: simulators, 13 gateways, the ingest service
            with the demo's alarm rules as `facility demo` runs it, Mosquitto, InfluxDB,
            one process) at real-time speed; for each live-lane reading, acquisition
            stamp -> the receiver's store call returned (validated, written to InfluxDB,
            seen by the alarm engine: ready to ack), with its legs; the receiver as it
            is, then serial (--latency-variants; --no-alarms: the pure ingest path).

    .venv/bin/python -m bench.bench_ingest [--only throughput,breakdown,ceiling,latency]
        [--seconds 10] [--variants serial,as-is,8,gc,...] [--latency-seconds 45]
        [--breakdown-clock wall|cpu]

About 5 minutes in all; each section cleans up its processes, even when it fails.
The machine may have few cores: Mosquitto, InfluxDB and the publishing gateways share
them with the ingest, so the throughput section prints what each of them used, and what
other processes on the machine used meanwhile (a busy neighbour halves the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import gzip
import itertools
import json
import math
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
import httpx

from bench.common import (
    DEMO,
    DEMO_RULES,
    ROOT,
    Child,
    Summary,
    bench_session,
    cpu_seconds,
    demo_site_on_free_ports,
    free_port,
    helper_command,
    machine_busy_s,
    main_or_helper,
    percentile,
    run_or_report,
    service_pid,
    stop_service,
    write_status,
)
from facility.aio import cancel_and_wait
from facility.clock import now_ms
from facility.config import SiteConfig, load_site_config
from facility.profile import ModbusProfile, MqttProfile
from facility.registers import RegisterImage
from facility.site import Station
from facility.wire import (
    STATUS_SIGNALS,
    TOPIC_ROOT,
    BadRow,
    Batch,
    Reading,
    Value,
    decode_ack,
    decode_batch,
    encode_rows,
    topic,
)
from gateway.mqtt_devices.subscriber import BadMessage, map_message, routes_for
from ingest.commands import tune_gc
from ingest.deadletters import DeadLetters
from ingest.influx import InfluxV1Writer, WriteResult
from ingest.receiver import Receiver, Store
from ingest.service import IngestService
from ingest.store import InfluxStore
from ingest.validate import Validator
from simulators.clock import SimClock
from simulators.engine import Simulation
from wiring.services import InfluxDB, Mosquitto

if TYPE_CHECKING:
    from wiring.demo import Demo

HELPERS = "bench.bench_ingest"  # this module, run as its own helper processes
DATABASE = "bench"

TARGET_READINGS_S = 200_000

BATCH_READINGS = 5000  # GatewaySettings.batch_max_readings
IN_FLIGHT = 8  # GatewaySettings.in_flight_batches
POLL_S = 5.0
HEALTH_EVERY_S = 10.0
DEVICE_SPACING_MS = 23  # devices of a bus answer one after another within a poll
TEMPLATE_CYCLES = 240  # 20 simulated minutes of polls, repeated with later timestamps
START_AGO_MS = 30 * 86_400_000  # data 30 days old: inside the validator's window


# --- realistic gateway batches -------------------------------------------------------------


@dataclass
class StationFeed:
    """One gateway's readings over the template period, in the order it would send them."""

    site: str
    station: str
    readings: list[Reading] = field(default_factory=list)


def _modbus_devices(
    config: SiteConfig, station: Station
) -> list[tuple[str, ModbusProfile, RegisterImage]]:
    out = []
    for asset in station.assets:
        profile = config.profiles.get(asset.profile or "")
        if asset.modbus is not None and isinstance(profile, ModbusProfile):
            out.append((asset.id, profile, RegisterImage(profile)))
    return out


def _poll(
    asset: str, profile: ModbusProfile, image: RegisterImage, values: Mapping[str, Value], ts: int
) -> list[Reading]:
    """What the gateway's poller makes of one poll: values through the register map (so
    types and rounding are the wire's), then the device's six status readings."""
    image.write_values({k: v for k, v in values.items() if v is not None})
    out = []
    for sig in profile.signals:
        value = image.read(sig)
        if isinstance(value, float) and not math.isfinite(value):
            out.append(Reading(asset, sig.name, ts, None, "b"))
        else:
            out.append(Reading(asset, sig.name, ts, value))
    status: tuple[Value, ...] = (True, "", 0, round(3.0 + (ts % 700) / 100, 2), ts, 0)
    out += [Reading(asset, n, ts, v, "g", "s") for n, v in zip(STATUS_SIGNALS, status, strict=True)]
    return out


def _health(ts: int, cycle: int) -> list[Reading]:
    values: dict[str, Value] = {
        "outbox_readings": 0,
        "outbox_bytes": 4096,
        "outbox_oldest_age_s": 0.0,
        "readings_in_per_s": 61.4,
        "readings_out_per_s": 61.4,
        "dropped_overflow": 0,
        "dropped_age": 0,
        "dropped_disk_full": 0,
        "poll_overruns": 0,
        "devices_failing": 0,
        "device_errors": 0,
        "uplink_connected": True,
        "in_flight_readings": 0,
        "max_live_delay_ms": 40 + cycle % 17,
        "mqtt_rejected": 0,
        "task_restarts": 0,
        "stalled_tasks": 0,
        "rss_mb": 48.5,
        "cpu_pct": round(1.5 + (cycle % 7) / 10, 1),
    }
    return [Reading("gateway", k, ts, v, "g", "h") for k, v in values.items()]


def site_feeds(config: SiteConfig, start_ms: int, cycles: int) -> list[StationFeed]:
    """Every gateway's readings over `cycles` poll cycles of the simulated demo site."""
    sim = Simulation(config, seed=1, start_ms=start_ms, step_s=1.0)
    feeds: dict[tuple[str, str], StationFeed] = {}
    devices: dict[tuple[str, str], list[tuple[str, ModbusProfile, RegisterImage]]] = {}
    routes = {}
    for site in config.sites:
        for station in site.stations:
            key = (site.id, station.id)
            feeds[key] = StationFeed(site.id, station.id)
            devices[key] = _modbus_devices(config, station)
            mqtt = {
                a.id: p
                for a in station.assets
                if isinstance(p := config.profiles.get(a.profile or ""), MqttProfile)
            }
            routes[key] = routes_for(site.id, station.id, mqtt)
    poll_ms = int(POLL_S * 1000)
    for cycle in range(cycles):
        t = start_ms + cycle * poll_ms
        advance = sim.advance_to(t)
        for (site_id, station_id), message in advance.messages:
            key = (site_id, station_id)
            profile = config.profiles[
                config.site(site_id).station(station_id).asset(message.asset).profile or ""
            ]
            assert isinstance(profile, MqttProfile)
            name = profile.topic_for(message.topic, site_id, station_id, message.asset)
            with contextlib.suppress(BadMessage, KeyError):
                route = routes[key][name]
                mapped = map_message(route, json.dumps(message.payload).encode(), message.t_ms)
                feeds[key].readings += mapped.readings(route.asset, message.t_ms)
        for key, station_devices in devices.items():
            for n, (asset, profile, image) in enumerate(station_devices):
                ts = t + 7 + n * DEVICE_SPACING_MS
                values = sim.values((*key, asset))
                feeds[key].readings += _poll(asset, profile, image, values, ts)
            if cycle % int(HEALTH_EVERY_S / POLL_S) == 0:
                feeds[key].readings += _health(t + 2, cycle)
    return list(feeds.values())


@dataclass
class BatchSource:
    """Endless 5,000-reading batches of the demo site's gateways. Each pass over a
    gateway's template shifts its timestamps by the template's length, so every point is
    new to InfluxDB (no batch overwrites an earlier one)."""

    feeds: list[StationFeed]
    period_ms: int
    boot: int = 1

    @classmethod
    def demo(cls, cycles: int = TEMPLATE_CYCLES) -> BatchSource:
        config = load_site_config(DEMO)
        start = now_ms() - START_AGO_MS
        start -= start % 1000
        return cls(site_feeds(config, start, cycles), int(cycles * POLL_S * 1000))

    def payloads(self) -> Iterator[Payload]:
        """Encoded batches forever, as the uplink encodes them (JSON rows, zlib level 1).
        A gateway sends batches in proportion to what it polls, so a big pump station
        sends several for each of a car park's. The gateways' batches interleave, at most
        one of each gateway a round, as independent gateways' batches do at the broker
        (runs of 4-7 batches of one gateway, as this script first sent them, held the
        receiver's per-gateway order to about one batch at a time)."""
        # Each reading's JSON row split around its timestamp, made once: a batch is then
        # joined from pieces, and the data for a long run is ready in seconds.
        pieces = [
            [
                (
                    json.dumps([r.kind, r.asset, r.signal], ensure_ascii=False)[:-1] + ",",
                    r.ts_ms,
                    "," + json.dumps([r.value, r.quality], ensure_ascii=False)[1:],
                )
                for r in feed.readings
            ]
            for feed in self.feeds
        ]
        seqs = [0] * len(self.feeds)
        positions = [0] * len(self.feeds)
        passes = [0] * len(self.feeds)
        credit = [0.0] * len(self.feeds)
        biggest = max(len(feed.readings) for feed in self.feeds)
        while True:
            for i, feed in enumerate(self.feeds):
                credit[i] += len(feed.readings) / biggest * BATCH_READINGS
                while credit[i] >= BATCH_READINGS:
                    credit[i] -= BATCH_READINGS
                    rows: list[str] = []
                    last_ts = 0
                    while len(rows) < BATCH_READINGS:
                        end = positions[i] + BATCH_READINGS - len(rows)
                        shift = passes[i] * self.period_ms
                        for head, ts, tail in pieces[i][positions[i] : end]:
                            last_ts = ts + shift
                            rows.append(f"{head}{last_ts}{tail}")
                        positions[i] = min(end, len(feed.readings))
                        if positions[i] == len(feed.readings):
                            positions[i] = 0
                            passes[i] += 1
                    seqs[i] += 1
                    header = {
                        "site": feed.site,
                        "station": feed.station,
                        "boot": self.boot,
                        "seq": seqs[i],
                        "lane": "live",
                        "sent_ms": last_ts + 50,
                    }
                    yield Payload(
                        topic(feed.site, feed.station, "up"),
                        encode_rows(header, rows, level=1),
                        len(rows),
                        seqs[i],
                    )


# --- payloads on disk, shared by the publisher processes ---------------------------------

_RECORD = struct.Struct("<IIII")  # topic bytes, payload bytes, readings, seq


@dataclass
class Payload:
    topic: str
    body: bytes
    readings: int
    seq: int


def write_payloads(path: Path, readings: int) -> tuple[int, int]:
    """Encode enough batches for `readings` readings into `path`; (batches, bytes)."""
    count = max(1, math.ceil(readings / BATCH_READINGS))
    size = 0
    with path.open("wb") as out:
        for _, payload in zip(range(count), BatchSource.demo().payloads(), strict=False):
            name = payload.topic.encode()
            out.write(
                _RECORD.pack(len(name), len(payload.body), payload.readings, payload.seq)
                + name
                + payload.body
            )
            size += len(payload.body)
    return count, size


def read_payloads(path: Path, limit: int | None = None) -> list[Payload]:
    data = path.read_bytes()
    out: list[Payload] = []
    at = 0
    while at < len(data) and (limit is None or len(out) < limit):
        name_len, body_len, n, seq = _RECORD.unpack_from(data, at)
        at += _RECORD.size
        name = data[at : at + name_len].decode()
        at += name_len
        out.append(Payload(name, data[at : at + body_len], n, seq))
        at += body_len
    return out


# --- helper process: the gateways, publishing batches and counting acks -------------------


async def publish(port: int, payload_file: Path, status: Path, in_flight: int) -> None:
    """One MQTT client for all the demo's gateways, sending the batches in file order
    (each gateway's share in proportion to what it polls); each gateway keeps at most
    `in_flight` batches unacknowledged, like the real uplink. When the file is used up
    it starts over (the same points are then written again: counted as repeats)."""
    payloads = read_payloads(payload_file)
    windows = {p.topic: asyncio.Semaphore(in_flight) for p in payloads}
    waiting: dict[tuple[str, int], int] = {}  # (ack topic, seq) -> readings
    counts = {"acked": 0, "batches": 0, "published": 0, "repeats": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def send(client: aiomqtt.Client) -> None:
        publishing: set[asyncio.Task[None]] = set()
        for rounds in itertools.count():
            for payload in payloads:
                await windows[payload.topic].acquire()
                waiting[(payload.topic.removesuffix("/up") + "/ack", payload.seq)] = (
                    payload.readings
                )
                # Not awaited here: each publish waits for its PUBACK, and the gateways
                # this stands for do not wait for one another.
                task = asyncio.create_task(client.publish(payload.topic, payload.body, qos=1))
                publishing.add(task)
                task.add_done_callback(publishing.discard)
                counts["published"] += 1
                counts["repeats"] += rounds > 0

    async def acks(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            ack = decode_ack(message.payload if isinstance(message.payload, bytes) else b"")
            n = waiting.pop((str(message.topic), ack.seq), None)
            if n is not None:
                counts["acked"] += n
                counts["batches"] += 1
                windows[str(message.topic).removesuffix("/ack") + "/up"].release()

    # TCP_NODELAY: one connection stands for 13 gateways here, and must not be the limit.
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"bench-gateways-{os.getpid()}",
        clean_session=True,
        socket_options=NODELAY,
    ) as client:
        await client.subscribe(f"{TOPIC_ROOT}/+/+/ack", qos=1)
        tasks = [asyncio.create_task(acks(client)), asyncio.create_task(send(client))]
        try:
            while not stop.is_set():
                write_status(status, {"ready": True, "at": time.time(), **counts})
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            write_status(status, {"ready": True, "at": time.time(), **counts, "final": True})


# --- the receiver set-ups measured -------------------------------------------------------


@contextlib.contextmanager
def tuned_gc(enabled: bool) -> Iterator[None]:
    """The collector tuned exactly as `facility ingest run` tunes it at start
    (ingest.commands.tune_gc: collect, freeze, young generation 50,000), undone when the
    run is over so the next one starts from the interpreter's defaults."""
    if not enabled:
        yield
        return
    before = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)  # the publisher's socket


async def stop_receiver(receiver: Receiver) -> None:
    """Receiver.stop, bounded: a cancellation aiomqtt swallows (see
    facility.aio.honour_cancellation) is repeated by its cancel_and_wait, which gives up
    with a log line; asyncio.run cancels whatever is still left at the end."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await receiver.stop()


# --- throughput: gateways -> Mosquitto -> one ingest process -> InfluxDB -------------------


@dataclass
class ThroughputResult:
    label: str
    seconds: float
    acked_s: float  # readings acked, as the gateways counted them
    stored_s: float  # readings the receiver stored and acked
    ingest_cpu: float  # share of a core
    others: dict[str, float]
    points_written: int
    refused: int
    repeats: int
    influx_count: int
    elsewhere: float  # share of a core used by processes outside the benchmark


AS_IS_IN_FLIGHT = Receiver.max_in_flight  # the Receiver's default


@dataclass(frozen=True)
class Variant:
    """How the receiver of a run is set up: batches stored at once (its max_in_flight)
    and whether the collector is tuned as `facility ingest run` tunes it."""

    in_flight: int = AS_IS_IN_FLIGHT
    gc_tuned: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        """`as-is`, `serial` (1 in flight), a number of batches in flight, and `gc`,
        joined by +: `serial+gc`, `8+gc`."""
        in_flight, gc_tuned = AS_IS_IN_FLIGHT, False
        for part in (p.strip() for p in text.split("+")):
            if part in ("", "as-is"):
                continue
            if part == "serial":
                in_flight = 1
            elif part == "gc":
                gc_tuned = True
            elif part.isdigit() and int(part) > 0:
                in_flight = int(part)
            else:
                raise ValueError(f"unknown variant part {part!r} (as-is, serial, N, gc)")
        return cls(in_flight, gc_tuned)

    @property
    def label(self) -> str:
        if self.in_flight == AS_IS_IN_FLIGHT:
            base = f"as is ({self.in_flight} in flight)"
        elif self.in_flight == 1:
            base = "serial (1 in flight)"
        else:
            base = f"{self.in_flight} in flight"
        return base + (" + GC tuned" if self.gc_tuned else "")


async def throughput(
    work: Path, payload_file: Path, seconds: float, variant: Variant
) -> ThroughputResult:
    work.mkdir(parents=True)
    label = variant.label
    broker = Mosquitto(work / "mqtt")
    influx = InfluxDB(work / "influxdb")
    publisher: Child | None = None
    receiver: Receiver | None = None
    writer: InfluxV1Writer | None = None
    try:
        broker.start()
        influx.start()
        writer = InfluxV1Writer(influx.url, DATABASE)
        await writer.create_database(DATABASE)
        store = InfluxStore(Validator(load_site_config(DEMO)), writer, DeadLetters(work / "dl"))
        # Tuned where `facility ingest run` tunes it: the service made, not yet started.
        with tuned_gc(variant.gc_tuned):
            receiver = Receiver(
                "127.0.0.1",
                broker.port,
                store,
                client_id="bench-ingest",
                max_in_flight=variant.in_flight,
            )
            await receiver.start()
            to_publish = ["--port", str(broker.port), "--payloads", str(payload_file)]
            publisher = Child("publisher", helper_command(HELPERS, "publish", *to_publish), work)
            pids = {
                "InfluxDB": service_pid(influx),
                "Mosquitto": service_pid(broker),
                "gateways (publisher)": publisher.pid,
            }
            await asyncio.to_thread(publisher.wait_for, "ready", 60.0)
            await asyncio.sleep(WARMUP_S)
            first = _sample(publisher, receiver, pids)
            await asyncio.sleep(seconds)
            last = _sample(publisher, receiver, pids)
        wall = last.at - first.at
        final = publisher.stop()
        await stop_receiver(receiver)
        receiver = None
        answer = await writer.query('SELECT count("flow_m3h") FROM "pump"')
        series = answer["results"][0].get("series", [])
        count = int(series[0]["values"][0][1]) if series else 0
        return ThroughputResult(
            label=label,
            seconds=wall,
            acked_s=(last.acked - first.acked) / wall,
            stored_s=(last.stored - first.stored) / wall,
            ingest_cpu=(last.cpu - first.cpu) / (last.mono - first.mono),
            others={k: (last.others[k] - first.others[k]) / (last.mono - first.mono) for k in pids},
            points_written=store.points_written,
            refused=store.refused,
            repeats=int(final.get("repeats", 0)),
            influx_count=count,
            elsewhere=(last.busy - first.busy) / (last.mono - first.mono)
            - (last.cpu - first.cpu) / (last.mono - first.mono)
            - sum(last.others[k] - first.others[k] for k in pids) / (last.mono - first.mono),
        )
    finally:
        if publisher is not None:
            publisher.stop()
        if receiver is not None:
            await stop_receiver(receiver)
        if writer is not None:
            await writer.close()
        stop_service(influx)
        stop_service(broker)


WARMUP_S = 3.0


@dataclass
class _Sample:
    at: float  # wall clock of the publisher's count
    mono: float
    acked: int
    stored: int
    cpu: float
    others: dict[str, float]
    busy: float


def _sample(publisher: Child, receiver: Receiver, pids: dict[str, int]) -> _Sample:
    body = publisher.status()
    return _Sample(
        at=float(body["at"]),
        mono=time.monotonic(),
        acked=int(body["acked"]),
        stored=receiver.readings,
        cpu=time.process_time(),
        others={k: cpu_seconds(pid) for k, pid in pids.items()},
        busy=machine_busy_s(),
    )


# --- breakdown: the stages in process, without MQTT -------------------------------------


STAGES = ("decode", "validate", "line encoding", "HTTP write")


@dataclass
class BreakdownResult:
    us: dict[str, float]  # per reading
    gzip_us: float  # part of the HTTP write: compressing the lines
    readings_per_point: float
    bytes_per_reading: float
    store_call_us: float  # InfluxStore.__call__ as a whole (validate + encode + write)

    @property
    def total_us(self) -> float:
        return sum(self.us.values())


async def breakdown(
    work: Path, payload_file: Path, batches: int, gc_tuned: bool, cpu_clock: bool = False
) -> BreakdownResult:
    work.mkdir(parents=True)
    payloads = [p.body for p in read_payloads(payload_file, batches)]
    influx = InfluxDB(work / "influxdb")
    writer: InfluxV1Writer | None = None
    try:
        influx.start()
        writer = InfluxV1Writer(influx.url, DATABASE)
        await writer.create_database(DATABASE)
        store = InfluxStore(Validator(load_site_config(DEMO)), writer, DeadLetters(work / "dl"))
        spent = dict.fromkeys(STAGES, 0.0)
        gzip_s = store_s = 0.0
        readings = lines_n = size = 0
        clock = time.process_time if cpu_clock else time.perf_counter
        with tuned_gc(gc_tuned):
            for payload in payloads[:20]:  # warm the caches and the connection
                await store(*decode_batch(payload))
            for payload in payloads:
                t0 = clock()
                batch, bad = decode_batch(payload)
                t1 = clock()
                verdict = store.validator.check(batch, bad)
                t2 = clock()
                lines, unencodable = store.lines_for(batch, verdict.accepted)
                t3 = clock()
                result = await writer.write(lines)
                t4 = clock()
                if verdict.rejected or unencodable or result.rejected:
                    raise RuntimeError("a realistic batch had refused readings")
                body = "\n".join(lines).encode()
                t5 = clock()
                gzip.compress(body, compresslevel=1)
                t6 = clock()
                await store(batch, bad)
                t7 = clock()
                for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    spent[stage] += dt
                gzip_s += t6 - t5
                store_s += t7 - t6
                readings += len(batch.readings)
                lines_n += len(lines)
                size += len(body)
        return BreakdownResult(
            us={k: v / readings * 1e6 for k, v in spent.items()},
            gzip_us=gzip_s / readings * 1e6,
            readings_per_point=readings / lines_n,
            bytes_per_reading=size / readings,
            store_call_us=store_s / readings * 1e6,
        )
    finally:
        if writer is not None:
            await writer.close()
        stop_service(influx)


# --- ceiling: what influxd alone accepts ---------------------------------------------------


@dataclass
class CeilingResult:
    writers: int
    readings_s: float
    points_s: float
    influx_cpu: float  # share of a core
    influx_us: float  # influxd CPU µs per reading
    client_cpu: float
    elsewhere: float  # share of a core used by processes outside the benchmark


async def ceiling(work: Path, payload_file: Path, batches: int) -> list[CeilingResult]:
    """The same batches' lines, encoded and gzipped beforehand, POSTed to a fresh influxd
    by 1, 2 and 4 concurrent writers (one HTTP connection each)."""
    store = InfluxStore(Validator(load_site_config(DEMO)), _NoWriter(), DeadLetters(work / "dl"))
    bodies: list[tuple[bytes, int, int]] = []  # gzipped body, readings, lines
    for payload in read_payloads(payload_file, batches):
        batch, bad = decode_batch(payload.body)
        lines, _ = store.lines_for(batch, store.validator.check(batch, bad).accepted)
        body = gzip.compress("\n".join(lines).encode(), compresslevel=1)
        bodies.append((body, len(batch.readings), len(lines)))
    results = []
    for writers in (1, 2, 4):
        influx = InfluxDB(work / f"influxdb-{writers}")
        try:
            influx.start()
            results.append(await _post_all(influx, bodies, writers))
        finally:
            stop_service(influx)
    return results


class _NoWriter:
    async def write(self, lines: Sequence[str]) -> WriteResult:
        raise AssertionError("the ceiling section writes its own requests")


async def _post_all(
    influx: InfluxDB, bodies: list[tuple[bytes, int, int]], writers: int
) -> CeilingResult:
    params = {"db": DATABASE, "precision": "ms"}
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"}
    todo = list(reversed(bodies))

    async def post(client: httpx.AsyncClient) -> None:
        while todo:
            body, _, _ = todo.pop()
            response = await client.post("/write", params=params, content=body, headers=headers)
            if response.status_code != 204:
                raise RuntimeError(f"influxd answered {response.status_code}: {response.text}")

    limits = httpx.Limits(max_connections=writers)
    async with httpx.AsyncClient(base_url=influx.url, timeout=30, limits=limits) as client:
        await client.post("/query", params={"q": f'CREATE DATABASE "{DATABASE}"'})
        pid = service_pid(influx)
        cpu0, mine0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
        busy0 = machine_busy_s()
        await asyncio.gather(*(post(client) for _ in range(writers)))
        wall = time.perf_counter() - t0
        cpu, mine = cpu_seconds(pid) - cpu0, time.process_time() - mine0
        busy = machine_busy_s() - busy0
    readings = sum(b[1] for b in bodies)
    return CeilingResult(
        writers=writers,
        readings_s=readings / wall,
        points_s=sum(b[2] for b in bodies) / wall,
        influx_cpu=cpu / wall,
        influx_us=cpu / readings * 1e6,
        client_cpu=mine / wall,
        elsewhere=(busy - cpu - mine) / wall,
    )


# --- latency: the demo at real-time speed ---------------------------------------------------


@dataclass
class TimedStore:
    """Wraps the receiver's store (the service's: InfluxStore, then the alarm engine when
    it has rules): for each live-lane reading, acquisition (its ts_ms, wall clock) -> the
    store call returned, i.e. written to InfluxDB and ready to ack; and the legs of that
    journey."""

    inner: Store
    value_ms: list[int] = field(default_factory=list)  # device values (kind v)
    other_ms: list[int] = field(default_factory=list)  # device status, gateway health
    uplink_ms: list[int] = field(default_factory=list)  # a reading: acquired -> batch sent
    transit_ms: list[int] = field(default_factory=list)  # a batch: sent -> store called
    store_ms: list[int] = field(default_factory=list)  # a batch: the store call
    backfill: int = 0
    recording: bool = False

    async def __call__(self, batch: Batch, rejected: list[BadRow]) -> object:
        start = now_ms()
        result = await self.inner(batch, rejected)
        end = now_ms()
        if not self.recording:
            return result
        if batch.lane != "live":
            self.backfill += len(batch.readings)
            return result
        for r in batch.readings:
            (self.value_ms if r.kind == "v" else self.other_ms).append(end - r.ts_ms)
            self.uplink_ms.append(batch.sent_ms - r.ts_ms)
        self.transit_ms.append(start - batch.sent_ms)
        self.store_ms.append(end - start)
        return result


@dataclass
class LatencyResult:
    variant: Variant
    seconds: float
    timed: TimedStore
    batches: int
    points_written: int
    refused: int

    @property
    def label(self) -> str:
        return self.variant.label


RECEIVER_SETTINGS = (  # what a restarted receiver keeps of the service's
    "host",
    "port",
    "store",
    "client_id",
    "username",
    "password",
    "tls_context",
    "acking",
    "topics",
    "quarantine",
)


async def restart_receiver(ingest: IngestService, in_flight: int) -> Receiver:
    """The service's receiver stopped and a new one with the same settings and
    `in_flight` batches at once started in its place; the persistent session hands it
    whatever arrived meanwhile."""
    old = ingest.receiver
    await stop_receiver(old)
    settings = {name: getattr(old, name) for name in RECEIVER_SETTINGS}
    receiver = Receiver(**settings, max_in_flight=in_flight)
    ingest.receiver = receiver
    await receiver.start()  # returns once subscribed
    return receiver


async def latency(
    work: Path, seconds: float, warmup_s: float, variant: Variant, rules: Path | None
) -> LatencyResult:
    # Imported here: the demo brings the reports (matplotlib, ~55,000 more objects), and
    # an ingest process without them would collect its garbage faster than this one in
    # the other sections (default GC: +0.5 µs a reading in validate).
    from wiring.demo import Demo

    config = load_site_config(demo_site_on_free_ports(work / "site"))
    start_ms = now_ms()
    source = Simulation(config, seed=1, start_ms=start_ms)
    demo = Demo(config, source, SimClock(start_ms, 1.0), work / "run", free_port(), rules=rules)
    run: asyncio.Task[None] | None = None
    try:
        await demo.start()
        run = asyncio.create_task(demo.run(seconds + warmup_s))
        timed = TimedStore(demo.receiver.store)
        demo.receiver.store = timed
        await asyncio.sleep(RECEIVER_RESTART_S)  # the gateways' and devices' clients are up
        # The receiver restarted in every run, so runs differ only in max_in_flight.
        await restart_receiver(demo.ingest, variant.in_flight)
        await asyncio.sleep(warmup_s - RECEIVER_RESTART_S)  # first polls, MQTT devices
        timed.recording = True
        t0, batches0 = time.monotonic(), demo.receiver.batches
        await run
        run = None
        timed.recording = False
        return LatencyResult(
            variant=variant,
            seconds=time.monotonic() - t0,
            timed=timed,
            batches=demo.receiver.batches - batches0,
            points_written=demo.store.points_written,
            refused=demo.store.refused,
        )
    finally:
        if run is not None:
            await cancel_and_wait(run)
        await stop_demo(demo)


async def stop_demo(demo: Demo) -> None:
    try:
        async with asyncio.timeout(30):
            await demo.stop()
    except Exception as exc:  # a demo that did not start fully: stop what did start
        print(f"  (demo stop: {exc!r}; stopping its servers)")
        for name in ("influxdb", "broker"):
            server = getattr(demo, name, None)
            if isinstance(server, InfluxDB | Mosquitto):
                stop_service(server)


# --- main ---------------------------------------------------------------------------------


SECTIONS = ("throughput", "breakdown", "ceiling", "latency")
DEFAULT_VARIANTS = ("serial", "as-is", "8", "gc", "8+gc")
PAYLOAD_RATE = 500_000  # readings/s the payload file is sized for; beyond, it repeats
BREAKDOWN_BATCHES = 200
CEILING_BATCHES = 600
LATENCY_WARMUP_S = 15.0
RECEIVER_RESTART_S = 3.0


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput window a run")
    parser.add_argument("--latency-seconds", type=float, default=45.0, help="latency window")
    parser.add_argument(
        "--breakdown-clock",
        choices=("wall", "cpu"),
        default="wall",
        help="breakdown: wall time, or this process's CPU time (comparable on a busy "
        "machine; the HTTP write then leaves out InfluxDB's own work)",
    )
    parser.add_argument(
        "--latency-variants",
        type=lambda text: [Variant.parse(v.strip()) for v in text.split(",")],
        default="as-is,serial",
        help="latency runs, like --variants (gc is not applied here and is ignored)",
    )
    parser.add_argument(
        "--no-alarms",
        action="store_true",
        help="latency: the demo without alarm rules (default: the rules `facility demo` loads)",
    )
    parser.add_argument(
        "--variants",
        type=lambda text: [Variant.parse(v.strip()) for v in text.split(",")],
        default=",".join(DEFAULT_VARIANTS),
        help="throughput runs: as-is, serial (1 in flight), N in flight, gc; joined by +",
    )
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",")}
    if unknown := only - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}")
    with bench_session("bench-ingest-", ("influxd", "mosquitto")) as (tmp, summary):
        payload_file = tmp / "payloads.bin"
        if only & {"throughput", "breakdown", "ceiling"}:
            readings = int((WARMUP_S + args.seconds) * PAYLOAD_RATE)
            readings = max(readings, CEILING_BATCHES * BATCH_READINGS)
            t0 = time.perf_counter()
            count, size = write_payloads(payload_file, readings)
            print(
                f"batches: {count:,} of {BATCH_READINGS:,} readings from the demo site's 13 "
                f"gateways ({size / count / 1000:.1f} kB each compressed), made in "
                f"{time.perf_counter() - t0:.1f} s"
            )
        if "throughput" in only:
            section_throughput(tmp, payload_file, args.seconds, args.variants, summary)
        if "breakdown" in only:
            section_breakdown(tmp, payload_file, summary, args.breakdown_clock == "cpu")
        if "ceiling" in only:
            section_ceiling(tmp, payload_file, summary)
        if "latency" in only:
            rules = None if args.no_alarms else DEMO_RULES
            section_latency(tmp, args.latency_seconds, args.latency_variants, rules, summary)


def section_throughput(
    tmp: Path, payload_file: Path, seconds: float, variants: list[Variant], summary: Summary
) -> None:
    print()
    print(
        f"throughput: 13 gateways (one process, {IN_FLIGHT} batches in flight each) -> "
        f"Mosquitto -> one ingest process (Receiver, Validator, InfluxStore, InfluxV1Writer) "
        f"-> InfluxDB; {WARMUP_S:.0f} s warm-up, then {seconds:.0f} s counted"
    )
    for n, variant in enumerate(variants):
        work = tmp / f"throughput-{n}"
        r = run_or_report(variant.label, throughput(work, payload_file, seconds, variant))
        if r is None:
            continue
        others = ", ".join(f"{k} {v:.0%}" for k, v in r.others.items())
        print(
            f"  {r.label}: {r.acked_s:,.0f} readings/s acked (receiver: {r.stored_s:,.0f}/s "
            f"stored); ingest process {r.ingest_cpu:.0%} of a core, {others}; other "
            f"processes on the machine {max(0.0, r.elsewhere):.0%}"
        )
        print(
            f"      {r.points_written:,} points written, {r.refused} refused; InfluxDB holds "
            f"{r.influx_count:,} pump flow values; {r.repeats} batches sent a second time "
            "(payload file used up)"
        )
        summary.append(
            (
                f"throughput, {r.label}",
                f"{r.acked_s:,.0f} readings/s",
                f"target >= {TARGET_READINGS_S:,}",
            )
        )


def section_breakdown(tmp: Path, payload_file: Path, summary: Summary, cpu_clock: bool) -> None:
    print()
    print(
        f"breakdown: {BREAKDOWN_BATCHES} batches in process, no MQTT, each stage timed "
        "(the HTTP write awaited: gzip, POST, InfluxDB's answer), "
        + ("in this process's CPU time" if cpu_clock else "in wall time")
    )
    results = {}
    for gc_tuned in (False, True):
        label = "GC tuned" if gc_tuned else "default GC"
        work = tmp / f"breakdown-{int(gc_tuned)}"
        r = run_or_report(
            label, breakdown(work, payload_file, BREAKDOWN_BATCHES, gc_tuned, cpu_clock)
        )
        if r is not None:
            results[label] = r
    for label, r in results.items():
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r.us.items())
        print(
            f"  {label}, µs a reading: {stages}; total {r.total_us:.2f} = "
            f"{1e6 / r.total_us:,.0f} readings/s one after another"
        )
        print(
            f"      of the write, gzip {r.gzip_us:.2f}; InfluxStore call as a whole "
            f"(validate + encode + write) {r.store_call_us:.2f}; {r.readings_per_point:.1f} "
            f"readings a point, {r.bytes_per_reading:.0f} bytes of line protocol a reading"
        )
        summary.append(
            (
                f"breakdown, {label}, µs a reading",
                " / ".join(f"{v:.2f}" for v in r.us.values()),
                "decode / validate / line encoding / HTTP write",
            )
        )


def section_ceiling(tmp: Path, payload_file: Path, summary: Summary) -> None:
    print()
    print(
        f"ceiling: {CEILING_BATCHES} batches' lines encoded and gzipped beforehand, POSTed "
        "to a fresh influxd by concurrent writers"
    )
    results = run_or_report("ceiling", ceiling(tmp / "ceiling", payload_file, CEILING_BATCHES))
    if results is None:
        return
    for r in results:
        print(
            f"  {r.writers} writer(s): {r.readings_s:,.0f} readings/s ({r.points_s:,.0f} "
            f"points/s); influxd {r.influx_cpu:.0%} of a core = {r.influx_us:.2f} CPU µs a "
            f"reading; the posting client {r.client_cpu:.0%}; other processes on the machine "
            f"{max(0.0, r.elsewhere):.0%}"
        )
    best = max(results, key=lambda r: r.readings_s)
    summary.append(
        (
            "influxd alone, best",
            f"{best.readings_s:,.0f} readings/s",
            f"{best.writers} writers, {best.influx_us:.2f} influxd CPU µs a reading",
        )
    )


def section_latency(
    tmp: Path, seconds: float, variants: list[Variant], rules: Path | None, summary: Summary
) -> None:
    alarms = f"alarm rules {rules.relative_to(ROOT)}" if rules else "no alarm rules"
    print()
    print(
        f"latency: the demo (13 gateways polling the simulated site every 5 s, the ingest "
        f"service with {alarms}, Mosquitto, InfluxDB; one process) at real-time speed, "
        f"{seconds:.0f} s after {LATENCY_WARMUP_S:.0f} s of warm-up; acquisition (ts_ms) -> "
        "the receiver's store call returned (InfluxDB write done, alarms seen), live lane"
    )
    for n, variant in enumerate(variants):
        if variant.gc_tuned:
            variant = Variant(variant.in_flight)  # the demo process keeps its collector
        work = tmp / f"latency-{n}"
        r = run_or_report(variant.label, latency(work, seconds, LATENCY_WARMUP_S, variant, rules))
        if r is None:
            continue
        t = r.timed
        print(f"  {r.label}:")
        for label, values in (
            ("device values", t.value_ms),
            ("status + health", t.other_ms),
            ("  leg: acquired -> sent by the gateway, a reading", t.uplink_ms),
            ("  leg: sent -> store called, a batch", t.transit_ms),
            ("  leg: store call (validate, encode, write, alarms), a batch", t.store_ms),
        ):
            print(
                f"    {label}: {len(values):,}, p50 {percentile(values, 50):.0f} ms, p90 "
                f"{percentile(values, 90):.0f} ms, p99 {percentile(values, 99):.0f} ms, "
                f"max {max(values, default=0):.0f} ms"
            )
        everything = t.value_ms + t.other_ms
        print(
            f"    {r.batches} batches, {len(everything) / r.seconds:.0f} readings/s, "
            f"{t.backfill} backfill readings, {r.points_written:,} points written, "
            f"{r.refused} refused"
        )
        summary.append(
            (
                f"latency acquired -> in InfluxDB, p50 / p90 / p99, {r.label}",
                " / ".join(f"{percentile(everything, q):.0f}" for q in (50, 90, 99)) + " ms",
                f"{len(everything):,} live readings, max {max(everything, default=0):.0f} ms",
            )
        )


def helper_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("_publish",))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--payloads", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    args = parser.parse_args(argv)
    asyncio.run(publish(args.port, args.payloads, args.status, args.in_flight))


if __name__ == "__main__":
    main_or_helper(main, helper_main)
