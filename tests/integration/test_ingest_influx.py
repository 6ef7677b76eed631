"""Gateway -> broker -> ingest -> real InfluxDB: every acquired reading lands exactly once,
with its value and acquisition timestamp; InfluxDB down means no ack and nothing lost,
and the ingest's "not stored" replies get delivery going again seconds after InfluxDB is
back, not after the gateway's ack timeout."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

from facility.clock import now_ms
from facility.config import SiteConfig
from gateway.daemon import Gateway
from ingest.deadletters import DeadLetters
from ingest.influx import InfluxV1Writer
from ingest.receiver import Receiver
from ingest.store import InfluxStore
from ingest.validate import Validator
from tests.integration._gateway import Recorder, gateway_for, one_station, served_at
from tests.integration.test_gateway_e2e import start_site
from tests.services import Mosquitto
from wiring.services import InfluxDB

DB = "facility"
FLOW = ("pump_1", "flow_m3h")


async def influx_values(writer: InfluxV1Writer, asset: str, field: str) -> dict[int, object]:
    result = await writer.query(
        f'SELECT "{field}" FROM "pump","tank","transformer" WHERE "asset" = \'{asset}\''
    )
    out: dict[int, object] = {}
    for series in result["results"][0].get("series", []):
        for ts, value in series["values"]:
            if value is not None:
                assert ts not in out, f"{asset}.{field} has two points at {ts}"
                out[ts] = value
    return out


async def test_every_reading_lands_once_and_delivery_resumes_seconds_after_an_influx_outage(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
) -> None:
    """The ack timeout at the default 30 s: without the not-stored replies the batches in
    flight during the outage would hold up delivery until it ran out (~30 s)."""
    # Batches of 100 readings: the backlog of the outage passes the overload control's
    # threshold (a batch of live readings waiting), which must not hold polls back.
    config = one_station(
        demo_config, "fengshou", "xiba", ack_timeout_s=30.0, batch_max_readings=100
    )
    runner = await start_site(config, mosquitto)
    writer = InfluxV1Writer(influxdb.url, DB, max_retries=1, backoff_cap_s=0.2)
    await writer.create_database(DB)
    store = InfluxStore(Validator(config), writer, DeadLetters(tmp_path / "dead.sqlite"))
    receiver = Receiver("127.0.0.1", mosquitto.port, store, client_id="ingest-test")
    await receiver.start()
    gateway = gateway_for(
        served_at(config, runner), "fengshou", "xiba", tmp_path / "gw", mosquitto.port
    )
    recorder = Recorder(gateway)
    gateway.start()
    try:
        async with asyncio.timeout(20):  # stored and acknowledged before the outage
            while not gateway.uplink.stats.readings_acked:
                await asyncio.sleep(0.05)
        influxdb.stop()  # the ingest cannot store: it answers "not stored", nothing is lost
        await asyncio.sleep(3.0)
        held = gateway.outbox.stats().readings
        failures = receiver.store_failures
        influxdb.start()
        back = time.monotonic()
        back_ms = now_ms()
        async with asyncio.timeout(40):
            # Caught up: nothing acquired before the return is left, in flight or not.
            while 0 < _oldest(gateway) < back_ms:
                await asyncio.sleep(0.1)
        caught_up_s = time.monotonic() - back
        await asyncio.sleep(1.0)
        acquired = [r for r in recorder.readings if r.kind == "v" and r.value is not None]
        async with asyncio.timeout(10):
            while gateway.outbox.stats().readings > 0 or gateway.uplink.in_flight_readings:
                await asyncio.sleep(0.1)
    finally:
        await gateway.stop()
        await receiver.stop()
        await runner.stop()
    up = gateway.uplink.stats
    assert caught_up_s < 10.0, f"caught up {caught_up_s:.1f} s after InfluxDB was back"
    assert up.batches_not_stored > 0 and receiver.not_stored_replies >= up.batches_not_stored
    assert up.batches_expired == 0 and up.acks_malformed == 0
    assert failures > 0 and held > 0, "the outage held readings back"
    # Polled every 0.5 s throughout: a paused uplink is not one short of CPU (held
    # back, the polls of the outage left gaps of seconds).
    polled = sorted(r.ts_ms for r in recorder.readings if (r.asset, r.signal) == FLOW)
    assert max(b - a for a, b in itertools.pairwise(polled)) < 2_000
    assert store.refused == 0 and store.dead_letters.count() == 0
    for asset, signal in (
        ("pump_1", "flow_m3h"),
        ("pump_1", "running"),
        ("tank_no4", "level_m"),
        ("transformer", "energy_kwh"),
    ):
        stored = await influx_values(writer, asset, signal)
        sent = {r.ts_ms: r.value for r in acquired if r.asset == asset and r.signal == signal}
        assert sent and set(sent) <= set(stored), f"{asset}.{signal}: readings missing"
        for ts, value in sent.items():
            assert stored[ts] == value, f"{asset}.{signal} at {ts}"
    await writer.close()


def _oldest(gateway: Gateway) -> int:
    """The acquisition time of the oldest reading in the outbox, batches in flight
    included (0: empty)."""
    stats = gateway.outbox.stats()
    return (stats.oldest_ts_ms or 0) if stats.readings else 0


async def test_refused_readings_go_to_the_dead_letter_store(
    demo_config: SiteConfig,
    influxdb: InfluxDB,
    tmp_path: Path,
) -> None:
    from facility.wire import BadRow, Batch, Reading

    now = 1_780_264_800_000
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    validator = Validator(demo_config, now_ms=now)
    store = InfluxStore(validator, writer, DeadLetters(tmp_path / "dead.sqlite"))
    first = Batch("fengshou", "xiba", 1, 1, "live", now, [Reading("pump_1", "flow_m3h", now, 2.5)])
    await store(first, [])
    # the same field as an integer later: InfluxDB refuses the type change, the rest lands
    second = Batch(
        "fengshou",
        "xiba",
        1,
        2,
        "live",
        now,
        [
            Reading("pump_1", "starts", now + 1, 12),
            Reading("pump_9", "flow_m3h", now + 1, 1.0),
        ],
    )
    await store(second, [BadRow(5, "row is not a list of 6 items", [1, 2])])
    letters = store.dead_letters.latest()
    assert {d.reason.split(":")[0] for d in letters} >= {"unknown asset 'pump_9'", "row 5"}
    assert (await influx_values(writer, "pump_1", "starts")) == {now + 1: 12}
    assert (await influx_values(writer, "pump_1", "flow_m3h")) == {now: 2.5}
    await writer.close()
