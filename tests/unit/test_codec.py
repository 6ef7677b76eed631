"""Value codecs: property-based round trips plus known wire vectors for every byte order."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility.codec import (
    FLOAT_TYPES,
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
    register_count,
    scale_to_raw,
    unpack_raw,
)

# Modest example counts: the whole file must run in a few seconds.
FAST = settings(max_examples=25, deadline=None, database=None)

ORDERS = list(ByteOrder)
INT_TYPES = sorted(INTEGER_TYPES)
NUMERIC_TYPES = sorted(INTEGER_TYPES | FLOAT_TYPES)
Test = TypeVar("Test", bound=Callable[..., None])
FLOAT32_MAX = struct.unpack(">f", bytes.fromhex("7f7fffff"))[0]

# Scales seen in real register maps, plus negative and non-decimal ones.
scales = st.one_of(
    st.sampled_from([1.0, 0.1, 0.01, 0.001, 10.0, 100.0, 2.5, -1.0, -0.5]),
    st.floats(min_value=1e-3, max_value=1e3).flatmap(lambda s: st.sampled_from([s, -s])),
)
offsets = st.one_of(st.just(0.0), st.floats(min_value=-1e4, max_value=1e4))


def every_integer_type_and_order(
    **strategies: st.SearchStrategy[Any],
) -> Callable[[Test], Test]:
    """The test for each integer type in each byte order, hypothesis drawing `data` and
    these `strategies`."""

    def decorate(test: Test) -> Test:
        drawn = FAST(given(data=st.data(), **strategies)(test))
        each_type = pytest.mark.parametrize("data_type", INT_TYPES)(drawn)
        each_order: Test = pytest.mark.parametrize("order", ORDERS)(each_type)
        return each_order

    return decorate


def float32_bits(x: float) -> bytes:
    return struct.pack(">f", x)


def is_word(r: int) -> bool:
    return 0 <= r <= 0xFFFF


def struct_format(data_type: DataType) -> str:
    """The struct letter, read off the type's name (not the codec's own table): signed
    types in lower case, unsigned in upper."""
    letter = {"int16": "h", "int32": "i", "int64": "q", "float32": "f", "float64": "d"}
    name = data_type.value
    return letter[name[1:]].upper() if name.startswith("u") else letter[name]


def ints_of(data_type: DataType, cap: int | None = None) -> st.SearchStrategy[int]:
    lo, hi = integer_range(data_type)
    if cap is not None:
        lo, hi = max(lo, -cap), min(hi, cap)
    return st.integers(min_value=lo, max_value=hi)


# --- the basics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_type", "count"),
    [
        (DataType.BOOL, 1),
        (DataType.BIT, 1),
        (DataType.INT16, 1),
        (DataType.UINT16, 1),
        (DataType.INT32, 2),
        (DataType.UINT32, 2),
        (DataType.FLOAT32, 2),
        (DataType.INT64, 4),
        (DataType.UINT64, 4),
        (DataType.FLOAT64, 4),
    ],
)
def test_register_count(data_type: DataType, count: int) -> None:
    assert register_count(data_type) == count


def test_register_count_of_strings_is_their_length() -> None:
    assert register_count(DataType.STRING, 8) == 8


@pytest.mark.parametrize(
    ("data_type", "lo", "hi"),
    [
        (DataType.INT16, -32768, 32767),
        (DataType.UINT16, 0, 65535),
        (DataType.INT32, -(2**31), 2**31 - 1),
        (DataType.UINT32, 0, 2**32 - 1),
        (DataType.INT64, -(2**63), 2**63 - 1),
        (DataType.UINT64, 0, 2**64 - 1),
    ],
)
def test_integer_range(data_type: DataType, lo: int, hi: int) -> None:
    assert integer_range(data_type) == (lo, hi)


# --- raw round trips: every numeric type x every byte order -----------------------------


@every_integer_type_and_order()
def test_integer_round_trip_is_exact(
    data: st.DataObject, data_type: DataType, order: ByteOrder
) -> None:
    lo, hi = integer_range(data_type)
    raw = data.draw(st.one_of(st.sampled_from([lo, hi, 0, lo + 1, hi - 1]), ints_of(data_type)))
    registers = pack_raw(data_type, raw, order)
    assert len(registers) == register_count(data_type)
    assert all(is_word(r) for r in registers)
    back = unpack_raw(data_type, registers, order)
    assert back == raw
    assert type(back) is int


@pytest.mark.parametrize("order", ORDERS)
@FAST
@given(value=st.floats(width=32))
def test_float32_values_round_trip_bit_for_bit(value: float, order: ByteOrder) -> None:
    back = unpack_raw(DataType.FLOAT32, pack_raw(DataType.FLOAT32, value, order), order)
    if math.isnan(value):
        assert math.isnan(back)
    else:
        assert float32_bits(back) == float32_bits(value)
        assert back == value  # a float32-representable value survives exactly


@pytest.mark.parametrize("order", ORDERS)
@FAST
@given(value=st.floats())
def test_float32_any_double_rounds_like_struct_or_is_rejected(
    value: float, order: ByteOrder
) -> None:
    try:
        expected = float32_bits(value)
    except OverflowError:
        # too large for a float32 (but finite): the codec refuses it as a CodecError
        assert math.isfinite(value)
        assert abs(value) > FLOAT32_MAX
        with pytest.raises(CodecError):
            pack_raw(DataType.FLOAT32, value, order)
        return
    back = unpack_raw(DataType.FLOAT32, pack_raw(DataType.FLOAT32, value, order), order)
    if math.isnan(value):
        assert math.isnan(back)
    else:
        assert float32_bits(back) == expected


@pytest.mark.parametrize("order", ORDERS)
@FAST
@given(value=st.floats())
def test_float64_round_trip_is_exact(value: float, order: ByteOrder) -> None:
    back = unpack_raw(DataType.FLOAT64, pack_raw(DataType.FLOAT64, value, order), order)
    if math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == value
        assert struct.pack(">d", back) == struct.pack(">d", value)  # keeps the sign of -0.0


@pytest.mark.parametrize("data_type", NUMERIC_TYPES)
@FAST
@given(data=st.data())
def test_byte_orders_relate_to_big_and_little_endian(
    data: st.DataObject, data_type: DataType
) -> None:
    """ABCD is big-endian, DCBA little-endian; CDAB reverses ABCD's words, BADC swaps
    the two bytes inside each of ABCD's words."""
    if data_type in INTEGER_TYPES:
        raw: int | float = data.draw(ints_of(data_type))
    else:
        raw = data.draw(
            st.floats(width=32 if data_type is DataType.FLOAT32 else 64, allow_nan=False)
        )
    fmt = struct_format(data_type)
    abcd = pack_raw(data_type, raw, ByteOrder.ABCD)
    big = struct.pack(">" + fmt, raw)
    little = struct.pack("<" + fmt, raw)
    assert b"".join(r.to_bytes(2, "big") for r in abcd) == big
    dcba = pack_raw(data_type, raw, ByteOrder.DCBA)
    assert b"".join(r.to_bytes(2, "big") for r in dcba) == little
    assert pack_raw(data_type, raw, ByteOrder.CDAB) == abcd[::-1]
    assert pack_raw(data_type, raw, ByteOrder.BADC) == [((r & 0xFF) << 8) | (r >> 8) for r in abcd]


# --- scaled round trips: engineering value <-> raw <-> registers ------------------------


@every_integer_type_and_order(scale=scales, offset=offsets)
def test_scaled_integer_round_trip(
    data: st.DataObject, data_type: DataType, order: ByteOrder, scale: float, offset: float
) -> None:
    # Cap 64-bit raws at 2**40 so raw * scale stays exact enough in a double.
    raw = data.draw(ints_of(data_type, cap=2**40))
    value = raw_to_scaled(raw, scale, offset)
    assert scale_to_raw(value, data_type, scale, offset) == raw
    registers = pack_raw(data_type, scale_to_raw(value, data_type, scale, offset), order)
    raw_back = unpack_raw(data_type, registers, order)
    assert raw_back == raw
    assert raw_to_scaled(raw_back, scale, offset) == value


@every_integer_type_and_order(scale=scales, offset=offsets)
def test_scaled_integer_error_is_at_most_half_a_step(
    data: st.DataObject, data_type: DataType, order: ByteOrder, scale: float, offset: float
) -> None:
    lo, hi = integer_range(data_type)
    lo, hi = max(lo, -(2**40)), min(hi, 2**40)
    ends = sorted([lo * scale + offset, hi * scale + offset])
    value = data.draw(st.floats(min_value=ends[0], max_value=ends[1]))
    raw = scale_to_raw(value, data_type, scale, offset)
    assert isinstance(raw, int)
    back = raw_to_scaled(
        unpack_raw(data_type, pack_raw(data_type, raw, order), order), scale, offset
    )
    slack = 1e-9 * (abs(value) + abs(offset) + abs(scale))
    assert abs(back - value) <= abs(scale) / 2 + slack


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_type", sorted(FLOAT_TYPES))
@FAST
@given(value=st.floats(min_value=-1e6, max_value=1e6), scale=scales, offset=offsets)
def test_scaled_float_round_trip(
    value: float, data_type: DataType, order: ByteOrder, scale: float, offset: float
) -> None:
    raw = scale_to_raw(value, data_type, scale, offset)
    assert isinstance(raw, float)
    raw_back = unpack_raw(data_type, pack_raw(data_type, raw, order), order)
    if data_type is DataType.FLOAT64:
        assert raw_back == raw
        rel = 1e-12
    else:
        assert float32_bits(raw_back) == float32_bits(raw)
        rel = 2**-23
    back = raw_to_scaled(raw_back, scale, offset)
    # error of the float32 rounding of raw, scaled back, plus double rounding noise
    assert abs(back - value) <= rel * (abs(value) + abs(offset)) * 4 + 1e-12


def test_raw_to_scaled_leaves_unscaled_integers_alone() -> None:
    assert raw_to_scaled(1234) == 1234
    assert type(raw_to_scaled(1234)) is int
    assert raw_to_scaled(1234, 0.1) == pytest.approx(123.4)
    assert raw_to_scaled(100, 0.5, -10.0) == pytest.approx(40.0)


def test_scale_to_raw_rounds_to_nearest() -> None:
    assert scale_to_raw(49.994, DataType.UINT16, 0.01) == 4999
    assert scale_to_raw(49.996, DataType.UINT16, 0.01) == 5000
    assert scale_to_raw(-12.34, DataType.INT16, 0.1) == -123
    assert scale_to_raw(40.0, DataType.UINT16, 0.5, -10.0) == 100


@pytest.mark.parametrize("data_type", INT_TYPES)
@FAST
@given(
    value=st.floats(),
    scale=st.one_of(scales, st.floats(min_value=1e-300, max_value=1e-3)),
    offset=st.floats(allow_nan=False, allow_infinity=False),
)
def test_scale_to_raw_integer_returns_int_or_codec_error(
    data_type: DataType, value: float, scale: float, offset: float
) -> None:
    """Whatever the value, the caller sees an int or a CodecError, never another error."""
    try:
        raw = scale_to_raw(value, data_type, scale, offset)
    except CodecError:
        return
    assert isinstance(raw, int)


@pytest.mark.parametrize("data_type", INT_TYPES)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_scale_to_raw_rejects_non_finite_for_integers(data_type: DataType, value: float) -> None:
    with pytest.raises(CodecError):
        scale_to_raw(value, data_type)


def test_scale_to_raw_overflowing_to_infinity_is_a_codec_error() -> None:
    # finite value, but (value - offset) / scale overflows a double
    with pytest.raises(CodecError):
        scale_to_raw(1e308, DataType.INT32, 1e-3)


# --- errors -----------------------------------------------------------------------------


@every_integer_type_and_order()
def test_out_of_range_integers_raise(
    data: st.DataObject, data_type: DataType, order: ByteOrder
) -> None:
    lo, hi = integer_range(data_type)
    raw = data.draw(
        st.one_of(
            st.sampled_from([lo - 1, hi + 1]),
            st.integers(max_value=lo - 1),
            st.integers(min_value=hi + 1),
        )
    )
    with pytest.raises(CodecError):
        pack_raw(data_type, raw, order)


@pytest.mark.parametrize("data_type", INT_TYPES)
def test_integer_types_refuse_floats(data_type: DataType) -> None:
    with pytest.raises(CodecError):
        pack_raw(data_type, 1.5, ByteOrder.ABCD)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("value", [3.5e38, -3.5e38, 1e300])
def test_float32_too_large_raises(value: float, order: ByteOrder) -> None:
    with pytest.raises(CodecError):
        pack_raw(DataType.FLOAT32, value, order)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_type", NUMERIC_TYPES)
@FAST
@given(data=st.data())
def test_wrong_register_count_raises(
    data: st.DataObject, data_type: DataType, order: ByteOrder
) -> None:
    expected = register_count(data_type)
    n = data.draw(st.integers(min_value=0, max_value=8).filter(lambda n: n != expected))
    registers = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n))
    with pytest.raises(CodecError, match="registers"):
        unpack_raw(data_type, registers, order)


# --- known vectors ----------------------------------------------------------------------

KNOWN_VECTORS = [
    # float32 1.5 = 0x3FC00000
    (DataType.FLOAT32, 1.5, ByteOrder.ABCD, [0x3FC0, 0x0000]),
    (DataType.FLOAT32, 1.5, ByteOrder.CDAB, [0x0000, 0x3FC0]),
    (DataType.FLOAT32, 1.5, ByteOrder.BADC, [0xC03F, 0x0000]),
    (DataType.FLOAT32, 1.5, ByteOrder.DCBA, [0x0000, 0xC03F]),
    # int32 0x12345678: bytes A=12 B=34 C=56 D=78
    (DataType.INT32, 0x12345678, ByteOrder.ABCD, [0x1234, 0x5678]),
    (DataType.INT32, 0x12345678, ByteOrder.CDAB, [0x5678, 0x1234]),
    (DataType.INT32, 0x12345678, ByteOrder.BADC, [0x3412, 0x7856]),
    (DataType.INT32, 0x12345678, ByteOrder.DCBA, [0x7856, 0x3412]),
    (DataType.UINT32, 0x12345678, ByteOrder.CDAB, [0x5678, 0x1234]),
    (DataType.INT32, -2, ByteOrder.ABCD, [0xFFFF, 0xFFFE]),
    (DataType.INT32, -2, ByteOrder.CDAB, [0xFFFE, 0xFFFF]),
    # 16-bit values: only the byte swap matters
    (DataType.UINT16, 0x1234, ByteOrder.ABCD, [0x1234]),
    (DataType.UINT16, 0x1234, ByteOrder.CDAB, [0x1234]),
    (DataType.UINT16, 0x1234, ByteOrder.BADC, [0x3412]),
    (DataType.UINT16, 0x1234, ByteOrder.DCBA, [0x3412]),
    (DataType.INT16, -2, ByteOrder.ABCD, [0xFFFE]),
    (DataType.INT16, -2, ByteOrder.BADC, [0xFEFF]),
    # float64 1.0 = 0x3FF0_0000_0000_0000
    (DataType.FLOAT64, 1.0, ByteOrder.ABCD, [0x3FF0, 0x0000, 0x0000, 0x0000]),
    (DataType.FLOAT64, 1.0, ByteOrder.CDAB, [0x0000, 0x0000, 0x0000, 0x3FF0]),
    (DataType.FLOAT64, 1.0, ByteOrder.BADC, [0xF03F, 0x0000, 0x0000, 0x0000]),
    (DataType.FLOAT64, 1.0, ByteOrder.DCBA, [0x0000, 0x0000, 0x0000, 0xF03F]),
    # 64-bit integer with eight distinct bytes 01..08
    (DataType.UINT64, 0x0102030405060708, ByteOrder.ABCD, [0x0102, 0x0304, 0x0506, 0x0708]),
    (DataType.UINT64, 0x0102030405060708, ByteOrder.CDAB, [0x0708, 0x0506, 0x0304, 0x0102]),
    (DataType.UINT64, 0x0102030405060708, ByteOrder.BADC, [0x0201, 0x0403, 0x0605, 0x0807]),
    (DataType.UINT64, 0x0102030405060708, ByteOrder.DCBA, [0x0807, 0x0605, 0x0403, 0x0201]),
    (DataType.INT64, -1, ByteOrder.CDAB, [0xFFFF] * 4),
]


@pytest.mark.parametrize(
    ("data_type", "raw", "order", "registers"),
    KNOWN_VECTORS,
    ids=[f"{t.value}-{raw!r}-{o.value}" for t, raw, o, _ in KNOWN_VECTORS],
)
def test_known_vectors(
    data_type: DataType, raw: int | float, order: ByteOrder, registers: list[int]
) -> None:
    assert pack_raw(data_type, raw, order) == registers
    assert unpack_raw(data_type, registers, order) == raw


def test_profile_flowmeter_vector() -> None:
    """pump_vfd's flow_m3h is a word-swapped float32: 323.0 = 0x43A18000."""
    assert pack_raw(DataType.FLOAT32, 323.0, ByteOrder.CDAB) == [0x8000, 0x43A1]
    assert unpack_raw(DataType.FLOAT32, [0x8000, 0x43A1], ByteOrder.CDAB) == 323.0


# --- strings ----------------------------------------------------------------------------

ascii_text = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127))


@pytest.mark.parametrize("order", ORDERS)
@FAST
@given(data=st.data(), length=st.integers(min_value=1, max_value=12))
def test_string_round_trip(data: st.DataObject, order: ByteOrder, length: int) -> None:
    text = data.draw(
        st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=2 * length)
    )
    registers = encode_string(text, length, order)
    assert len(registers) == length
    assert all(is_word(r) for r in registers)
    assert decode_string(registers, order) == text


@pytest.mark.parametrize(
    ("order", "registers"),
    [
        (ByteOrder.ABCD, [0x5646, 0x442D, 0x3300]),  # "VF" "D-" "3\0"
        (ByteOrder.CDAB, [0x5646, 0x442D, 0x3300]),  # strings: no word swap
        (ByteOrder.BADC, [0x4656, 0x2D44, 0x0033]),
        (ByteOrder.DCBA, [0x4656, 0x2D44, 0x0033]),
    ],
)
def test_string_known_vectors(order: ByteOrder, registers: list[int]) -> None:
    assert encode_string("VFD-3", 3, order) == registers
    assert decode_string(registers, order) == "VFD-3"


@pytest.mark.parametrize("order", ORDERS)
def test_string_is_nul_padded(order: ByteOrder) -> None:
    assert encode_string("", 4, order) == [0, 0, 0, 0]
    assert decode_string([0, 0, 0, 0], order) == ""


@pytest.mark.parametrize("order", ORDERS)
@FAST
@given(data=st.data(), length=st.integers(min_value=0, max_value=8))
def test_string_too_long_raises(data: st.DataObject, order: ByteOrder, length: int) -> None:
    text = data.draw(ascii_text.filter(lambda t: len(t) > 2 * length))
    with pytest.raises(CodecError):
        encode_string(text, length, order)


@pytest.mark.parametrize("order", ORDERS)
def test_non_ascii_string_is_a_codec_error(order: ByteOrder) -> None:
    with pytest.raises(CodecError):
        encode_string("泵站", 4, order)


# --- bits -------------------------------------------------------------------------------


@FAST
@given(register=st.integers(0, 0xFFFF), bit=st.integers(0, 15), state=st.booleans())
def test_bit_round_trip_touches_only_its_bit(register: int, bit: int, state: bool) -> None:
    out = encode_bit(register, bit, state)
    assert is_word(out)
    assert decode_bit(out, bit) is state
    assert (out ^ register) & ~(1 << bit) == 0
    for other in range(16):
        if other != bit:
            assert decode_bit(out, other) == decode_bit(register, other)


@FAST
@given(register=st.integers(0, 0xFFFF))
def test_decode_bit_reads_every_bit(register: int) -> None:
    assert sum(decode_bit(register, b) << b for b in range(16)) == register


def test_bit_known_vectors() -> None:
    assert encode_bit(0x0000, 0, True) == 0x0001
    assert encode_bit(0x0000, 15, True) == 0x8000
    assert encode_bit(0xFFFF, 15, False) == 0x7FFF
    assert encode_bit(0x0004, 2, True) == 0x0004
    assert decode_bit(0x0004, 2) is True
    assert decode_bit(0x0004, 1) is False


@pytest.mark.parametrize("bit", [-1, 16, 31])
def test_encode_bit_outside_register_raises(bit: int) -> None:
    with pytest.raises(CodecError):
        encode_bit(0, bit, True)
