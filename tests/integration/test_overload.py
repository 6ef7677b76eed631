"""Overload control against real Modbus servers and a real broker (issue 16).

A device that answers slower than its poll interval has its missed polls skipped and
counted in `poll_overruns`, never queued; an uplink slower than acquisition makes the bus
workers skip polls (counted) instead of piling up a live backlog, and what was acquired
is still delivered. Slowness comes from a relay that holds every byte for a while, as a
radio link or an overloaded converter does; the servers and the broker are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from facility.aio import cancel_and_wait
from facility.clock import now_ms
from facility.config import SiteConfig
from facility.profile import ModbusProfile, Table
from facility.registers import RegisterImage
from facility.site import Bus, GatewaySettings, Transport
from facility.wire import Reading
from gateway.daemon import STALL_FACTOR, Gateway
from gateway.modbus.poller import HOLD_MAX_S, BusWorker, build_device
from gateway.outbox import Outbox
from gateway.telemetry import CpuMeter, RateMeter
from gateway.uplink.mqtt import Uplink
from simulators.modbus_server import BusServer
from tests.block_devices import block_station, uint16_block
from tests.integration._gateway import Recorder
from tests.receiver import Receiver
from tests.services import Mosquitto

REGISTERS = 30


@dataclass
class SlowLink:
    """A TCP relay that holds every byte `delay_s` before passing it on, both ways."""

    target_port: int
    delay_s: float
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # cancelled: stop() is closing the relay
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                at, data = await queue.get()
                if not data:
                    return
                await asyncio.sleep(max(0.0, at - loop.time()))
                writer.write(data)
                await writer.drain()

        forwarder = asyncio.create_task(forward())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + self.delay_s, data))
            queue.put_nowait((0.0, b""))
            await forwarder
        finally:
            forwarder.cancel()
            with contextlib.suppress(Exception):
                writer.close()


def small_device() -> ModbusProfile:
    return uint16_block("small_meter", REGISTERS, Table.HOLDING)


async def serve(devices: int) -> BusServer:
    profile = small_device()
    images = {unit: RegisterImage(profile) for unit in range(1, devices + 1)}
    for unit, image in images.items():
        image.write_values({s.name: unit * 100 + i for i, s in enumerate(profile.signals)})
    server = BusServer(Bus(id="meters", transport=Transport.TCP, port=0), images)
    await server.start()
    for unit in images:
        await server.push(unit)
    return server


async def test_a_slow_device_has_every_missed_poll_counted_and_none_queued() -> None:
    server = await serve(1)
    link = SlowLink(server.port, delay_s=0.15)  # a reply takes >= 0.3 s; polls are due every 0.1 s
    await link.start()
    device = build_device("meter", 1, small_device(), interval_s=0.1, max_gap=8)
    emitted: list[int] = []
    worker = BusWorker(
        Bus(id="slow", transport=Transport.TCP, port=link.port, timeout_s=3.0),
        [device],
        lambda readings: emitted.append(len(readings)),
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(300):
            if device.status.polls - device.status.failures >= 6:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        elapsed = loop.time() - started
        await link.stop()
        await server.stop()
    polls = device.status.polls
    assert device.status.failures == 0, device.status.error
    assert polls >= 6
    # Each poll lasts at least three intervals: at least two slots pass unpolled each time.
    assert device.overruns >= 2 * (polls - 1), (polls, device.overruns)
    # Skipped, never queued: polls and skips together fit the slots that passed.
    assert polls + device.overruns <= elapsed / 0.1 + 2, (polls, device.overruns, elapsed)
    assert sum(emitted) >= (polls - 1) * REGISTERS  # the last poll may have been cut short


def meters_site(tmp: Path, port: int, devices: int) -> SiteConfig:
    settings = GatewaySettings(poll_s=0.05, health_every_s=60, batch_max_readings=300)
    bus = Bus(id="meters", transport=Transport.TCP, port=port)
    meters = [(f"meter_{unit:02d}", "meters", unit) for unit in range(1, devices + 1)]
    return block_station(tmp, ("overload", "meters"), small_device(), [bus], meters, settings)


def delivered_values(receiver: Receiver) -> int:
    return sum(1 for key in receiver.seen if key[1] == "v")


async def test_a_slow_uplink_holds_polls_back_and_the_live_backlog_stays_small(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Ten meters at 50 ms acquire thousands of readings/s; the uplink, behind a relay
    that holds every byte 0.15 s, moves at most 300 readings (one batch) a round trip.
    Polls must wait for it (skips counted), the outbox must hold about a batch or
    three, not everything acquired, and every value acquired must still arrive."""
    server = await serve(10)
    link = SlowLink(mosquitto.port, delay_s=0.15)
    await link.start()
    receiver = Receiver(mosquitto.port)
    await receiver.start()
    gateway = Gateway(
        meters_site(tmp_path, server.port, 10),
        "overload",
        "meters",
        tmp_path / "data",
        uplink_address=("127.0.0.1", link.port),
    )
    recorder = Recorder(gateway)
    backlog: list[int] = []
    gateway.start()
    try:
        # Until the uplink is up, polling rightly goes on into the outbox: wait until it
        # is connected and has caught up once, then watch the backlog.
        for _ in range(1200):
            if gateway.uplink.stats.connected and gateway.outbox.stats().readings <= 1000:
                break
            await asyncio.sleep(0.05)
        start = delivered_values(receiver)
        for _ in range(1200):
            backlog.append(gateway.outbox.stats().readings)
            if delivered_values(receiver) >= start + 3000:
                break
            await asyncio.sleep(0.05)
        for bus in gateway.buses.values():  # acquisition stops; delivery goes on
            await cancel_and_wait(bus.task)
        gateway.write_behind.flush()
        overruns = sum(d.overruns for d in gateway.buses["meters"].worker.devices)
        health = {r.signal: r.value for r in gateway.health(RateMeter(), CpuMeter())}
        acquired = {k for k in recorder.keys("meters") if k[1] == "v"}
        await receiver.wait_for(lambda: acquired <= set(receiver.seen), 60)
    finally:
        await gateway.stop(grace_s=5.0)
        await receiver.stop()
        await link.stop()
        await server.stop()
    assert len(acquired) >= 3000 and len(backlog) > 10
    assert overruns > 0, "polls were not held back for the uplink"
    assert health["poll_overruns"] == overruns == health["poll_overruns_meters"]
    # Acquisition runs several times faster than delivery: without overload control the
    # outbox would hold ten thousand readings and more by now.
    assert max(backlog) <= 3000, f"the live backlog grew to {max(backlog)} readings"
    assert acquired <= set(receiver.seen)


async def test_devices_held_back_wake_once_a_hold_and_every_skipped_slot_is_counted() -> None:
    """While overload control holds polls back, a held device wakes once per hold (at
    most HOLD_MAX_S), not once per slot: a thousand held devices at 100 ms must not spend
    the CPU the uplink needs. Every slot that passed unpolled is still counted, the
    device stays on its grid, and a held bus is not reported stalled. No request is made
    while held (the port is closed)."""
    interval = 0.02
    devices = [build_device(f"m{n}", n + 1, small_device(), interval, 8) for n in range(3)]
    asked: list[float] = []

    def may_poll() -> bool:
        asked.append(asyncio.get_running_loop().time())
        return False

    worker = BusWorker(
        Bus(id="held", transport=Transport.TCP, port=1, timeout_s=0.1),
        devices,
        lambda readings: pytest.fail("nothing may be polled while held"),
        may_poll=may_poll,
        held_s=lambda: 10.0,  # held for long already
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(worker.run())
    since_poll = []  # what the daemon's stall check measures, sampled
    while loop.time() - started < 1.2:
        await asyncio.sleep(0.05)
        since_poll.append(time.monotonic() - worker.last_poll_done)
    await cancel_and_wait(task)
    elapsed = loop.time() - started
    # The daemon reports a bus stalled past 3 intervals + its timeout without a poll done.
    assert max(since_poll) < STALL_FACTOR * interval + worker.bus.timeout_s, since_poll
    # One look per device per HOLD_MAX_S: at most 3 devices x 3 looks in 1.2 s, where
    # one look per slot would be 3 x 60.
    assert 3 <= len(asked) <= 3 * (1.2 / HOLD_MAX_S + 2), len(asked)
    slots = elapsed / interval
    for device in devices:
        assert device.status.polls == 0
        # Counted ahead for the hold under way: at most one hold's slots more than passed.
        assert slots - 2 <= device.overruns <= slots + HOLD_MAX_S / interval + 1, device.overruns
        steps = (device.next_due - devices[0].next_due) / interval  # all began at one time
        assert abs(steps - round(steps)) < 0.01, "the device left its grid"
    assert worker.requests == 0


async def test_a_backlog_never_takes_the_last_in_flight_slot_from_live_data(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """An ingest that stores but does not ack yet (InfluxDB slow) leaves backlog batches
    in flight; live readings acquired meanwhile must still go out at once, in the slot
    the backlog leaves free, not after a backlog batch's ack or timeout."""
    receiver = Receiver(mosquitto.port)
    receiver.ingest.acking = False
    await receiver.start()
    settings = GatewaySettings(
        batch_max_readings=100, in_flight_batches=3, uplink={"port": mosquitto.port}
    )
    old = now_ms() - 3_600_000
    with Outbox(tmp_path / "o.sqlite") as outbox:
        for n in range(20):  # an hour-old backlog: 20 batches' worth
            outbox.put([Reading("meter", f"r{i}", old + n, i) for i in range(100)])
        uplink = Uplink("overload", "meters", settings, outbox)
        task = asyncio.create_task(uplink.run())
        try:
            await receiver.wait_for(lambda: len(receiver.batches) >= 2, 20)
            await asyncio.sleep(0.5)  # room for a third backlog batch, were it allowed
            assert [b.lane for b in receiver.batches] == ["backfill", "backfill"]
            outbox.put([Reading("meter", "live", now_ms(), 1)])
            uplink.data_ready()
            await receiver.wait_for(lambda: len(receiver.batches) >= 3, 5)
            assert receiver.batches[2].lane == "live"
            assert uplink.stats.batches_acked == 0
        finally:
            await cancel_and_wait(task)
            await receiver.stop()
