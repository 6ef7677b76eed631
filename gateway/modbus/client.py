"""A lean Modbus client for TCP and RTU-over-TCP buses: pymodbus's framers and PDUs over
one asyncio protocol, without pymodbus's client layer.

At 100 ms polls of hundreds of small devices the gateway's cost is set per request, and
pymodbus's client (transaction manager, retry and reconnect machinery, a task and a
timeout per call, a debug string of every PDU) was about a fifth of it. This client
sends a request, waits for its one answer with one timer, and decodes read responses
in one `struct.unpack`; anything else (exception responses, other function codes) goes
through pymodbus's own `DecodePDU`, so exception codes read the same. It has the surface
the poller uses of pymodbus's clients (`connect`, `connected`, `close`, the four
`read_*` calls returning a response with `isError()`, `registers`, `bits`,
`exception_code`, and pymodbus's `ConnectionException` / `ModbusIOException`), so the
poller, the probe and the tests' client factories see no difference.

Serial RTU lines stay on pymodbus's serial client (a 9,600 baud line sends ~40 requests a
second: the client's CPU there is no matter). Measured against pymodbus's client,
tmodbus and async-modbus in docs/benchmarks.md (bench/bench_many_devices.py --clients).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import DecodePDU

_MBAP = struct.Struct(">HHHB")
_REQUEST = struct.Struct(">BHH")
_EXCEPTION = 0x80
READ_COILS, READ_DISCRETE, READ_HOLDING, READ_INPUT = 1, 2, 3, 4
_MAX_FRAME = 260


@dataclass(slots=True)
class ReadResponse:
    """What pymodbus's read responses answer the poller: registers, bits, or an
    exception code (`isError()` true)."""

    function_code: int
    registers: list[int] = field(default_factory=list)
    bits: list[bool] = field(default_factory=list)
    exception_code: int = 0

    def isError(self) -> bool:  # pymodbus's name
        return self.function_code & _EXCEPTION != 0


def _bits(data: bytes) -> list[bool]:
    return [bool(byte >> i & 1) for byte in data for i in range(8)]


_other_pdus = DecodePDU(is_server=False)


def _response(function_code: int, pdu: bytes) -> ReadResponse:
    """A read response or an exception, from the PDU's bytes after the function code."""
    if function_code & _EXCEPTION:
        if len(pdu) < 1:
            raise ModbusIOException("exception response without its code")
        return ReadResponse(function_code, exception_code=pdu[0])
    size = pdu[0] if pdu else -1
    if size != len(pdu) - 1:
        raise ModbusIOException(f"byte count {size} in a response of {len(pdu) - 1} bytes")
    if function_code in (READ_HOLDING, READ_INPUT):
        return ReadResponse(function_code, registers=list(struct.unpack(f">{size // 2}H", pdu[1:])))
    if function_code in (READ_COILS, READ_DISCRETE):
        return ReadResponse(function_code, bits=_bits(pdu[1:]))
    decoded = _other_pdus.decode(bytes([function_code]) + pdu)  # not a read: pymodbus's way
    raise ModbusIOException(f"unexpected response {decoded}")


class _Link(asyncio.Protocol):
    def __init__(self, client: StreamModbusClient) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(exc)


class StreamModbusClient:
    """One connection to a Modbus TCP server or an RTU-over-TCP converter; one request
    at a time (the poller's bus worker never overlaps two)."""

    def __init__(self, host: str, port: int, *, rtu: bool = False, timeout: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.rtu = rtu
        self.timeout = timeout
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._waiting: asyncio.Future[ReadResponse] | None = None
        self._unit = 0
        self._tid = 0
        self._deadline = 0.0  # loop time by which the waiting request must be answered
        self._timer: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def connect(self) -> bool:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                transport, _ = await loop.create_connection(
                    lambda: _Link(self), self.host, self.port
                )
        except (OSError, TimeoutError):
            return False
        self._transport = transport
        self._buffer = b""
        return True

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._fail(ConnectionException("connection closed"))

    async def read_coils(self, address: int, *, count: int = 1, device_id: int = 1) -> Any:
        return await self._read(READ_COILS, address, count, device_id)

    async def read_discrete_inputs(
        self, address: int, *, count: int = 1, device_id: int = 1
    ) -> Any:
        return await self._read(READ_DISCRETE, address, count, device_id)

    async def read_holding_registers(
        self, address: int, *, count: int = 1, device_id: int = 1
    ) -> Any:
        return await self._read(READ_HOLDING, address, count, device_id)

    async def read_input_registers(
        self, address: int, *, count: int = 1, device_id: int = 1
    ) -> Any:
        return await self._read(READ_INPUT, address, count, device_id)

    async def _read(self, function_code: int, address: int, count: int, unit: int) -> ReadResponse:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionException(f"not connected to {self.host}:{self.port}")
        pdu = _REQUEST.pack(function_code, address, count)
        self._tid = self._tid % 0xFFFF + 1
        if self.rtu:
            frame = bytes([unit]) + pdu
            frame += FramerRTU.compute_CRC(frame).to_bytes(2, "big")
        else:
            frame = _MBAP.pack(self._tid, 0, len(pdu) + 1, unit) + pdu
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[ReadResponse] = loop.create_future()
        self._waiting = waiting
        self._unit = unit
        self._buffer = b""  # whatever a timed-out request left is stale
        self._deadline = loop.time() + self.timeout
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._check_deadline)
        transport.write(frame)
        try:
            return await waiting
        finally:
            self._waiting = None

    def _check_deadline(self) -> None:
        """One timer per client, re-armed for the request waiting when it fires, instead
        of a timer made and cancelled per request (a tenth of the CPU at 500 devices)."""
        self._timer = None
        waiting = self._waiting
        if waiting is None or waiting.done():
            return  # idle: the next request arms it again
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._check_deadline)
            return
        waiting.set_exception(
            ModbusIOException(f"no response from unit {self._unit} in {self.timeout} s")
        )

    def _received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiting is None or self._waiting.done():
            self._buffer = b""  # nobody asked: a late answer to a timed-out request
            return
        try:
            response = self._rtu_frame() if self.rtu else self._mbap_frame()
        except ModbusIOException as exc:
            self._buffer = b""
            self._waiting.set_exception(exc)
            return
        if response is not None:
            self._waiting.set_result(response)

    def _mbap_frame(self) -> ReadResponse | None:
        while len(self._buffer) >= 8:
            tid, protocol, length, _unit = _MBAP.unpack_from(self._buffer)
            end = 6 + length
            if protocol != 0 or length < 2 or end > _MAX_FRAME:
                raise ModbusIOException(f"not a Modbus TCP frame: {self._buffer[:8].hex()}")
            if len(self._buffer) < end:
                return None
            frame, self._buffer = self._buffer[7:end], self._buffer[end:]
            if tid == self._tid:  # else an answer to an earlier, timed-out request
                return _response(frame[0], frame[1:])
        return None

    def _rtu_frame(self) -> ReadResponse | None:
        data = self._buffer
        if len(data) < 5:
            return None
        function_code = data[1]
        size = 5 if function_code & _EXCEPTION else data[2] + 5
        if len(data) < size:
            return None
        frame = data[: size - 2]
        if FramerRTU.compute_CRC(frame) != int.from_bytes(data[size - 2 : size], "big"):
            raise ModbusIOException(f"RTU frame with a bad CRC: {data[:size].hex()}")
        if frame[0] != self._unit:
            raise ModbusIOException(f"answer from unit {frame[0]}, asked unit {self._unit}")
        self._buffer = data[size:]
        return _response(function_code, frame[2:])

    def _lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(ConnectionException(f"connection to {self.host}:{self.port} lost: {exc}"))

    def _fail(self, exc: Exception) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(exc)
