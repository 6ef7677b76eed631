"""Value codecs: engineering values <-> Modbus registers and bits.

The simulators encode with these functions and the gateway decodes with them, so a
device profile is the single source of truth for how a value sits on the wire.

Byte orders name the four bytes of a 32-bit value A (most significant) .. D as they
appear on the wire, register by register:

- ABCD: big-endian words, big-endian bytes (Modbus "standard")
- CDAB: word-swapped ("little-endian word order", common on PLCs)
- BADC: byte-swapped inside each word
- DCBA: fully little-endian

The two rules (reverse the word order; swap the bytes in each word) apply to every
word of a value. For 64-bit values (bytes A..H) CDAB reverses all four words
(GH EF CD AB: the least significant word first), not the two words of each 32-bit
half; BADC gives BA DC FE HG and DCBA HG FE DC BA. 16-bit values change only with the
byte swap (BADC, DCBA). Vectors: tests/unit/test_codec.py, docs/your-own-devices.md.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from enum import StrEnum


class DataType(StrEnum):
    BOOL = "bool"  # a coil or discrete input
    BIT = "bit"  # one bit inside a 16-bit register
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


class ByteOrder(StrEnum):
    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


class CodecError(ValueError):
    """A value cannot be encoded, or registers cannot be decoded, as the profile says."""


_STRUCT: dict[DataType, str] = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


def struct_code(data_type: DataType) -> str:
    """The struct format letter of a numeric type."""
    return _STRUCT[data_type]


INTEGER_TYPES = frozenset(
    {
        DataType.INT16,
        DataType.UINT16,
        DataType.INT32,
        DataType.UINT32,
        DataType.INT64,
        DataType.UINT64,
    }
)
FLOAT_TYPES = frozenset({DataType.FLOAT32, DataType.FLOAT64})


@functools.cache  # on the gateway's hot path: one call per decoded signal
def register_count(data_type: DataType, length: int = 0) -> int:
    """Registers a value of this type occupies (strings: `length` registers)."""
    if data_type is DataType.STRING:
        return length
    if data_type in (DataType.BOOL, DataType.BIT):
        return 1
    return struct.calcsize(">" + _STRUCT[data_type]) // 2


def integer_range(data_type: DataType) -> tuple[int, int]:
    bits = register_count(data_type) * 16
    if data_type.value.startswith("u"):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _to_wire(big_endian: bytes, order: ByteOrder) -> bytes:
    words = [big_endian[i : i + 2] for i in range(0, len(big_endian), 2)]
    if order in (ByteOrder.CDAB, ByteOrder.DCBA):
        words.reverse()
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        words = [w[::-1] for w in words]
    return b"".join(words)


def _from_wire(wire: bytes, order: ByteOrder) -> bytes:
    # Each transformation is its own inverse, and they commute.
    return _to_wire(wire, order)


def _bytes_to_registers(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _registers_to_bytes(registers: Sequence[int]) -> bytes:
    return b"".join(r.to_bytes(2, "big") for r in registers)


def pack_raw(data_type: DataType, raw: int | float, order: ByteOrder) -> list[int]:
    """Raw (unscaled) number -> registers in wire order."""
    fmt = ">" + _STRUCT[data_type]
    if data_type in INTEGER_TYPES:
        lo, hi = integer_range(data_type)
        if not isinstance(raw, int) or not lo <= raw <= hi:
            raise CodecError(f"{raw!r} does not fit {data_type.value} [{lo}, {hi}]")
    try:
        big = struct.pack(fmt, raw)
    except (struct.error, OverflowError) as exc:
        raise CodecError(f"{raw!r} cannot be packed as {data_type.value}: {exc}") from exc
    return _bytes_to_registers(_to_wire(big, order))


def unpack_raw(data_type: DataType, registers: Sequence[int], order: ByteOrder) -> int | float:
    """Registers in wire order -> raw (unscaled) number."""
    expected = register_count(data_type)
    if len(registers) != expected:
        raise CodecError(f"{data_type.value} needs {expected} registers, got {len(registers)}")
    big = _from_wire(_registers_to_bytes(registers), order)
    value: int | float = struct.unpack(">" + _STRUCT[data_type], big)[0]
    return value


def encode_string(text: str, length: int, order: ByteOrder = ByteOrder.ABCD) -> list[int]:
    """ASCII text, NUL-padded to `length` registers (two characters a register)."""
    try:
        data = text.encode("ascii", errors="strict")
    except UnicodeEncodeError as exc:
        raise CodecError(f"{text!r} is not ASCII: {exc.reason}") from exc
    if len(data) > 2 * length:
        raise CodecError(f"string of {len(data)} bytes does not fit {length} registers")
    data = data.ljust(2 * length, b"\x00")
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        data = b"".join(data[i : i + 2][::-1] for i in range(0, len(data), 2))
    return _bytes_to_registers(data)


def decode_string(registers: Sequence[int], order: ByteOrder = ByteOrder.ABCD) -> str:
    data = _registers_to_bytes(registers)
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        data = b"".join(data[i : i + 2][::-1] for i in range(0, len(data), 2))
    return data.rstrip(b"\x00").decode("ascii", errors="replace")


def scale_to_raw(
    value: float, data_type: DataType, scale: float = 1.0, offset: float = 0.0
) -> int | float:
    """Engineering value -> raw number (integers round to nearest, then clamp-check)."""
    if not math.isfinite(value) and data_type in INTEGER_TYPES:
        raise CodecError(f"{value!r} cannot be stored as {data_type.value}")
    raw = (value - offset) / scale
    if data_type in INTEGER_TYPES:
        if not math.isfinite(raw):  # finite value, but the scaling overflowed
            raise CodecError(f"{value!r} scaled by {scale!r} overflows {data_type.value}")
        return round(raw)
    return raw


def raw_to_scaled(raw: int | float, scale: float = 1.0, offset: float = 0.0) -> float | int:
    if scale == 1.0 and offset == 0.0:
        return raw
    return raw * scale + offset


def encode_bit(register: int, bit: int, state: bool) -> int:
    if not 0 <= bit <= 15:
        raise CodecError(f"bit {bit} outside 0..15")
    return register | (1 << bit) if state else register & ~(1 << bit) & 0xFFFF


def decode_bit(register: int, bit: int) -> bool:
    return bool((register >> bit) & 1)
