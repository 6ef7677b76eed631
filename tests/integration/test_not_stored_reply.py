"""The gateway's uplink and the ingest's "not stored" reply, through a real Mosquitto,
from an ingest that never acks (so every batch stays in flight, ack timeout 30 s) and an
intruder publishing replies on the gateway's ack topic: a reply for another boot or an
unknown batch changes nothing; one for a batch in flight releases it at once, nothing is
sent during the pause it asks for and the batch goes again after it; a flood asking for
hours holds sending at most MAX_RETRY_AFTER_MS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.wire import (
    MAX_RETRY_AFTER_MS,
    BadRow,
    Batch,
    NotStored,
    Reading,
    decode_reply,
    encode_batch,
    encode_not_stored,
    topic,
)
from ingest.influx import InfluxUnavailable
from ingest.receiver import Receiver
from tests.integration._gateway import gateway_for, one_station
from tests.receiver import Receiver as KeepingReceiver
from tests.services import Mosquitto

ACK = topic("wanda", "wanda_lot", "ack")


async def test_the_uplink_heeds_not_stored_only_for_a_batch_in_flight_and_pauses_boundedly(
    demo_config: SiteConfig, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = one_station(demo_config, "wanda", "wanda_lot", ack_timeout_s=30.0)
    gateway = gateway_for(config, "wanda", "wanda_lot", tmp_path, mosquitto.port)
    ingest = KeepingReceiver(mosquitto.port)
    ingest.ingest.acking = False  # every batch stays in flight
    await ingest.start()
    gateway.start()
    uplink, stats = gateway.uplink, gateway.uplink.stats
    try:
        await ingest.wait_for(lambda: len(ingest.batches) >= 2)
        first = ingest.batches[0]
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as intruder:
            for stranger in (
                encode_not_stored(uplink.boot + 1, first.seq, "another boot", 10_000),
                encode_not_stored(uplink.boot - 1, first.seq, "another boot", 10_000),
                encode_not_stored(uplink.boot, 10**6, "never sent", 10_000),
                encode_not_stored(uplink.boot, 0, "never sent", 10_000),
                b"{}",  # a malformed ack last: counted once the ones before are read
            ):
                await intruder.publish(ACK, stranger, qos=1)
            await ingest.wait_for(lambda: stats.acks_malformed == 1)
            assert stats.batches_not_stored == 0 and uplink.paused_s == 0
            await ingest.wait_for(lambda: len(ingest.batches) >= 3)  # not paused

            replied_ms = now_ms()
            await intruder.publish(
                ACK, encode_not_stored(uplink.boot, first.seq, "x", 1_500), qos=1
            )
            await ingest.wait_for(lambda: stats.batches_not_stored == 1)
            assert 0 < uplink.paused_s <= 1.5
            same = {(r.asset, r.signal, r.ts_ms) for r in first.readings}
            await ingest.wait_for(lambda: _resent(ingest, first.seq, same) is not None)
            # Released at once, but sent again only after the pause (without it: ~0.2 s);
            # a publish under way when the reply came may land just after it, then none.
            assert (_resent(ingest, first.seq, same) or 0) >= replied_ms + 1_450
            sent = [t - replied_ms for t in ingest.arrived_ms if t > replied_ms]
            assert all(t < 400 or t >= 1_450 for t in sent), f"sent during the pause: {sent}"

            # A flood naming every seq, each asking for a day: each batch in flight is
            # released once, the rest ignored; the pause stays at the cap.
            flood = [encode_not_stored(uplink.boot, seq, "x", 86_400_000) for seq in range(1, 501)]
            for payload in [*flood, *flood, b"[]"]:
                await intruder.publish(ACK, payload, qos=1)
            await ingest.wait_for(lambda: stats.acks_malformed == 2)
        assert 0 < uplink.paused_s <= MAX_RETRY_AFTER_MS / 1000
        assert uplink.in_flight_readings == 0
        assert 1 < stats.batches_not_stored <= stats.batches_sent
        assert stats.batches_expired == 0 and stats.batches_acked == 0
        assert stats.connects == 1 and gateway.counters.task_restarts == 0
    finally:
        await gateway.stop()
        await ingest.stop()


def _resent(ingest: KeepingReceiver, seq: int, keys: set[tuple[str, str, int]]) -> int | None:
    """When the readings of batch `seq` arrived again in a later batch (wall ms)."""
    for batch, arrived_ms in zip(ingest.batches, ingest.arrived_ms, strict=True):
        if batch.seq > seq and keys <= {(r.asset, r.signal, r.ts_ms) for r in batch.readings}:
            return arrived_ms
    return None


async def test_the_ingest_answers_not_stored_only_when_its_database_is_away(
    mosquitto: Mosquitto,
) -> None:
    """InfluxDB away: a reply, so the gateway resends after a short pause. Any other
    failure of the store (a bug, the alarms after the write): no reply, else the gateway
    would resend it twice a second for ever; it waits out its ack timeout as before."""
    failures: dict[int, Exception] = {1: InfluxUnavailable("down"), 2: RuntimeError("bug")}
    failures[3] = ConnectionRefusedError("refused")

    async def store(batch: Batch, rejected: list[BadRow]) -> None:
        raise failures[batch.seq]

    receiver = Receiver("127.0.0.1", mosquitto.port, store, client_id="ingest-not-stored")
    await receiver.start()
    replies: list[object] = []
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as gateway:
            await gateway.subscribe(ACK, qos=1)
            for seq in failures:
                reading = Reading("lot", "occupied", now_ms(), seq)
                batch = Batch("wanda", "wanda_lot", 7, seq, "live", now_ms(), [reading])
                await gateway.publish(topic("wanda", "wanda_lot", "up"), encode_batch(batch))
            async with asyncio.timeout(10):
                async for message in gateway.messages:
                    replies.append(decode_reply(bytes(message.payload)))
                    if len(replies) == 2:
                        break
            while receiver.store_failures < 3:
                await asyncio.sleep(0.05)
    finally:
        await receiver.stop()
    assert [(r.seq, r.reason) for r in replies if isinstance(r, NotStored)] == [
        (1, "InfluxUnavailable"),
        (3, "ConnectionRefusedError"),
    ]
    assert receiver.not_stored_replies == 2 and receiver.store_failures == 3
