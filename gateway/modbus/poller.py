"""Poll the Modbus devices of one bus: one worker per bus, so requests never interleave.

Each device has a compiled RequestPlan (the fewest reads its profile allows) and its
own poll interval. The worker always polls the device that is due first. A device that
keeps failing is backed off exponentially, so a dead slave on a shared RS-485 line
costs one timeout per back-off period instead of one per cycle, and its neighbours keep
their poll rate. Busy devices (exception 6) are retried; a run of timeouts across the
whole bus closes and reopens the connection (half-open sockets, stale transaction ids).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from facility.aio import honour_cancellation
from facility.clock import now_ms
from facility.codec import CodecError
from facility.profile import ModbusProfile, Table
from facility.registers import SignalDecoder, signal_decoder
from facility.site import Bus, Transport
from facility.wire import STATUS_SIGNALS, Reading, Value
from gateway.modbus.client import StreamModbusClient
from gateway.modbus.planner import ReadRequest, RequestPlan, plan_reads, split_request

log = logging.getLogger(__name__)

ILLEGAL_ADDRESS = 2  # what a strict device answers to a read spanning unmapped registers
BUSY = 6
BUSY_RETRIES = 2
BUSY_RETRY_S = 0.05
BACKOFF_MAX_S = 60.0
RELEARN_AFTER_S = 3600.0  # a device's learned plan is tried afresh after this long
LEARNED_KEPT = 10  # what a device's plan learned, in words: the latest few
BUS_RESET_AFTER = 5  # consecutive timeouts on a bus before the connection is reopened
STATUS_EVERY_S = 0.5  # unchanged device status is reported at most this often
HOLD_MAX_S = 1.0  # a device held back by overload control looks again after at most this

Emit = Callable[[list[Reading]], None]


@dataclass
class DeviceStatus:
    """What the gateway knows about talking to one device: becomes 's' readings."""

    ok: bool = False
    error: str = "not polled yet"
    exception_code: int = 0
    rtt_ms: float = 0.0
    last_success_ms: int = 0
    consecutive_failures: int = 0
    polls: int = 0
    failures: int = 0

    def readings(self, asset: str, ts_ms: int) -> list[Reading]:
        values: tuple[Value, ...] = (
            self.ok,
            self.error,
            self.exception_code,
            round(self.rtt_ms, 2),
            self.last_success_ms,
            self.consecutive_failures,
        )
        return [
            Reading(asset, name, ts_ms, v, "g", "s")
            for name, v in zip(STATUS_SIGNALS, values, strict=True)
        ]


@dataclass
class PolledDevice:
    asset: str
    unit_id: int
    profile: ModbusProfile
    plan: RequestPlan
    interval_s: float
    status: DeviceStatus = field(default_factory=DeviceStatus)
    next_due: float = 0.0  # monotonic seconds
    overruns: int = 0  # polls skipped: not finished in time, or held back for the uplink
    _status_sent: tuple[bool, str, int, int] | None = None
    _status_at: float = -math.inf
    learned: list[str] = field(default_factory=list)  # how the plan changed, in words
    refused: set[str] = field(default_factory=set)  # signals the device refuses alone
    # A learned plan is tried afresh now and then: a device refusing a register while it
    # booted, or given new firmware, gets its signals back without a restart.
    relearn_after_s: float = RELEARN_AFTER_S
    planned: RequestPlan | None = None  # the profile's plan, while a learned one is used
    learned_at: float = 0.0  # monotonic seconds

    def plan_to_use(self, now: float) -> RequestPlan:
        if self.planned is not None and now - self.learned_at >= self.relearn_after_s:
            self.plan, self.planned = self.planned, None
            self.refused.clear()
        return self.plan

    def status_due(self, now: float) -> bool:
        """Status readings when the status changed, else at most every STATUS_EVERY_S:
        at 100 ms polls, six status readings a poll would cost a fifth of the readings."""
        s = self.status
        key = (s.ok, s.error, s.exception_code, s.consecutive_failures)
        # Half an interval of slack: a device polled every STATUS_EVERY_S reports each poll.
        if key == self._status_sent and now - self._status_at < STATUS_EVERY_S - (
            self.interval_s / 2
        ):
            return False
        self._status_sent, self._status_at = key, now
        return True

    def backoff_s(self) -> float:
        failures = self.status.consecutive_failures
        if failures < 2:
            return self.interval_s
        return min(BACKOFF_MAX_S, self.interval_s * 2.0 ** (failures - 1))


class PollFailure(Exception):
    def __init__(self, error: str, exception_code: int = 0) -> None:
        super().__init__(error)
        self.error = error
        self.exception_code = exception_code


def make_client(bus: Bus) -> Any:
    """The lean client (gateway/modbus/client.py) for TCP and RTU over TCP; pymodbus's
    serial client for RTU lines. Retries are ours, so the clients make none."""
    if bus.transport is Transport.RTU:
        return AsyncModbusSerialClient(
            bus.serial_port,
            framer=FramerType.RTU,
            baudrate=bus.baudrate,
            parity=bus.parity,
            stopbits=bus.stopbits,
            bytesize=bus.bytesize,
            timeout=bus.timeout_s,
            retries=0,
            reconnect_delay=0,
        )
    rtu = bus.transport is Transport.RTU_OVER_TCP
    return StreamModbusClient(bus.host, bus.port, rtu=rtu, timeout=bus.timeout_s)


def make_pymodbus_client(bus: Bus) -> Any:
    """pymodbus's own TCP client: what make_client used before (kept for comparison)."""
    framer = FramerType.RTU if bus.transport is Transport.RTU_OVER_TCP else FramerType.SOCKET
    return AsyncModbusTcpClient(
        bus.host, port=bus.port, framer=framer, timeout=bus.timeout_s, retries=0, reconnect_delay=0
    )


READERS = {
    Table.HOLDING: "read_holding_registers",
    Table.INPUT: "read_input_registers",
    Table.COIL: "read_coils",
    Table.DISCRETE: "read_discrete_inputs",
}


@dataclass
class BusWorker:
    """Owns one bus and its connection; polls its devices one request at a time."""

    bus: Bus
    devices: list[PolledDevice]
    emit: Emit
    client_factory: Callable[[Bus], Any] = make_client
    client: Any = None
    requests: int = 0
    timeouts_in_a_row: int = 0
    reconnects: int = 0
    last_poll_done: float = field(default_factory=time.monotonic)  # for stall detection
    may_poll: Callable[[], bool] = lambda: True  # False: skip this poll (overload control)
    held_s: Callable[[], float] = lambda: 0.0  # how long overload control has held polls
    _decoders: dict[int, tuple[ReadRequest, RequestDecoder]] = field(default_factory=dict)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for device in self.devices:
            device.next_due = loop.time()
        try:
            while True:
                device = min(self.devices, key=lambda d: d.next_due)
                delay = device.next_due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not self.may_poll():  # the uplink is behind: it gets the CPU first
                    self._hold(device, loop.time())
                    continue
                await self.poll(device)
                honour_cancellation()
                self._schedule(device, loop.time())
        finally:
            self.close()

    def _hold(self, device: PolledDevice, now: float) -> None:
        """Skip (and count) this slot and, while overload control has been holding polls
        back for a while, the slots it will likely go on holding: one wake-up a hold, not
        one a slot, so a thousand held devices do not spend the CPU the uplink needs.
        The device stays on its grid, so held devices come back spread out, not at once."""
        hold = min(HOLD_MAX_S, max(device.interval_s, self.held_s()))
        skipped = max(1, int(hold / device.interval_s))
        due = device.next_due + skipped * device.interval_s
        if due <= now:  # the loop itself ran late: the slots already passed are skipped too
            late = int((now - due) // device.interval_s) + 1
            skipped += late
            due += late * device.interval_s
        device.overruns += skipped
        device.next_due = due
        # Skipping on purpose is not a stall: the stall clock starts when the hold ends.
        self.last_poll_done = time.monotonic() + (due - now)

    def _schedule(self, device: PolledDevice, now: float) -> None:
        """The next poll on the device's grid. Slots that passed while this poll ran (or
        while the gateway was overloaded) are skipped and counted, never queued."""
        if not device.status.ok:
            device.next_due = now + device.backoff_s()
            return
        due = device.next_due + device.interval_s
        if due <= now:
            missed = int((now - due) // device.interval_s) + 1
            device.overruns += missed
            due += missed * device.interval_s
        device.next_due = due

    async def poll(self, device: PolledDevice) -> None:
        started = time.perf_counter()
        status = device.status
        status.polls += 1
        readings: list[Reading] = []
        try:
            await self._connect()
            readings = await self._read_device(device)
        except PollFailure as failure:
            self._failed(device, failure)
        else:
            status.ok, status.error, status.exception_code = True, "ok", 0
            status.consecutive_failures = 0
            status.rtt_ms = (time.perf_counter() - started) * 1000
            status.last_success_ms = now_ms()
        now = time.monotonic()
        if device.status_due(now):
            readings.extend(status.readings(device.asset, now_ms()))
        if readings:
            self.emit(readings)  # values and status together: one hand-over a poll
        self.last_poll_done = now

    def _failed(self, device: PolledDevice, failure: PollFailure) -> None:
        status = device.status
        if status.consecutive_failures == 0:
            log.warning(
                "%s unit %d on %s: %s", device.asset, device.unit_id, self.bus.id, failure.error
            )
        status.ok, status.error = False, failure.error
        status.exception_code = failure.exception_code
        status.consecutive_failures += 1
        status.failures += 1

    async def _connect(self) -> None:
        if self.client is None:
            self.client = self.client_factory(self.bus)
        if not self.client.connected:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            try:  # a connect that never completes must not freeze the bus
                async with asyncio.timeout(self.bus.timeout_s + 2):
                    connected = await self.client.connect()
            except TimeoutError:
                connected = False
            if not connected:
                raise PollFailure("connection refused or unreachable")
            self.reconnects += 1
            if self.bus.connect_pause_ms:
                await asyncio.sleep(self.bus.connect_pause_ms / 1000)

    async def _read_device(self, device: PolledDevice) -> list[Reading]:
        """Read every request of the plan. A request refused with exception 2 is split
        and its parts read instead; the parts that worked become the device's plan."""
        out: list[Reading] = []
        pending, worked = list(device.plan_to_use(time.monotonic()).requests), []
        refusal: PollFailure | None = None
        while pending:
            request = pending.pop(0)
            try:
                data = await self._request(device, request)
            except PollFailure as failure:
                if failure.exception_code != ILLEGAL_ADDRESS:
                    raise
                refusal = refusal or failure  # the plan's own read, if all is refused
                pending[:0] = self._split(device, request)
                continue
            worked.append(request)
            ts = now_ms()
            try:
                out.extend(self._decoder(device, request)(device.asset, ts, data))
            except (CodecError, IndexError) as exc:
                raise PollFailure(f"undecodable response: {exc}") from exc
            if self.bus.pause_ms:
                await asyncio.sleep(self.bus.pause_ms / 1000)
        if refusal is not None:
            self._learn(device, worked, refusal)
        return out

    def _decoder(self, device: PolledDevice, request: ReadRequest) -> RequestDecoder:
        known = self._decoders.get(id(request))
        if known is None or known[0] is not request:  # the request object is the key
            known = (request, request_decoder(device.profile, request))
            self._decoders[id(request)] = known
        return known[1]

    def _split(self, device: PolledDevice, request: ReadRequest) -> tuple[ReadRequest, ...]:
        parts = split_request(device.profile, request)
        if parts is None:
            device.refused.add(request.signals[0].name)
            return ()
        return parts

    def _learn(self, device: PolledDevice, worked: list[ReadRequest], refusal: PollFailure) -> None:
        """Keep the plan that worked; a device that refused everything keeps its plan
        (an exception 2 fault, not a register map it lacks) and this poll fails."""
        if not worked:
            device.refused.clear()
            raise refusal
        before = len(device.plan)
        if device.planned is None:
            device.planned = device.plan
        device.plan, device.learned_at = RequestPlan(tuple(worked)), time.monotonic()
        text = f"exception 2 on merged reads: {before} requests became {len(worked)}" + (
            f"; refused alone: {', '.join(sorted(device.refused))}" if device.refused else ""
        )
        device.learned = [*device.learned[-(LEARNED_KEPT - 1) :], text]
        log.warning("%s unit %d on %s: %s", device.asset, device.unit_id, self.bus.id, text)
        self._forget_decoders()

    def _forget_decoders(self) -> None:
        """Relearning makes new request objects every hour: keep only the decoders of
        the requests some device may still read (its plan, or the one it relearns from)."""
        live = {
            id(r)
            for d in self.devices
            for plan in (d.plan, d.planned)
            if plan is not None
            for r in plan.requests
        }
        self._decoders = {k: v for k, v in self._decoders.items() if k in live}

    async def _request(self, device: PolledDevice, request: ReadRequest) -> Sequence[Any]:
        read = getattr(self.client, READERS[request.table])
        for attempt in range(BUSY_RETRIES + 1):
            self.requests += 1
            try:
                response = await read(
                    request.address, count=request.count, device_id=device.unit_id
                )
            except ConnectionException as exc:
                self.close()
                raise PollFailure("connection lost") from exc
            except ModbusException as exc:
                self._timed_out()
                raise PollFailure("timeout") from exc
            self.timeouts_in_a_row = 0
            if not response.isError():
                data: Sequence[Any] = (
                    response.bits[: request.count]
                    if request.table.is_bit_table
                    else response.registers
                )
                return data
            code = int(getattr(response, "exception_code", 0))
            if code != BUSY or attempt == BUSY_RETRIES:
                raise PollFailure(exception_text(code, request), code)
            await asyncio.sleep(BUSY_RETRY_S * (attempt + 1))
        raise PollFailure("unreachable")  # pragma: no cover - the loop always returns/raises

    def _timed_out(self) -> None:
        self.timeouts_in_a_row += 1
        if self.timeouts_in_a_row >= BUS_RESET_AFTER:
            log.warning(
                "bus %s: %d timeouts in a row, reopening the connection",
                self.bus.id,
                self.timeouts_in_a_row,
            )
            self.close()
            self.timeouts_in_a_row = 0

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def decoded_reading(asset: str, signal: str, ts_ms: int, value: Value) -> Reading:
    """A NaN or infinite float is how many transmitters report a sensor fault."""
    if isinstance(value, float) and not math.isfinite(value):
        return Reading(asset, signal, ts_ms, None, "b")
    return Reading(asset, signal, ts_ms, value)


RequestDecoder = Callable[[str, int, Sequence[Any]], list[Reading]]


def request_decoder(profile: ModbusProfile, request: ReadRequest) -> RequestDecoder:
    """ReadRequest.decode made once per request: each signal's offset, width and decoder
    chosen at set-up, so a poll only slices and converts (same values, same errors)."""
    bits = request.table.is_bit_table
    count = request.count
    parts: list[tuple[str, int, int, SignalDecoder]] = []
    for signal in request.signals:
        at = profile.protocol_address(signal) - request.address
        if at < 0 or at + signal.count > count:
            raise CodecError(
                f"{signal.name!r} lies outside {request.table.value} "
                f"{request.address}+{count} (request planned from another profile?)"
            )
        parts.append(
            (signal.name, at, at + (1 if bits else signal.count), signal_decoder(profile, signal))
        )

    def decode(asset: str, ts: int, data: Sequence[Any]) -> list[Reading]:
        if len(data) < count if bits else len(data) != count:
            unit = "bits" if bits else "registers"
            raise CodecError(
                f"{request.table.value} {request.address}+{count}: response has {len(data)} {unit}"
            )
        if bits:
            data = [int(b) for b in data[:count]]
        return [decoded_reading(asset, name, ts, fn(data[lo:hi])) for name, lo, hi, fn in parts]

    return decode


def build_device(
    asset: str, unit_id: int, profile: ModbusProfile, interval_s: float, max_gap: int
) -> PolledDevice:
    return PolledDevice(
        asset=asset,
        unit_id=unit_id,
        profile=profile,
        plan=plan_reads(profile, max_gap=max_gap),
        interval_s=interval_s,
    )


EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


def exception_text(code: int, request: ReadRequest) -> str:
    """What the exception cost, in words: the range refused and the signals it held."""
    names = [s.name for s in request.signals]
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return (
        f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) reading {request.table.value}"
        f" {request.address}-{request.end - 1} (protocol addresses), which holds {shown}"
    )
