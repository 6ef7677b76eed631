"""MQTT device messages that waited at the broker reach InfluxDB, every one: a burst never
collapses onto one timestamp, and a gateway killed right after it reconnects loses none
(it acknowledges a message only once its readings are in the outbox). Real Mosquitto,
real gateway processes, the ingest's receiver and store, a real InfluxDB."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import string
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.wire import Reading
from gateway.daemon import Gateway
from gateway.outbox import Outbox, OutboxDiskFull
from ingest.deadletters import DeadLetters
from ingest.influx import InfluxV1Writer
from ingest.receiver import Receiver
from ingest.store import InfluxStore
from ingest.validate import Validator
from tests.conftest import DEMO_SITE
from tests.integration._gateway import gateway_for, gateway_process, one_station
from tests.services import Mosquitto
from wiring.services import InfluxDB, free_port

DB = "facility"
SITE, STATION = "wanda", "wanda_lot"
DEVICES_CLIENT = f"facility-gw-devices-{SITE}-{STATION}"

Message = tuple[str, dict[str, Any]]
Popen = subprocess.Popen[bytes]


def passages(count: int, gate: str = "main_gate", base_ms: int | None = None) -> list[Message]:
    """A gate's passages, published back to back, each with its own millisecond."""
    base = base_ms if base_ms is not None else now_ms() - 60_000
    return [
        (
            f"parking/{SITE}/{gate}/event",
            {"ts": base + i, "direction": "in" if i % 3 else "out", "plate": f"T{i:04d}"},
        )
        for i in range(count)
    ]


def counts_without_clock(count: int) -> list[Message]:
    """Occupancy messages from a counter whose clock field is missing: the gateway stamps."""
    return [
        (
            f"parking/{SITE}/lot/occupancy",
            {"occupied": i % 400, "capacity": 453, "free": 453 - i % 400, "full": False},
        )
        for i in range(count)
    ]


async def publish(port: int, messages: list[Message]) -> None:
    """As the devices do: QoS 1, each one acknowledged by the broker before the next."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="test-devices") as client:
        for topic, body in messages:
            await client.publish(topic, json.dumps(body), qos=1)


@asynccontextmanager
async def ingest(
    config: SiteConfig, port: int, influxdb: InfluxDB, folder: Path
) -> AsyncIterator[InfluxV1Writer]:
    """The ingest's receiver and store in front of a real InfluxDB."""
    writer = InfluxV1Writer(influxdb.url, DB, max_retries=1, backoff_cap_s=0.2)
    await writer.create_database(DB)
    store = InfluxStore(Validator(config), writer, DeadLetters(folder / "dead.sqlite"))
    receiver = Receiver("127.0.0.1", port, store, client_id="ingest-test")
    await receiver.start()
    try:
        yield writer
    finally:
        await receiver.stop()
        await writer.close()


async def count(writer: InfluxV1Writer, measurement: str, field: str, asset: str) -> int:
    answer = await writer.query(
        f'SELECT count("{field}") FROM "{measurement}" WHERE "asset" = \'{asset}\''
    )
    series = answer["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.3)
    return await check()


async def test_a_thousand_messages_queued_while_the_gateway_was_down_become_a_thousand_points(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
) -> None:
    """500 passages with the gate's own ms timestamps and 500 counts without one (stamped
    by the gateway, strictly increasing), all handed over in one burst on restart."""
    config = one_station(demo_config, SITE, STATION)
    first = gateway_for(config, SITE, STATION, tmp_path / "gw", mosquitto.port)
    first.start()  # makes the persistent subscription, then goes away
    assert first.mqtt is not None
    async with asyncio.timeout(10):
        while not first.mqtt.connected:
            await asyncio.sleep(0.05)
    await first.stop()
    sent = passages(500)
    await publish(mosquitto.port, sent + counts_without_clock(500))
    async with ingest(demo_config, mosquitto.port, influxdb, tmp_path) as writer:
        gateway = gateway_for(config, SITE, STATION, tmp_path / "gw", mosquitto.port)
        gateway.start()
        try:

            async def all_stored() -> bool:
                stored = await count(writer, "barrier_gate", "passage", "main_gate")
                return (
                    stored >= 500 and await count(writer, "parking_lot", "occupied", "lot") >= 500
                )

            await until(all_stored, 60)
            restamped = gateway.mqtt.restamped if gateway.mqtt else 0
        finally:
            await gateway.stop()
        stored_passages = await count(writer, "barrier_gate", "passage", "main_gate")
        stored_counts = await count(writer, "parking_lot", "occupied", "lot")
        answer = await writer.query(
            'SELECT "passage" FROM "barrier_gate" WHERE "asset" = \'main_gate\''
        )
    assert stored_passages == 500, f"{500 - stored_passages} of 500 passages lost"
    assert stored_counts == 500, f"{500 - stored_counts} of 500 gateway-stamped counts lost"
    stamps = [row[0] for row in answer["results"][0]["series"][0]["values"]]
    assert stamps == [body["ts"] for _, body in sent], "passages keep the gate's timestamps"
    assert restamped == 500, "the counter's messages were stamped on receipt, and counted"


def start_gateway(data_dir: Path, port: int, env: dict[str, str] | None = None) -> Popen:
    """Wanda's gateway as its own process, devices and uplink on the test broker."""
    return gateway_process(
        DEMO_SITE,
        f"{SITE}/{STATION}",
        data_dir,
        f"127.0.0.1:{port}",
        "--devices-broker",
        f"127.0.0.1:{port}",
        "--log-json",
        stderr=subprocess.DEVNULL,
        env=env,
    )


def sessions_opened(broker: Mosquitto) -> int:
    """How often the gateway's device client has connected, from the broker's own log."""
    log = broker.workdir / "mosquitto.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count(f" as {DEVICES_CLIENT} ")


async def reconnected(broker: Mosquitto, before: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sessions_opened(broker) <= before:
        if time.monotonic() > deadline:
            raise AssertionError("the gateway's device client never connected")
        await asyncio.sleep(0.002)


KILL_DELAYS_S = (0.0, 0.03, 0.1, 0.25)


async def kill_after_reconnects(
    broker: Mosquitto,
    data_dir: Path,
    delays: tuple[float, ...],
    stored: Callable[[], Awaitable[int]] | None = None,
    env: dict[str, str] | None = None,
) -> list[int]:
    """Start the gateway and kill -9 it at each delay after its device client connects;
    returns how many are stored after each kill (once the ingest has caught up)."""
    progress = []
    for delay in delays:
        before = sessions_opened(broker)
        proc = start_gateway(data_dir, broker.port, env)
        try:
            await reconnected(broker, before)
            await asyncio.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        if stored is not None:
            await asyncio.sleep(0.5)  # what was sent before the kill reaches InfluxDB
            progress.append(await stored())
    return progress


async def test_kill_9_right_after_a_reconnect_loses_no_queued_message(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
) -> None:
    """200 passages wait at the broker; the gateway is killed -9 at several delays after
    its device client reconnects, then started for good: all 200 are in InfluxDB."""
    data_dir = tmp_path / "gw"
    await open_session(mosquitto.port)
    await publish(mosquitto.port, passages(200))
    async with ingest(demo_config, mosquitto.port, influxdb, tmp_path) as writer:

        async def stored() -> int:
            return await count(writer, "barrier_gate", "passage", "main_gate")

        progress = await kill_after_reconnects(mosquitto, data_dir, KILL_DELAYS_S, stored)
        print(f"stored after kills at {KILL_DELAYS_S} s after reconnecting: {progress}")
        before = sessions_opened(mosquitto)
        proc = start_gateway(data_dir, mosquitto.port)
        try:
            await reconnected(mosquitto, before)
            await until(lambda: _reached(stored(), 200), 30)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        total = await stored()
    assert progress[0] < 200, "the first kill came before the backlog was through"
    assert total == 200, f"{200 - total} of 200 queued passages lost"


async def open_session(port: int) -> None:
    """The gateway's persistent device session, as its first start would leave it."""
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=DEVICES_CLIENT, clean_session=False
    ) as client:
        await client.subscribe(f"parking/{SITE}/main_gate/event", qos=1)


async def _reached(counting: Awaitable[int], target: int) -> bool:
    return await counting >= target


async def test_a_message_the_full_outbox_cannot_take_stays_with_the_broker(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    """A real SQLITE_FULL (the outbox capped at a few pages): passages published then are
    not acknowledged; once acks free space, the broker hands them over and they are kept.
    The uplink points at a closed port, so only the test empties the outbox."""
    config = one_station(demo_config, SITE, STATION, health_every_s=3600.0)
    gateway = Gateway(
        config,
        SITE,
        STATION,
        tmp_path / "gw",
        uplink_address=("127.0.0.1", free_port()),
        devices_address=("127.0.0.1", mosquitto.port),
    )
    gateway.outbox.close()
    gateway.outbox = Outbox(gateway.outbox_path, max_pages=24)
    gateway.uplink.outbox = gateway.outbox
    rnd = random.Random(1)
    for size in (3000, 300, 10):  # incompressible filler until not even a small one fits
        with contextlib.suppress(OutboxDiskFull):
            for n in range(10_000):
                noise = "".join(rnd.choices(string.ascii_letters, k=size))
                gateway.outbox.put([Reading("filler", "text", n, noise)])
    sent = passages(5)
    gateway.start()
    try:
        async with asyncio.timeout(10):
            while gateway.mqtt is None or not gateway.mqtt.connected:
                await asyncio.sleep(0.05)
        await publish(mosquitto.port, sent)
        async with asyncio.timeout(10):
            while "outbox did not take" not in gateway.mqtt.connect_error:
                await asyncio.sleep(0.05)
        assert not kept_passages(gateway.outbox)
        lease = gateway.outbox.take("backfill", 10, 0)  # the ingest acknowledges some
        assert lease is not None
        gateway.outbox.ack(lease.lease_id)
        async with asyncio.timeout(30):  # the subscriber's back-off, then the redelivery
            while len(kept_passages(gateway.outbox)) < 5:
                await asyncio.sleep(0.2)
    finally:
        await gateway.stop(grace_s=0.1)
    outbox = Outbox(gateway.outbox_path)
    try:
        assert kept_passages(outbox) == {body["ts"] for _, body in sent}
    finally:
        outbox.close()


def kept_passages(outbox: Outbox) -> set[int]:
    """The passages' timestamps the outbox holds (leases given back at once)."""
    stamps = set()
    leases = []
    while (lease := outbox.take("backfill", 100_000, 0)) is not None:
        leases.append(lease)
        for row in lease.rows_json:
            _, asset, signal_name, ts, _, _ = json.loads(row)
            if (asset, signal_name) == ("main_gate", "passage"):
                stamps.add(ts)
    for lease in leases:
        outbox.release(lease.lease_id)
    return stamps
