"""Serve simulated devices over real Modbus: one server per bus, one unit id per device.

A station's bus is what its gateway dials: a Modbus TCP endpoint (like the station's
RTU-over-TCP gateway), a serial-to-Ethernet converter speaking RTU framing over TCP, or a
real serial line (RTU). Each device on the bus answers on its own unit id from a
register image encoded through its profile.

Communication faults are injected per unit id at the frame level, where a real broken
device shows them: no answer, an exception code, a garbled or a truncated frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pymodbus import FramerType, pymodbus_apply_logging_config
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from facility.profile import Table
from facility.registers import RegisterImage
from facility.site import Bus, Transport

log = logging.getLogger(__name__)

FUNCTION_CODE = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}
TABLE_ORDER = (Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT)  # SimDevice's tuple
# function code -> the register table it reads or writes (strict devices check these)
REGISTER_TABLE = {
    3: Table.HOLDING,
    6: Table.HOLDING,
    16: Table.HOLDING,
    23: Table.HOLDING,
    4: Table.INPUT,
}


class CommsFault(StrEnum):
    NO_RESPONSE = "no_response"  # device dead or unplugged: the client times out
    EXCEPTION = "exception"  # device answers with a Modbus exception code
    GARBLED = "garbled"  # corrupted frame (bad function code on TCP, bad CRC on RTU)
    SHORT = "short"  # truncated frame


@dataclass
class UnitFault:
    kind: CommsFault
    exception_code: int = 4


@dataclass
class BusServer:
    """One simulated bus and the devices on it."""

    bus: Bus
    images: dict[int, RegisterImage]  # unit id -> image
    faults: dict[int, UnitFault] = field(default_factory=dict)
    strict: set[int] = field(default_factory=set)  # units refusing unmapped registers
    port: int = 0
    _server: Any = None
    _pushing: bool = False  # our own register updates must pass the fault hooks
    requests: int = 0

    @property
    def rtu_framing(self) -> bool:
        return self.bus.transport in (Transport.RTU, Transport.RTU_OVER_TCP)

    def _unit_of(self, frame: bytes) -> int:
        if self.rtu_framing:
            return frame[0] if frame else -1
        return frame[6] if len(frame) > 6 else -1

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self.requests += 1
            return data
        unit = self._unit_of(data)
        if unit not in self.images and self.rtu_framing:
            return b""  # nobody on a serial line answers an address nobody has
        fault = self.faults.get(unit)
        if fault is None or fault.kind is CommsFault.EXCEPTION:
            return data
        if fault.kind is CommsFault.NO_RESPONSE:
            return b""
        if fault.kind is CommsFault.SHORT:
            return data[: max(1, len(data) // 2)]
        if self.rtu_framing:  # flip the CRC: the client must discard the frame
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data[:7] + b"\x63" + data[8:]  # function code no device sends

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        if not sending:
            return pdu
        if pdu.dev_id not in self.images:  # a TCP gateway with no such device behind it
            return _exception(pdu, ExcCodes.GATEWAY_NO_RESPONSE)
        fault = self.faults.get(pdu.dev_id)
        if fault is not None and fault.kind is CommsFault.EXCEPTION:
            return _exception(pdu, fault.exception_code)
        return pdu

    def _action(self, unit: int) -> Any:
        """Runs before the datastore is touched: a dead or failing device stores no write."""

        mapped = _mapped_registers(self.images[unit])

        async def action(
            function_code: int, _start: int, address: int, count: int, *_: Any
        ) -> ExcCodes | None:
            if self._pushing:
                return None
            fault = self.faults.get(unit)
            if fault is not None and fault.kind is CommsFault.NO_RESPONSE:
                raise NoSuchIdException(f"unit {unit} is not responding (injected)")
            if fault is not None and fault.kind is CommsFault.EXCEPTION:
                return ExcCodes(fault.exception_code)
            table = REGISTER_TABLE.get(function_code)
            if unit not in self.strict or table is None:
                return None
            unmapped = any(a not in mapped[table] for a in range(address, address + count))
            return ExcCodes.ILLEGAL_ADDRESS if unmapped else None

        return action

    def _devices(self) -> list[SimDevice]:
        devices = []
        for unit, image in self.images.items():
            blocks: list[list[SimData]] = []
            for table in TABLE_ORDER:
                span = image.spans.get(table)
                if span is None:  # an unused table still needs a (tiny) block
                    blocks.append([_block(table, 0, [0])])
                else:
                    blocks.append([_block(table, span.start, image.tables[table])])
            simdata = (blocks[0], blocks[1], blocks[2], blocks[3])
            devices.append(SimDevice(id=unit, simdata=simdata, action=self._action(unit)))
        return devices

    async def start(self) -> None:
        pymodbus_apply_logging_config(logging.CRITICAL)  # injected faults are not our errors
        hooks: dict[str, Any] = {
            "trace_packet": self._trace_packet,
            "trace_pdu": self._trace_pdu,
            "ignore_missing_devices": True,
        }
        if self.bus.transport is Transport.RTU:
            self._server = ModbusSerialServer(
                self._devices(),
                framer=FramerType.RTU,
                port=self.bus.serial_port,
                baudrate=self.bus.baudrate,
                parity=self.bus.parity,
                stopbits=self.bus.stopbits,
                bytesize=self.bus.bytesize,
                **hooks,
            )
            await self._server.serve_forever(background=True)
            return
        framer = FramerType.RTU if self.rtu_framing else FramerType.SOCKET
        self._server = ModbusTcpServer(
            self._devices(), framer=framer, address=(self.bus.host, self.bus.port), **hooks
        )
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]

    async def push(self, unit: int, tables: tuple[Table, ...] = TABLE_ORDER) -> None:
        """Copy a device's image into the live server (after the physics moved on)."""
        image = self.images[unit]
        for table in tables:
            span = image.spans.get(table)
            if span is None:
                continue
            values: list[Any] = image.tables[table]
            if table.is_bit_table:
                values = [bool(v) for v in values]
            self._pushing = True
            try:
                await self._server.async_setValues(unit, FUNCTION_CODE[table], span.start, values)
            finally:
                self._pushing = False

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None


def _mapped_registers(image: RegisterImage) -> dict[Table, frozenset[int]]:
    """Protocol addresses of the registers the device's profile lists, per table."""
    profile = image.profile
    return {
        table: frozenset(
            a
            for s in profile.signals
            if s.table is table
            for a in range(profile.protocol_address(s), profile.protocol_address(s) + s.count)
        )
        for table in (Table.HOLDING, Table.INPUT)
    }


def _exception(pdu: Any, code: int) -> Any:
    return ExceptionResponse(
        pdu.function_code & 0x7F, code, device_id=pdu.dev_id, transaction=pdu.transaction_id
    )


def _block(table: Table, start: int, values: list[int]) -> SimData:
    if table.is_bit_table:
        return SimData(
            start, count=len(values), values=[bool(v) for v in values], datatype=DataType.BITS
        )
    return SimData(start, count=len(values), values=list(values), datatype=DataType.REGISTERS)
