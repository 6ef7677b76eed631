"""JSON that Python's parser refuses in other ways than syntax: nesting deeper than the
interpreter's recursion limit (RecursionError), integers past int_max_str_digits
(ValueError), 1e400 where an integer belongs (inf, OverflowError on int()). At each of
the three places that parse what others send (the gateway's device subscriber, its ack
reader and the ingest's batch decoder), through a real Mosquitto: refused with a reason,
counted, no task restarted, and good messages sent right after all arrive."""

from __future__ import annotations

import asyncio
import json
import zlib
from pathlib import Path
from typing import Any

import aiomqtt

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.wire import topic
from ingest.deadletters import DeadLetters, LetterKind
from tests.integration._gateway import Recorder, gateway_for, one_station
from tests.integration._ingest import ingest_into_influx
from tests.receiver import Receiver as TestReceiver
from tests.services import Mosquitto
from wiring.services import InfluxDB

DEEP = b"[" * 60_000 + b"]" * 60_000
DIGITS = "7" * 5_000
NOW_MS = now_ms()


def device_payloads() -> list[bytes]:
    """Each one of the ways, inside a message of the lot counter's shape."""
    return [
        DEEP[:30_000] + DEEP[-30_000:],
        b'{"occupied": ' + DIGITS.encode() + b"}",
        b'{"occupied": 1e400}',
        b'{"occupied": ' + b"9" * 4_000 + b"}",  # parses, but overflows a float
        b'{"occupied": -1e400, "capacity": 1e400}',
        b'{"occupied": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    ]


async def test_device_subscriber_refuses_unparseable_json_and_takes_the_next_message(
    demo_config: SiteConfig, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = one_station(demo_config, "wanda", "wanda_lot")
    gateway = gateway_for(config, "wanda", "wanda_lot", tmp_path, mosquitto.port)
    recorder = Recorder(gateway)
    ingest = TestReceiver(mosquitto.port)
    await ingest.start()
    gateway.start()
    assert gateway.mqtt is not None
    hostile = device_payloads()
    try:
        await ingest.wait_for(lambda: gateway.mqtt is not None and gateway.mqtt.connected)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
            for payload in hostile:
                await device.publish("parking/wanda/lot/occupancy", payload, qos=1)
            for count in range(1, 21):
                good = {"occupied": count, "capacity": 453, "free": 453 - count}
                await device.publish("parking/wanda/lot/occupancy", json.dumps(good), qos=1)
        await ingest.wait_for(
            lambda: sum(1 for r in recorder.readings if r.signal == "occupied") >= 20
        )
        # Delivered upstream too (readings stamped in one ms share a key until the
        # gateway stamps them apart: the last value is the one that must be there).
        await ingest.wait_for(
            lambda: any(k[3] == "occupied" and v == 20 for k, v in ingest.values.items())
        )
    finally:
        await gateway.stop()
        await ingest.stop()
    counts = sorted(int(str(r.value)) for r in recorder.readings if r.signal == "occupied")
    assert counts == list(range(1, 21))
    assert sum(gateway.mqtt.rejected.values()) == len(hostile)
    assert gateway.mqtt.rejected["not JSON"] == 3
    assert gateway.mqtt.rejected["occupied: not a finite number"] == 3
    assert gateway.counters.task_restarts == 0


async def test_ack_reader_ignores_unparseable_acks_and_keeps_delivering(
    demo_config: SiteConfig, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = one_station(demo_config, "wanda", "wanda_lot")
    gateway = gateway_for(config, "wanda", "wanda_lot", tmp_path, mosquitto.port)
    ingest = TestReceiver(mosquitto.port)
    await ingest.start()
    gateway.start()
    acks = [
        DEEP,
        b'{"v": 1, "boot": ' + DIGITS.encode() + b', "seq": 1}',
        b'{"v": 1, "boot": 1e400, "seq": 1}',
        json.dumps({"v": 1, "boot": gateway.uplink.boot, "seq": 1e400}).encode(),
        json.dumps({"v": 1, "boot": gateway.uplink.boot, "seq": 1, "stored": "x" * 9}).encode(),
        b"\xff\xfe not utf-8",
    ]
    try:
        await ingest.wait_for(lambda: gateway.uplink.stats.batches_acked >= 1)
        connects = gateway.uplink.stats.connects
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as intruder:
            for payload in acks:
                await intruder.publish(topic("wanda", "wanda_lot", "ack"), payload, qos=1)
        await ingest.wait_for(lambda: gateway.uplink.stats.acks_malformed == len(acks))
        acked = gateway.uplink.stats.batches_acked
        await ingest.wait_for(lambda: gateway.uplink.stats.batches_acked >= acked + 2)
    finally:
        await gateway.stop()
        await ingest.stop()
    assert gateway.uplink.stats.connects == connects, "the uplink session was restarted"
    assert gateway.counters.task_restarts == 0


def _batch(rows_json: bytes, **envelope: Any) -> bytes:
    head = {"v": 1, "site": "fengshou", "station": "xiba", "boot": 1, "seq": 1}
    head.update({"lane": "live", "sent_ms": NOW_MS}, **envelope)
    text = json.dumps(head)[:-1].encode() + b', "r": ' + rows_json + b"}"
    return zlib.compress(text)


async def test_ingest_keeps_unparseable_batches_as_dead_letters_and_stores_the_next(
    demo_config: SiteConfig, mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    dead = DeadLetters(tmp_path / "dead.sqlite")
    writer, receiver = await ingest_into_influx(demo_config, mosquitto.port, influxdb.url, dead)
    hostile = [
        (_batch(DEEP), "nested too deep"),
        (_batch(b'[["v", "pump_1", "flow_m3h", ' + DIGITS.encode() + b', 1.0, "g"]]'), "digits"),
        (_batch(b"[]", boot=float("inf")), "field 'boot'"),
        (
            zlib.compress(b'{"v": 1, "seq": 1e400, "r": ' + DEEP[:20_000] + DEEP[-20_000:] + b"}"),
            "nested too deep",
        ),
        (_batch(b'[["v", "pump_1", "flow_m3h", 1e400, 1.0, "g"]]'), ""),  # a bad row, kept
    ]
    good = [
        _batch(
            json.dumps([["v", "pump_1", "flow_m3h", NOW_MS + i, 10.0 + i, "g"]]).encode(),
            seq=10 + i,
        )
        for i in range(5)
    ]
    await receiver.start()
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as gateway:
            for payload, _ in hostile:
                await gateway.publish(topic("fengshou", "xiba", "up"), payload, qos=1)
            for payload in good:
                await gateway.publish(topic("fengshou", "xiba", "up"), payload, qos=1)
        async with asyncio.timeout(20):
            while receiver.batches < len(good) + 1:
                await asyncio.sleep(0.05)
        stored = await writer.query('SELECT "flow_m3h" FROM "pump"')
        assert receiver.connected and receiver._task is not None and not receiver._task.done()
    finally:
        await receiver.stop()
        await writer.close()
    assert [v for _, v in stored["results"][0]["series"][0]["values"]] == [
        10.0 + i for i in range(5)
    ]
    letters = list(reversed(dead.latest()))
    batches = [d for d in letters if d.kind is LetterKind.BATCH]
    assert [d.payload() for d in batches] == [p for p, why in hostile if why]
    for letter, (_, why) in zip(batches, [h for h in hostile if h[1]], strict=True):
        assert why in letter.reason, letter.reason
        assert len(letter.reason) < 300
    [row] = [d for d in letters if d.kind is LetterKind.ROW]
    assert "ts_ms must be an integer" in row.reason
    assert sum(receiver.malformed.values()) == 4
    dead.close()
