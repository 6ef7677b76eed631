"""Bad input is cheap, through a real Mosquitto: 2,000 distinct bad device messages of
30 kB cost the gateway a few log lines and one counter entry (it used to log each in
full and keep each reason: 1,500 messages of 60 kB grew it by 100 MB and its log by
90 MB; bench/bench_deadletters.py measures the memory), and a refused batch of 30,000
rows at an ingest whose dead-letter store is nearly full is acknowledged, keeps what
fits, counts and logs what it drops, and the next batch lands."""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from pathlib import Path

import aiomqtt
import pytest

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.wire import topic
from ingest.deadletters import DeadLetters
from tests.integration._gateway import gateway_for, one_station, recorded
from tests.integration._ingest import ingest_into_influx
from tests.services import Mosquitto
from wiring.services import InfluxDB

NOW_MS = now_ms()


async def test_a_flood_of_distinct_bad_device_messages_costs_a_few_log_lines(
    demo_config: SiteConfig, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = one_station(demo_config, "wanda", "wanda_lot")
    gateway = gateway_for(config, "wanda", "wanda_lot", tmp_path, mosquitto.port)
    recorder = recorded(gateway)
    assert gateway.mqtt is not None
    filler = "x" * 30_000
    try:
        with caplog.at_level(logging.WARNING, "gateway.mqtt_devices.subscriber"):
            async with asyncio.timeout(10):
                while not gateway.mqtt.connected:
                    await asyncio.sleep(0.05)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
                for i in range(2_000):
                    bad = json.dumps({"barrier": f"{i}{filler}"})
                    await device.publish("parking/wanda/main_gate/state", bad, qos=0)
                good = {"barrier": "open", "fault": False, "fault_code": 0}
                await device.publish("parking/wanda/main_gate/state", json.dumps(good), qos=1)
            async with asyncio.timeout(30):
                while not any(r.signal == "barrier_open" for r in recorder.readings):
                    await asyncio.sleep(0.05)
    finally:
        await gateway.stop(grace_s=0.0)  # no ingest acks: a grace would be waited out whole
    refusals = [r.getMessage() for r in caplog.records if "rejected message" in r.getMessage()]
    assert 1 <= len(refusals) <= 3
    assert sum(len(m) for m in refusals) < 1_000
    assert list(gateway.mqtt.rejected) == ["barrier_open: not one of ['closed', 'open']"]
    assert 1_000 <= gateway.mqtt.rejected.most_common(1)[0][1] <= 2_000  # qos 0: most arrive
    assert gateway.counters.task_restarts == 0


def _batch(rows: list[list[object]], seq: int) -> bytes:
    body = {"v": 1, "site": "fengshou", "station": "xiba", "boot": 1, "seq": seq}
    body |= {"lane": "backfill", "sent_ms": NOW_MS, "r": rows}
    return zlib.compress(json.dumps(body).encode())


async def test_a_huge_refused_batch_at_a_nearly_full_store_is_acked_and_counted(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = DeadLetters(tmp_path / "dead.sqlite", max_bytes=1_000_000)
    writer, receiver = await ingest_into_influx(demo_config, mosquitto.port, influxdb.url, dead)
    ghost = [["v", "pump_9", "flow_m3h", NOW_MS - 30_000 + i, 1.0, "g"] for i in range(30_000)]
    good = [["v", "pump_1", "flow_m3h", NOW_MS, 42.0, "g"]]
    await receiver.start()
    try:
        with caplog.at_level(logging.ERROR, "ingest.deadletters"):
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as gateway:
                await gateway.subscribe(topic("fengshou", "xiba", "ack"), qos=1)
                await gateway.publish(topic("fengshou", "xiba", "up"), _batch(ghost, 1), qos=1)
                await gateway.publish(topic("fengshou", "xiba", "up"), _batch(good, 2), qos=1)
                acks = []
                async with asyncio.timeout(60):
                    async for message in gateway.messages:
                        acks.append(json.loads(bytes(message.payload)))
                        if len(acks) == 2:
                            break
        stored = await writer.query('SELECT "flow_m3h" FROM "pump"')
    finally:
        await receiver.stop()
        await writer.close()
    assert [a["seq"] for a in acks] == [1, 2]
    assert stored["results"][0]["series"][0]["values"] == [[NOW_MS, 42.0]]
    kept = dead.count()
    assert 10_000 < kept < 30_000 and kept + dead.dropped == 30_000
    [full] = [r.getMessage() for r in caplog.records]
    assert "is full" in full and f"{30_000 - kept} letters of fengshou/xiba not kept" in full
    dead.close()
