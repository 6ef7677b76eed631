"""The gateway's precompiled decoders equal decode_signal for every type, byte order,
scale and register content (hypothesis), so the faster path changes no value."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from facility.codec import ByteOrder, DataType, register_count
from facility.profile import ModbusProfile, ModbusSignal, Table
from facility.registers import decode_signal, signal_decoder

NUMERIC = [t for t in DataType if t not in (DataType.BOOL, DataType.BIT, DataType.STRING)]


def _profile(signal: ModbusSignal, order: ByteOrder) -> ModbusProfile:
    return ModbusProfile(profile="p", protocol="modbus", byte_order=order, signals=[signal])


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@given(
    kind=st.sampled_from(NUMERIC),
    order=st.sampled_from(list(ByteOrder)),
    scale=st.sampled_from([1.0, 0.1, 2.5, -1.0]),
    offset=st.sampled_from([0.0, -40.0, 3.25]),
    enum=st.booleans(),
    data=st.data(),
)
def test_numeric_decoders_equal_decode_signal(
    kind: DataType, order: ByteOrder, scale: float, offset: float, enum: bool, data: st.DataObject
) -> None:
    enum_map = {0: "off", 1: "on"} if enum and kind in (DataType.UINT16, DataType.INT16) else None
    signal = ModbusSignal(
        name="x",
        table=Table.HOLDING,
        address=0,
        type=kind,
        scale=scale,
        offset=offset,
        enum=enum_map,
    )
    profile = _profile(signal, order)
    registers = data.draw(
        st.lists(
            st.integers(0, 0xFFFF), min_size=register_count(kind), max_size=register_count(kind)
        )
    )
    assert _same(
        signal_decoder(profile, signal)(registers), decode_signal(profile, signal, registers)
    )


@given(
    bit=st.integers(0, 15), register=st.integers(0, 0xFFFF), order=st.sampled_from(list(ByteOrder))
)
def test_bit_and_bool_decoders_equal_decode_signal(
    bit: int, register: int, order: ByteOrder
) -> None:
    for signal in (
        ModbusSignal(name="b", table=Table.HOLDING, address=0, type=DataType.BIT, bit=bit),
        ModbusSignal(name="c", table=Table.COIL, address=0, type=DataType.BOOL),
    ):
        profile = _profile(signal, order)
        assert _same(
            signal_decoder(profile, signal)([register]), decode_signal(profile, signal, [register])
        )


@given(
    registers=st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4),
    order=st.sampled_from(list(ByteOrder)),
)
def test_string_decoder_equals_decode_signal(registers: list[int], order: ByteOrder) -> None:
    signal = ModbusSignal(name="s", table=Table.HOLDING, address=0, type=DataType.STRING, length=4)
    profile = _profile(signal, order)
    assert signal_decoder(profile, signal)(registers) == decode_signal(profile, signal, registers)
