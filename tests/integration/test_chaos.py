"""Chaos: the whole data path as real processes (the simulator with Modbus and MQTT
devices, two gateways, the site and central brokers, the ingest, influxd) through a
seeded schedule of kill -9, SIGSTOP and restarts, with a central broker outage. An
independent record of what was acquired (a QoS 1 subscriber of our own on the device
topics; for Modbus, the outboxes' contents read before every kill and once a second)
must end up in InfluxDB exactly once; every outbox drains; every process delivers again.

`FACILITY_CHAOS_SEED=N` replays a schedule; the seed and the timeline are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from facility.clock import now_ms
from facility.config import SiteConfig
from ingest.influx import InfluxV1Writer
from tests.integration._gateway import one_station
from tests.integration._ingest import DB, stored_readings, write_ingest_config
from tests.integration.test_gateway_crash import write_site
from wiring.services import InfluxDB, Mosquitto, free_port

GATEWAYS = (("fengshou", "xiba"), ("wanda", "wanda_lot"))
SETTINGS = {"poll_s": 1.0, "health_every_s": 2.0, "ack_timeout_s": 5.0}
SPEED = 10.0  # the car park's traffic at 10x: a few device messages a second
# The site broker keeps what devices sent while a gateway is away: more than the
# default 1,000 queued messages per session.
SITE_BROKER_OPTIONS = "allow_anonymous true\nmax_queued_messages 100000\n"
Key = tuple[str, str, int]  # asset, signal, ts_ms


@dataclass
class Process:
    """One of our own commands run as a child process; its output appended to a log."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def facility(*args: str) -> list[str]:
    return [sys.executable, "-m", "wiring.cli", *args]


@dataclass
class Event:
    at_s: float
    action: str  # kill, start, freeze, thaw, stop
    target: str

    def __str__(self) -> str:
        return f"{self.at_s:6.1f} s  {self.action:<6} {self.target}"


KILLABLE = ("gateway xiba", "gateway wanda_lot", "ingest", "influxd", "simulator")
FREEZABLE = ("gateway xiba", "gateway wanda_lot", "ingest", "influxd")


def chaos_schedule(seed: int, length_s: float, outage_s: float) -> list[Event]:
    """kill -9 / SIGSTOP and the way back, never two at once on one target; the central
    broker is killed for outage_s; the site broker is stopped once (cleanly: Mosquitto
    writes what it holds for absent sessions only when it shuts down, and devices'
    messages it accepted are part of our record)."""
    rng = random.Random(seed)
    events: list[Event] = []
    busy: dict[str, float] = {}

    def window(at: float, down: float, action: str, undo: str, target: str) -> None:
        events.extend([Event(at, action, target), Event(at + down, undo, target)])
        busy[target] = at + down + 1.0

    outage = rng.uniform(0.15, 0.35) * length_s
    window(outage, outage_s, "kill", "start", "central broker")
    window(rng.uniform(0.55, 0.7) * length_s, rng.uniform(2, 5), "stop", "start", "site broker")
    at = 1.0
    while at < length_s - 4.0:
        if rng.random() < 0.5:
            target, action, undo = rng.choice(KILLABLE), "kill", "start"
        else:
            target, action, undo = rng.choice(FREEZABLE), "freeze", "thaw"
        down = rng.uniform(0.3, 3.0)
        # Xiba's gateway runs through the outage: its outbox fills, and our record with it.
        in_outage = target == "gateway xiba" and at < outage + outage_s and at + down > outage
        if busy.get(target, 0.0) <= at and not in_outage:
            window(at, down, action, undo, target)
        at += rng.uniform(0.5, 3.0)
    return sorted(events, key=lambda e: e.at_s)


@dataclass
class DeviceRecord:
    """Our own QoS 1 subscriber on the device topics: what the devices sent."""

    port: int
    messages: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier="chaos-record", clean_session=False
                ) as client:
                    await client.subscribe("parking/#", qos=1)
                    async for message in client.messages:
                        body = json.loads(message.payload)
                        self.messages.append((time.time(), str(message.topic), body))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)


def expected_from_devices(messages: list[tuple[float, str, dict[str, Any]]]) -> dict[Key, object]:
    """The points the device messages must become, read from the JSON by hand (not with
    the gateway's mapper), for one field of each topic and the gate passages."""
    out: dict[Key, object] = {}
    for _, topic, body in messages:
        _, _, asset, leaf = topic.split("/")
        ts = int(body["ts"])
        if leaf == "event":
            out[(asset, "passage", ts)] = 1 if body["direction"] == "in" else -1
        elif leaf == "state":
            out[(asset, "vehicles_in_total", ts)] = body["count_in"]
            out[(asset, "barrier_open", ts)] = body["barrier"] == "open"
        elif leaf == "occupancy":
            out[(asset, "occupied", ts)] = body["occupied"]
        elif leaf == "heartbeat":
            out[(asset, "uptime_s", ts)] = body["uptime_s"]
    return out


MQTT_FIELDS = frozenset(("passage", "vehicles_in_total", "barrier_open", "occupied", "uptime_s"))


def outbox_contents(path: Path) -> dict[Key, object]:
    """Every value reading the outbox holds now, read-only beside the writing gateway."""
    if not path.exists():
        return {}
    out: dict[Key, object] = {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        for (body,) in db.execute("SELECT body FROM chunk"):
            text = zlib.decompress(body).decode() if isinstance(body, bytes) else body
            for line in text.split("\n"):
                kind, asset, signal_name, ts, value, _ = json.loads(line)
                if kind == "v" and value is not None:
                    out[(asset, signal_name, ts)] = value
    except sqlite3.OperationalError:  # created but not yet initialised by the gateway
        pass
    finally:
        db.close()
    return out


def backlog_before(path: Path, ts_ms: int) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        (count,) = db.execute(
            "SELECT COALESCE(SUM(count), 0) FROM chunk WHERE oldest_ts < ?", (ts_ms,)
        ).fetchone()
    finally:
        db.close()
    return int(count)


@dataclass
class Rig:
    """Every process of the data path, started, signalled and restarted by name."""

    workdir: Path
    config: SiteConfig
    site_broker: Mosquitto = field(init=False)
    central_broker: Mosquitto = field(init=False)
    influxd: InfluxDB = field(init=False)
    processes: dict[str, Process] = field(default_factory=dict)
    timeline: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        w = self.workdir
        self.site_broker = Mosquitto(w / "site-broker", listener_options=SITE_BROKER_OPTIONS)
        self.central_broker = Mosquitto(w / "central-broker")
        self.influxd = InfluxDB(w / "influxd")
        site_dir = write_site(self.config, w / "site")
        site_port, central = self.site_broker.port, self.central_broker.port
        for site, station in GATEWAYS:
            self.processes[f"gateway {station}"] = Process(
                f"gateway {station}",
                facility(
                    "gateway", "run", "--site", str(site_dir), "--gateway", f"{site}/{station}",
                    "--data-dir", str(w / "outboxes"), "--uplink", f"127.0.0.1:{central}",
                    "--devices-broker", f"127.0.0.1:{site_port}",
                ),
                w / f"gateway-{station}.log",
            )  # fmt: skip
        ingest_config = write_ingest_config(
            w / "ingest", central, self.influxd.url, site_dir=site_dir
        )
        self.processes["ingest"] = Process(
            "ingest", facility("ingest", "run", "--config", str(ingest_config)), w / "ingest.log"
        )
        self.processes["simulator"] = Process(
            "simulator",
            facility(
                "simulate", str(site_dir), "--speed", str(SPEED), "--device-clock", "real",
                "--plain", "--broker", f"127.0.0.1:{site_port}",
            ),
            w / "simulator.log",
        )  # fmt: skip

    def outbox(self, site: str, station: str) -> Path:
        return self.workdir / "outboxes" / f"{site}-{station}.outbox.sqlite"

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.t0:6.1f} s  {what}"
        self.timeline.append(line)
        print(line, flush=True)

    async def start_servers(self) -> None:
        for broker in (self.site_broker, self.central_broker):
            broker.workdir.mkdir(parents=True, exist_ok=True)
            broker.start()
        await asyncio.to_thread(self.influxd.start)
        writer = InfluxV1Writer(self.influxd.url, DB)
        await writer.create_database(DB)
        await writer.close()

    async def act(self, action: str, target: str) -> None:
        self.note(f"{action} {target}")
        if target == "central broker" or target == "site broker":
            broker = self.central_broker if target == "central broker" else self.site_broker
            what = {"kill": broker.kill, "stop": broker.stop, "start": broker.start}[action]
            await asyncio.to_thread(what)
        elif target == "influxd":
            await self._server_act(action)
        else:
            process = self.processes[target]
            if action == "kill":
                process.kill()
            elif action == "start":
                process.start()
            else:
                process.signal(signal.SIGSTOP if action == "freeze" else signal.SIGCONT)

    async def _server_act(self, action: str) -> None:
        proc = self.influxd.proc
        if action == "kill":
            await asyncio.to_thread(self.influxd.kill)
        elif action == "start":
            await asyncio.to_thread(self.influxd.start)
        elif proc is not None:
            proc.send_signal(signal.SIGSTOP if action == "freeze" else signal.SIGCONT)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.stop()
        for broker in (self.site_broker, self.central_broker):
            with contextlib.suppress(Exception):
                broker.stop()
        if self.influxd.proc is not None:
            self.influxd.proc.send_signal(signal.SIGCONT)
        with contextlib.suppress(Exception):
            self.influxd.stop()


def chaos_config(demo_config: SiteConfig) -> SiteConfig:
    """Xiba (Modbus) and the Wanda car park (MQTT), each bus on a port of its own."""
    sites = []
    for site_id, station_id in GATEWAYS:
        site = one_station(demo_config, site_id, station_id, **SETTINGS).sites[0]
        stations = [
            st.model_copy(
                update={"buses": [b.model_copy(update={"port": free_port()}) for b in st.buses]}
            )
            for st in site.stations
        ]
        sites.append(site.model_copy(update={"stations": stations}))
    return dataclasses.replace(demo_config, sites=sites)


async def devices_connected(broker: Mosquitto, timeout_s: float = 60.0) -> None:
    """Both gateways hold their device sessions before any device speaks."""
    log = broker.workdir / "mosquitto.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if " as facility-gw-devices-wanda-wanda_lot " in text:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the car park's gateway never connected to the site broker")


async def run_chaos(
    demo_config: SiteConfig, workdir: Path, length_s: float, outage_s: float
) -> None:
    seed = int(os.environ.get("FACILITY_CHAOS_SEED", random.randrange(1_000_000)))
    events = chaos_schedule(seed, length_s, outage_s)
    print(f"\nchaos seed {seed} (FACILITY_CHAOS_SEED={seed} replays it); schedule:")
    for event in events:
        print(f"  {event}")
    rig = Rig(workdir, chaos_config(demo_config))
    record = DeviceRecord(rig.site_broker.port)
    modbus: dict[Key, object] = {}
    xiba_outbox = rig.outbox("fengshou", "xiba")

    def snapshot() -> None:
        modbus.update(outbox_contents(xiba_outbox))

    await rig.start_servers()
    recording = asyncio.create_task(record.run())
    snapshots = asyncio.create_task(every(0.5, snapshot))
    try:
        started_ms = now_ms()
        for name in ("ingest", "gateway xiba", "gateway wanda_lot"):
            rig.processes[name].start()
        await devices_connected(rig.site_broker)
        rig.processes["simulator"].start()
        writer = InfluxV1Writer(rig.influxd.url, DB)
        try:  # everything up and delivering before the chaos
            assert await until_delivering(writer, record, started_ms, 60.0), "never delivered"
        finally:
            await writer.close()
        rig.note(f"chaos starts (seed {seed})")
        started = time.monotonic()
        for event in events:
            await asyncio.sleep(max(0.0, started + event.at_s - time.monotonic()))
            if event.target == "gateway xiba" and event.action in ("kill", "freeze"):
                snapshot()  # what is at stake at the kill
            await rig.act(event.action, event.target)
        end_ms = now_ms()
        rig.note("chaos over: everything runs; waiting for the backlog to drain")
        # The devices' messages are published in order from one queue: once one stamped
        # after the end has reached our record, every earlier one still queued has too.
        await devices_published_past(record, end_ms, 30.0)
        acquired_mqtt = {
            k: v for k, v in expected_from_devices(record.messages).items() if k[2] < end_ms
        }
        snapshot()
        acquired_modbus = {k: v for k, v in modbus.items() if k[2] < end_ms}
        writer = InfluxV1Writer(rig.influxd.url, DB)
        try:

            def backlog() -> dict[str, int]:
                return {
                    station: backlog_before(rig.outbox(site, station), end_ms)
                    for site, station in GATEWAYS
                }

            missing = await until_stored(writer, acquired_mqtt, acquired_modbus, 120.0)
            deadline = time.monotonic() + 30.0
            while any((drained := backlog()).values()) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)  # the last acks on their way
            car_park = await stored_readings(writer, "wanda_lot")
            again = await until_delivering(writer, record, end_ms, 30.0)
        finally:
            await writer.close()
        rig.note("checked")
    finally:
        snapshots.cancel()
        recording.cancel()
        rig.stop_all()
    extra = {
        k for k in car_park if k[1] in MQTT_FIELDS and k[2] < end_ms and k not in acquired_mqtt
    }
    print(
        f"chaos seed {seed}: {len(events)} events; {len(record.messages)} device messages "
        f"-> {len(acquired_mqtt)} MQTT points, {len(acquired_modbus)} Modbus readings "
        f"from the outbox; missing {len(missing)}, extra {len(extra)}, backlog {drained}"
    )
    print("timeline:\n  " + "\n  ".join(rig.timeline))
    assert acquired_mqtt and acquired_modbus, "the chaos run acquired readings"
    assert not missing, f"{len(missing)} acquired readings never landed, e.g. {missing[:5]}"
    assert not extra, (
        f"{len(extra)} car-park points nobody sent (twice stored?): {sorted(extra)[:5]}"
    )
    assert drained == {station: 0 for _, station in GATEWAYS}, f"outboxes not drained: {drained}"
    assert again, "a gateway, the ingest or the devices did not deliver again after the chaos"


async def every(period_s: float, work: Callable[[], None]) -> None:
    while True:
        with contextlib.suppress(sqlite3.Error):
            work()
        await asyncio.sleep(period_s)


async def delivering(writer: InfluxV1Writer, record: DeviceRecord, since_ms: int) -> bool:
    """Each gateway's health reached InfluxDB since then, and the devices (the simulator,
    maybe just restarted) publish again."""
    latest = await latest_health(writer)
    fresh = all(latest.get(station, 0) > since_ms for _, station in GATEWAYS)
    return fresh and bool(record.messages) and record.messages[-1][0] * 1000 > since_ms


async def until_delivering(
    writer: InfluxV1Writer, record: DeviceRecord, since_ms: int, timeout_s: float
) -> bool:
    deadline = time.monotonic() + timeout_s
    while not (again := await delivering(writer, record, since_ms)):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    return again


async def devices_published_past(record: DeviceRecord, end_ms: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(int(body["ts"]) > end_ms for _, _, body in record.messages[-50:]):
        assert time.monotonic() < deadline, f"no device message after the chaos in {timeout_s} s"
        await asyncio.sleep(0.1)


async def until_stored(
    writer: InfluxV1Writer,
    mqtt: dict[Key, object],
    modbus: dict[Key, object],
    timeout_s: float,
) -> list[tuple[Key, object, object]]:
    """Wait until InfluxDB holds every acquired reading with its value; what is still
    missing (or different) at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        wrong: list[tuple[Key, object, object]] = []
        for station, wanted in (("wanda_lot", mqtt), ("xiba", modbus)):
            stored = await stored_readings(writer, station)
            wrong += [(k, v, stored.get(k)) for k, v in wanted.items() if stored.get(k) != v]
        if not wrong or time.monotonic() > deadline:
            return wrong
        await asyncio.sleep(0.5)


async def latest_health(writer: InfluxV1Writer) -> dict[str, int]:
    answer = await writer.query(
        'SELECT last("outbox_readings") FROM "gateway_health" GROUP BY "station"'
    )
    return {
        s["tags"]["station"]: int(s["values"][0][0]) for s in answer["results"][0].get("series", [])
    }


@pytest.mark.soak
@pytest.mark.timeout(1800)
async def test_chaos_soak_every_acquired_reading_lands_exactly_once(
    demo_config: SiteConfig, tmp_path: Path
) -> None:
    """Ten minutes of chaos with a two-minute central broker outage."""
    await run_chaos(demo_config, tmp_path, length_s=600.0, outage_s=120.0)


async def test_chaos_short_every_acquired_reading_lands_exactly_once(
    demo_config: SiteConfig, tmp_path: Path
) -> None:
    """The same in 25 s with a 6 s central broker outage (the default suite's variant)."""
    await run_chaos(demo_config, tmp_path, length_s=25.0, outage_s=6.0)
