"""A device's register image: engineering values <-> the four Modbus tables.

Both sides use it: the simulator encodes a device's values into an image it serves, and
the gateway decodes the registers it read through the same profile. Addresses here are
protocol (0-based PDU) addresses, after the profile's address base is applied.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from facility.codec import (
    INTEGER_TYPES,
    ByteOrder,
    CodecError,
    DataType,
    decode_bit,
    decode_string,
    encode_bit,
    encode_string,
    integer_range,
    pack_raw,
    raw_to_scaled,
    scale_to_raw,
    struct_code,
    unpack_raw,
)
from facility.profile import ModbusProfile, ModbusSignal, Table

Value = bool | int | float | str


@dataclass
class TableSpan:
    start: int
    count: int


@dataclass
class RegisterImage:
    """The current contents of one device's tables, sized to what its profile uses."""

    profile: ModbusProfile
    tables: dict[Table, list[int]] = field(default_factory=dict)  # bits stored as 0/1
    spans: dict[Table, TableSpan] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for table in Table:
            signals = [s for s in self.profile.signals if s.table is table]
            if not signals:
                continue
            start = min(self.profile.protocol_address(s) for s in signals)
            end = max(self.profile.protocol_address(s) + s.count for s in signals)
            self.spans[table] = TableSpan(start, end - start)
            self.tables[table] = [0] * (end - start)

    def write(self, signal: ModbusSignal, value: Value) -> None:
        """Encode one engineering value into the image."""
        table = self.tables[signal.table]
        at = self.profile.protocol_address(signal) - self.spans[signal.table].start
        table[at : at + signal.count] = encode_signal(self.profile, signal, value, table[at])

    def write_values(self, values: dict[str, Value]) -> list[str]:
        """Encode every value the profile knows; return the names it could not encode."""
        failed: list[str] = []
        for signal in self.profile.signals:
            if signal.name in values:
                try:
                    self.write(signal, values[signal.name])
                except CodecError:
                    failed.append(signal.name)
        return failed

    def read(self, signal: ModbusSignal) -> Value:
        table = self.tables[signal.table]
        at = self.profile.protocol_address(signal) - self.spans[signal.table].start
        return decode_signal(self.profile, signal, table[at : at + signal.count])


def encode_signal(
    profile: ModbusProfile, signal: ModbusSignal, value: Value, current: int = 0
) -> list[int]:
    """Engineering value -> registers (or one 0/1 bit) as the device puts them on the wire.

    `current` is the register a bit lives in, so neighbouring bits are kept.
    """
    order = profile.order_of(signal)
    if signal.type is DataType.BOOL:
        return [1 if value else 0]
    if signal.type is DataType.BIT:
        assert signal.bit is not None
        return [encode_bit(current, signal.bit, bool(value))]
    if signal.type is DataType.STRING:
        return encode_string(str(value), signal.length, order)
    if isinstance(value, str):
        raise CodecError(f"{signal.name}: text {value!r} for a numeric signal")
    if signal.enum is not None and isinstance(value, int):
        raw: int | float = value
    else:
        raw = scale_to_raw(float(value), signal.type, signal.scale, signal.offset)
    return pack_raw(signal.type, _clamp(signal.type, raw), order)


def decode_signal(profile: ModbusProfile, signal: ModbusSignal, registers: Sequence[int]) -> Value:
    """Registers as read from the wire -> engineering value."""
    order = profile.order_of(signal)
    if signal.type is DataType.BOOL:
        return bool(registers[0])
    if signal.type is DataType.BIT:
        assert signal.bit is not None
        return decode_bit(registers[0], signal.bit)
    if signal.type is DataType.STRING:
        return decode_string(registers, order)
    raw = unpack_raw(signal.type, registers, order)
    if signal.enum is not None:
        return raw
    return raw_to_scaled(raw, signal.scale, signal.offset)


SignalDecoder = Callable[[Sequence[int]], Value]


def signal_decoder(profile: ModbusProfile, signal: ModbusSignal) -> SignalDecoder:
    """decode_signal for one signal, with its type, byte order and scale chosen once.

    The gateway builds these when it plans a device, so a poll pays for the arithmetic
    only; the result equals decode_signal's for every register sequence of the right
    length (tested). Strings, which no hot path holds, go the general way."""
    order = profile.order_of(signal)
    kind = signal.type
    if kind is DataType.BOOL:
        return lambda registers: bool(registers[0])
    if kind is DataType.BIT:
        assert signal.bit is not None
        mask = 1 << signal.bit
        return lambda registers: bool(registers[0] & mask)
    if kind is DataType.STRING:
        return lambda registers: decode_string(registers, order)
    raw = _raw_decoder(kind, order)
    scale, offset = signal.scale, signal.offset
    if signal.enum is not None or (scale == 1.0 and offset == 0.0):
        return raw
    return lambda registers: raw(registers) * scale + offset


def _raw_decoder(kind: DataType, order: ByteOrder) -> Callable[[Sequence[int]], int | float]:
    byte_swap = order in (ByteOrder.BADC, ByteOrder.DCBA)
    word_swap = order in (ByteOrder.CDAB, ByteOrder.DCBA)
    if kind is DataType.UINT16 and not byte_swap:
        return lambda registers: registers[0]
    if kind is DataType.INT16 and not byte_swap:
        return lambda registers: registers[0] - 0x10000 if registers[0] & 0x8000 else registers[0]
    words = struct.calcsize(struct_code(kind)) // 2
    # Bytes on the wire, word by word; swapping bytes inside each word is the same as
    # packing each register little-endian, and the word swap reverses the registers.
    pack = struct.Struct(("<" if byte_swap else ">") + "H" * words).pack
    unpack = struct.Struct(">" + struct_code(kind)).unpack

    def decode(registers: Sequence[int]) -> int | float:
        if len(registers) != words:
            raise CodecError(f"{kind.value} needs {words} registers, got {len(registers)}")
        value: int | float = unpack(pack(*(registers[::-1] if word_swap else registers)))[0]
        return value

    return decode


def _clamp(data_type: DataType, raw: int | float) -> int | float:
    """A transmitter saturates at its range instead of wrapping around."""
    if data_type in INTEGER_TYPES:
        lo, hi = integer_range(data_type)
        return max(lo, min(hi, int(raw)))
    return raw
