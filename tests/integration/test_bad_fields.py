"""One bad field spoils only itself: a point (one asset at one instant) with a field line
protocol cannot carry (an integer of 2^63 or more, as an unscaled uint64 register
reads; a string with a lone surrogate) is stored with its other fields, and only the bad
readings go to the dead letters, each with its own reason. Real broker, real InfluxDB."""

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
from tests.integration._ingest import ingest_into_influx
from tests.services import Mosquitto
from wiring.services import InfluxDB

NOW_MS = now_ms()


def _batch(rows: list[Any]) -> bytes:
    body = {"v": 1, "site": "fengshou", "station": "xiba", "boot": 1, "seq": 1}
    body |= {"lane": "live", "sent_ms": NOW_MS, "r": rows}
    return zlib.compress(json.dumps(body).encode())  # json escapes a lone surrogate


async def test_a_point_keeps_its_good_fields_when_one_cannot_be_stored(
    demo_config: SiteConfig, mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    dead = DeadLetters(tmp_path / "dead.sqlite")
    writer, receiver = await ingest_into_influx(demo_config, mosquitto.port, influxdb.url, dead)
    t1, t2 = NOW_MS - 1000, NOW_MS
    rows = [
        ["v", "pump_1", "flow_m3h", t1, 301.25, "g"],
        ["v", "pump_1", "starts", t1, 2**63, "g"],  # an unscaled uint64 past int64
        ["v", "pump_1", "running", t1, True, "g"],
        ["v", "pump_1", "flow_m3h", t2, 302.5, "g"],
        ["v", "pump_1", "drive_model", t2, "ACS\ud800580", "g"],  # lone surrogate
        ["v", "pump_1", "starts", t2, 2**64 - 1, "g"],
        ["v", "pump_1", "fault_code", t2, 3, "g"],
    ]
    await receiver.start()
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as gateway:
            await gateway.publish(topic("fengshou", "xiba", "up"), _batch(rows), qos=1)
        for _ in range(200):
            if receiver.batches:
                break
            await asyncio.sleep(0.05)
        answer = await writer.query(
            'SELECT "flow_m3h", "running", "fault_code", "starts", "drive_model" FROM "pump"'
        )
    finally:
        await receiver.stop()
        await writer.close()
    assert receiver.batches == 1
    assert answer["results"][0]["series"][0]["values"] == [
        [t1, 301.25, True, None, None, None],
        [t2, 302.5, None, 3, None, None],
    ]
    letters = sorted(dead.latest(), key=lambda d: d.id)
    assert [d.kind for d in letters] == [LetterKind.ROW] * 3
    assert [d.row()[2:5] for d in letters] == [
        ["starts", t1, 2**63],
        ["drive_model", t2, "ACS\ud800580"],
        ["starts", t2, 2**64 - 1],
    ]
    assert "does not fit an int64" in letters[0].reason
    assert "not valid Unicode" in letters[1].reason
    dead.close()
