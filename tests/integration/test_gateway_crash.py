"""The gateway as a real process: kill -9 mid-run loses nothing and redelivers nothing
that was acknowledged; SIGTERM stops it cleanly and says offline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import yaml

from facility.config import SiteConfig
from facility.wire import topic
from gateway.outbox import Outbox
from tests.integration._gateway import gateway_process, one_station, served_at
from tests.integration.test_gateway_e2e import RunningSite, start_site
from tests.receiver import Key, Receiver
from tests.services import Mosquitto


def write_site(config: SiteConfig, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for site in config.sites:
        data = site.model_dump(mode="json", by_alias=True, exclude_none=True)
        (folder / f"{site.id}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return folder


def start_gateway(site_dir: Path, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return gateway_process(site_dir, "fengshou/xiba", data_dir, f"127.0.0.1:{port}", "--log-json")


async def serve_xiba(
    demo_config: SiteConfig, mosquitto: Mosquitto, tmp_path: Path
) -> tuple[RunningSite, Path]:
    """Xiba station simulated, and a site folder pointing the gateway at it."""
    config = one_station(demo_config, "fengshou", "xiba")
    runner = await start_site(config, mosquitto)
    return runner, write_site(served_at(config, runner), tmp_path / "site")


@contextlib.asynccontextmanager
async def xiba_gateway(
    demo_config: SiteConfig, mosquitto: Mosquitto, tmp_path: Path, batches: int
) -> AsyncIterator[tuple[subprocess.Popen[bytes], Receiver, Path]]:
    """The gateway process delivering Xiba to the test receiver, entered once more than
    `batches` batches arrived; killed on the way out if still running."""
    runner, site_dir = await serve_xiba(demo_config, mosquitto, tmp_path)
    receiver = Receiver(mosquitto.port)
    await receiver.start()
    proc = start_gateway(site_dir, tmp_path / "data", mosquitto.port)
    try:
        await receiver.wait_for(lambda: len(receiver.batches) > batches, 20)
        yield proc, receiver, site_dir
    finally:
        if proc.poll() is None:
            proc.kill()
        await receiver.stop()
        await runner.stop()


def pending_keys(data_dir: Path) -> set[Key]:
    """Every reading left in the outbox file, read the way the uplink reads it."""
    outbox = Outbox(data_dir / "fengshou-xiba.outbox.sqlite")
    keys: set[Key] = set()
    try:
        while (lease := outbox.take("backfill", 100_000, 0)) is not None:
            for row in lease.rows_json:
                kind, asset, signal_name, ts, _, _ = json.loads(row)
                keys.add(("xiba", kind, asset, signal_name, ts))
    finally:
        outbox.close()
    return keys


async def test_kill_9_loses_nothing_and_acked_readings_never_come_back(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    runner, site_dir = await serve_xiba(demo_config, mosquitto, tmp_path)
    data_dir = tmp_path / "data"
    receiver = Receiver(mosquitto.port)
    await receiver.start()
    kills: list[int] = []
    pending: set[Key] = set()
    try:
        for _ in range(3):
            receiver.ingest.acking = True
            proc = start_gateway(site_dir, data_dir, mosquitto.port)
            batches = len(receiver.batches)
            # Delivering and acknowledged (the last kill's backlog included), not a fixed
            # 3-5 s of which the start took half.
            await receiver.wait_for(delivered(receiver, batches + 3, pending), 30)
            receiver.ingest.acking = False  # the ingest stalls: readings pile up unacked
            # Long enough for every ack already sent to be stored, even on a busy machine:
            # a reading acked before the stall and delivered again is then a real fault.
            await asyncio.sleep(STALL_S)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills.append(time.monotonic_ns())
            pending = pending_keys(data_dir)
            assert not {k for k in pending if acked_before(receiver, k, kills[-1] - SECOND)}, (
                "an acknowledged reading is still queued after the crash"
            )
        receiver.ingest.acking = True
        proc = start_gateway(site_dir, data_dir, mosquitto.port)
        batches = len(receiver.batches)
        try:
            await receiver.wait_for(lambda: pending <= set(receiver.seen), 30)
            await receiver.wait_for(lambda: len(receiver.batches) > batches + 3, 30)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
    finally:
        await receiver.stop()
        await runner.stop()
    assert pending, "the last kill left unacknowledged readings in the outbox"
    assert pending <= set(receiver.seen), "readings in the outbox at the kill were lost"
    again = [
        k for k, receipts in receiver.receipts.items() if redelivered_after_ack(receipts, kills)
    ]
    assert not again, f"{len(again)} acknowledged readings were delivered again"


def delivered(receiver: Receiver, batches: int, backlog: set[Key]) -> Callable[[], bool]:
    return lambda: len(receiver.batches) > batches and backlog <= set(receiver.seen)


SECOND = 1_000_000_000
STALL_S = 3.0


def acked_before(receiver: Receiver, key: Key, when_ns: int) -> bool:
    return any(acked and at < when_ns for at, acked in receiver.receipts.get(key, []))


def redelivered_after_ack(receipts: list[tuple[int, bool]], kills: list[int]) -> bool:
    """A receipt after an acked one is a fault unless a kill came within a second of the
    ack (the ack was on its way when the gateway died)."""
    acked = [at for at, ok in receipts if ok]
    if not acked:
        return False
    later = [at for at, _ in receipts if at > acked[0]]
    excused = any(acked[0] <= kill <= acked[0] + SECOND for kill in kills)
    return bool(later) and not excused


async def test_sigterm_stops_cleanly_and_says_offline(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    async with xiba_gateway(demo_config, mosquitto, tmp_path, batches=3) as (proc, _, _):
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 10
        assert (await retained_status(mosquitto.port))["online"] is False
    log = proc.stderr.read().decode() if proc.stderr else ""
    assert '"msg": "stopping"' in log and "Traceback" not in log


async def retained_status(port: int) -> dict[str, object]:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic("fengshou", "xiba", "status"), qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(client.messages))
    assert isinstance(message.payload, bytes) and message.retain
    status: dict[str, object] = json.loads(message.payload)
    return status


async def test_kill_9_leaves_the_last_will_and_sighup_reloads(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    gateway = xiba_gateway(demo_config, mosquitto, tmp_path, batches=2)
    async with gateway as (proc, receiver, site_dir):
        assert (await retained_status(mosquitto.port))["online"] is True
        site_file = next(site_dir.glob("*.yaml"))
        site_file.write_text(site_file.read_text().replace("poll_s: 0.5", "poll_s: 0.7"))
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(1.0)
        site_file.write_text("id: [broken\n")
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(1.0)
        batches = len(receiver.batches)
        await receiver.wait_for(lambda: len(receiver.batches) > batches + 2, 20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        status = await retained_status(mosquitto.port)
        assert status["online"] is False, "the broker did not publish the last will"
    log = proc.stderr.read().decode() if proc.stderr else ""
    assert "reloaded: restarted buses ['rtu_gw']" in log
    assert "reload refused, keeping the running configuration" in log
