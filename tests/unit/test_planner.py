"""Modbus request planner: minimal against brute force on random maps, and decodes right."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facility.codec import FLOAT_TYPES, INTEGER_TYPES, ByteOrder, CodecError, DataType
from facility.config import BUILTIN_PROFILES
from facility.profile import ModbusProfile, ModbusSignal, Table
from facility.registers import RegisterImage, Value
from facility.sourcemap import load_yaml, validate
from gateway.modbus.planner import (
    BRUTE_FORCE_MAX_SIGNALS,
    PROTOCOL_MAX_BITS,
    PROTOCOL_MAX_REGISTERS,
    ReadRequest,
    RequestPlan,
    minimum_requests,
    plan_reads,
    protocol_limit,
    split_request,
)

# Modest example counts: the whole file must run in a few seconds.
FAST = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NUMERIC = [t for t in DataType if t in INTEGER_TYPES | FLOAT_TYPES]  # in declaration order


def builtin_modbus_profiles() -> dict[str, ModbusProfile]:
    profiles: dict[str, ModbusProfile] = {}
    for file in sorted(BUILTIN_PROFILES.glob("*.yaml")):
        doc = load_yaml(file)
        if isinstance(doc.data, dict) and doc.data.get("protocol") == "modbus":
            profile = validate(ModbusProfile, doc)
            profiles[profile.profile] = profile
    return profiles


BUILTIN = builtin_modbus_profiles()


def sig(name: str, table: Table, address: int, data_type: DataType, **extra: Any) -> ModbusSignal:
    return ModbusSignal(name=name, table=table, address=address, type=data_type, **extra)


def profile_of(*signals: ModbusSignal, address_base: Literal[0, 1] = 0) -> ModbusProfile:
    return ModbusProfile(
        profile="test",
        protocol="modbus",
        address_base=address_base,
        signals=list(signals),
    )


def span(profile: ModbusProfile, signal: ModbusSignal) -> tuple[int, int]:
    a = profile.protocol_address(signal)
    return a, a + signal.count


def limit_of(table: Table, max_registers: int, max_bits: int) -> int:
    return max_bits if table.is_bit_table else max_registers


# --- random register maps ------------------------------------------------------------


@st.composite
def signals_of(draw: st.DrawFn, table: Table, limit: int, address_base: int) -> list[ModbusSignal]:
    """Up to 12 signals of one table, dense enough to touch, overlap and share registers."""
    n = draw(st.integers(0, 12))
    top = draw(st.integers(0, 3 * limit))  # small: crowded and overlapping; large: gappy
    out: list[ModbusSignal] = []
    for _ in range(n):
        at = draw(st.integers(0, top))
        own_base = draw(st.sampled_from([None, None, 0, 1]))
        extra: dict[str, Any] = {"name": f"{table.value}_{len(out)}", "table": table}
        extra["address"] = at + (address_base if own_base is None else own_base)
        extra["address_base"] = own_base
        extra["byte_order"] = draw(st.sampled_from([None, *ByteOrder]))
        if table.is_bit_table:
            extra["type"] = DataType.BOOL
        else:
            kind = draw(st.sampled_from(["bit", "bit", "number", "number", "string"]))
            if kind == "bit":
                extra["type"] = DataType.BIT
                extra["bit"] = draw(st.integers(0, 15))
            elif kind == "string":
                extra["type"] = DataType.STRING
                extra["length"] = draw(st.integers(1, min(limit, 123)))
            else:
                extra["type"] = draw(st.sampled_from(NUMERIC))
        signal = ModbusSignal(**extra)
        if signal.count <= limit:
            out.append(signal)
    return out


@st.composite
def register_maps(draw: st.DrawFn) -> tuple[ModbusProfile, list[ModbusSignal], int, int, int]:
    """A random profile, the signals a poll wants, max_gap, max_registers, max_bits."""
    address_base: Literal[0, 1] = draw(st.sampled_from([0, 1]))
    max_registers = draw(st.integers(10, PROTOCOL_MAX_REGISTERS))
    max_bits = draw(st.one_of(st.integers(1, 40), st.just(PROTOCOL_MAX_BITS)))
    max_gap = draw(st.integers(0, 20))
    signals: list[ModbusSignal] = []
    for table in Table:
        limit = limit_of(table, max_registers, max_bits)
        signals += draw(signals_of(table, limit, address_base))
    if not signals:
        signals = [sig("only", Table.HOLDING, address_base, DataType.UINT16)]
    profile = ModbusProfile(
        profile="random",
        protocol="modbus",
        address_base=address_base,
        byte_order=draw(st.sampled_from(list(ByteOrder))),
        signals=signals,
    )
    everything = draw(st.booleans())
    wanted = signals if everything else [s for s in signals if draw(st.booleans())]
    return profile, wanted, max_gap, max_registers, max_bits


def check_plan(
    profile: ModbusProfile,
    wanted: Sequence[ModbusSignal],
    plan: RequestPlan,
    max_gap: int,
    max_registers: int,
    max_bits: int,
) -> None:
    """Coverage, limits and gaps, checked independently of the planner's own code."""
    homes: dict[str, list[ReadRequest]] = {s.name: [] for s in wanted}
    for request in plan:
        assert request.signals, "a request reads no wanted signal"
        limit = limit_of(request.table, max_registers, max_bits)
        assert 1 <= request.count <= limit
        spans = [span(profile, s) for s in request.signals]
        assert spans == sorted(spans), "signals are not in address order"
        assert request.address == min(a for a, _ in spans)
        assert request.end == max(b for _, b in spans)
        covered = set[int]()
        for signal, (a, b) in zip(request.signals, spans, strict=True):
            assert signal.table is request.table
            assert request.address <= a and b <= request.end
            homes[signal.name].append(request)
            covered.update(range(a, b))
        hole = 0  # longest run of registers read that belong to no signal of the request
        run = 0
        for address in range(request.address, request.end):
            run = 0 if address in covered else run + 1
            hole = max(hole, run)
        assert hole <= max_gap
    for name, requests in homes.items():
        assert len(requests) == 1, f"{name} is read by {len(requests)} requests"
    assert len(plan.signals) == len(wanted)
    assert plan.registers_read == plan.words_read + plan.bits_read


@FAST
@given(register_maps())
def test_plan_is_minimal_and_valid_on_random_maps(
    case: tuple[ModbusProfile, list[ModbusSignal], int, int, int],
) -> None:
    profile, wanted, max_gap, max_registers, max_bits = case
    plan = plan_reads(
        profile, wanted, max_gap=max_gap, max_registers=max_registers, max_bits=max_bits
    )
    check_plan(profile, wanted, plan, max_gap, max_registers, max_bits)
    total = 0
    for table in Table:
        limit = limit_of(table, max_registers, max_bits)
        best = minimum_requests(profile, wanted, table, max_gap=max_gap, limit=limit)
        assert len(plan.for_table(table)) == best
        total += best
    assert len(plan) == total


@FAST
@given(register_maps(), st.integers(0, 2**32))
def test_requests_decode_what_the_image_holds(
    case: tuple[ModbusProfile, list[ModbusSignal], int, int, int], seed: int
) -> None:
    profile, wanted, max_gap, max_registers, max_bits = case
    plan = plan_reads(
        profile, wanted, max_gap=max_gap, max_registers=max_registers, max_bits=max_bits
    )
    image = RegisterImage(profile)
    rng = random.Random(seed)
    for table, words in image.tables.items():
        top = 2 if table.is_bit_table else 1 << 16
        words[:] = [rng.randrange(top) for _ in words]
    decoded = dict(decode_plan(image, plan))
    assert set(decoded) == {s.name for s in wanted}
    for signal in wanted:
        assert same(decoded[signal.name], image.read(signal)), signal.name


def decode_plan(image: RegisterImage, plan: RequestPlan) -> Iterator[tuple[str, Value]]:
    """Answer every request from the image as a device would, then decode it."""
    for request in plan:
        at = request.address - image.spans[request.table].start
        words = image.tables[request.table][at : at + request.count]
        if request.table.is_bit_table:
            bits = [bool(w) for w in words]
            bits += [False] * (-len(bits) % 8)  # responses pad bits to whole bytes
            decoded = request.decode(image.profile, bits)
        else:
            decoded = request.decode(image.profile, words)
        assert [s for s, _ in decoded] == list(request.signals)
        for signal, value in decoded:
            yield signal.name, value


def same(a: Value, b: Value) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return both_nan or (a == b and type(a) is type(b))


# --- the brute force itself, against every set partition ------------------------------


def partitions(items: list[int]) -> Iterator[list[list[int]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for p in partitions(rest):
        yield [[first], *p]
        for i in range(len(p)):
            yield [*p[:i], [first, *p[i]], *p[i + 1 :]]


def any_group_is_readable(spans: list[tuple[int, int]], max_gap: int, limit: int) -> bool:
    """One request for any set of signals: hull within the limit, no hole > max_gap."""
    covered = {r for a, b in spans for r in range(a, b)}
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    if hi - lo > limit:
        return False
    run = 0
    for address in range(lo, hi):
        run = 0 if address in covered else run + 1
        if run > max_gap:
            return False
    return True


@settings(max_examples=150, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 24), st.sampled_from([1, 1, 2, 4, 7])), min_size=1, max_size=7
    ),
    st.integers(0, 4),
    st.integers(7, 14),
)
def test_runs_in_address_order_are_as_good_as_any_grouping(
    places: list[tuple[int, int]], max_gap: int, limit: int
) -> None:
    """Requests need not read runs of the sorted signals, but nothing gains by not doing so."""
    signals = [
        sig(f"s{i}", Table.INPUT, a, DataType.STRING, length=n) for i, (a, n) in enumerate(places)
    ]
    profile = profile_of(*signals)
    spans = [span(profile, s) for s in signals]
    best = min(
        len(p)
        for p in partitions(list(range(len(spans))))
        if all(any_group_is_readable([spans[i] for i in g], max_gap, limit) for g in p)
    )
    assert minimum_requests(profile, signals, Table.INPUT, max_gap=max_gap, limit=limit) == best
    assert len(plan_reads(profile, max_gap=max_gap, max_registers=limit)) == best


# --- the built-in profiles --------------------------------------------------------------

HR, IR, DI = Table.HOLDING, Table.INPUT, Table.DISCRETE

# profile -> max_gap -> (table, address, count) of every request, in plan order
EXPECTED: dict[str, dict[int, list[tuple[Table, int, int]]]] = {
    # Holding 0 and the drive-model string at 20..27 are 19 registers apart: the default
    # gap of 8 keeps them apart (4 requests); a gap of 19 reads through (3 requests).
    "pump_vfd": {
        0: [(HR, 0, 1), (HR, 20, 8), (IR, 0, 3), (IR, 4, 5), (IR, 10, 6), (DI, 0, 4)],
        8: [(HR, 0, 1), (HR, 20, 8), (IR, 0, 16), (DI, 0, 4)],
        18: [(HR, 0, 1), (HR, 20, 8), (IR, 0, 16), (DI, 0, 4)],
        19: [(HR, 0, 28), (IR, 0, 16), (DI, 0, 4)],
    },
    # 1-based registers 1..18 and discrete 1..2 are protocol 0..17 and 0..1.
    "transformer_monitor": {
        0: [(IR, 0, 18), (DI, 0, 2)],
        8: [(IR, 0, 18), (DI, 0, 2)],
    },
    "tank_level": {
        0: [(IR, 0, 1), (IR, 2, 3), (DI, 0, 2)],
        8: [(IR, 0, 5), (DI, 0, 2)],
    },
    "reservoir_gauge": {
        0: [(IR, 0, 3), (IR, 4, 5)],
        8: [(IR, 0, 9)],
    },
    "water_quality": {
        0: [(HR, 0, 1), (IR, 0, 8), (DI, 0, 3)],
        8: [(HR, 0, 1), (IR, 0, 8), (DI, 0, 3)],
    },
    # The example profiles of docs/your-own-devices.md.
    # The SDM630 blocks are 8 unmapped registers apart at most: one read at the default gap.
    "sdm630_energy_meter": {
        0: [(IR, 0, 12), (IR, 52, 2), (IR, 62, 2), (IR, 70, 6)],
        8: [(IR, 0, 12), (IR, 52, 24)],
    },
    # 4..7 and 10..11 unmapped: one read at the default gap, which a strict meter refuses.
    "magflow_cdab": {
        0: [(HR, 0, 4), (HR, 8, 2), (HR, 12, 2)],
        8: [(HR, 0, 14)],
    },
    "pressure_transmitter_rtu": {
        0: [(HR, 0, 3)],
        8: [(HR, 0, 3)],
    },
}


def test_every_builtin_modbus_profile_has_expectations() -> None:
    assert set(BUILTIN) == set(EXPECTED)


@pytest.mark.parametrize(
    ("name", "max_gap"), [(name, gap) for name, gaps in EXPECTED.items() for gap in gaps]
)
def test_builtin_profile_plans(name: str, max_gap: int) -> None:
    profile = BUILTIN[name]
    plan = plan_reads(profile, max_gap=max_gap)
    assert [(r.table, r.address, r.count) for r in plan] == EXPECTED[name][max_gap]
    check_plan(profile, profile.signals, plan, max_gap, PROTOCOL_MAX_REGISTERS, PROTOCOL_MAX_BITS)
    assert len(plan) == sum(
        minimum_requests(profile, profile.signals, table, max_gap=max_gap) for table in Table
    )


def test_default_gap_plans_pump_vfd_in_four_requests() -> None:
    assert len(plan_reads(BUILTIN["pump_vfd"])) == 4
    assert len(plan_reads(BUILTIN["transformer_monitor"])) == 2


def sample_value(signal: ModbusSignal, i: int) -> Value:
    """A value each signal can hold, different from signal to signal."""
    if signal.type in (DataType.BOOL, DataType.BIT):
        return i % 2 == 0
    if signal.type is DataType.STRING:
        return f"S{i}"[: 2 * signal.length]
    if signal.enum is not None:
        return sorted(signal.enum)[i % len(signal.enum)]
    if signal.type is DataType.INT16 or signal.type is DataType.UINT16:
        return round((i + 1) * 3 * signal.scale + signal.offset, 6)
    return (i + 1) * 1.25


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("max_gap", [0, 8, 40])
def test_builtin_profiles_decode_their_register_image(name: str, max_gap: int) -> None:
    profile = BUILTIN[name]
    values = {s.name: sample_value(s, i) for i, s in enumerate(profile.signals)}
    image = RegisterImage(profile)
    assert image.write_values(values) == []
    decoded = dict(decode_plan(image, plan_reads(profile, max_gap=max_gap)))
    assert set(decoded) == set(values)
    for signal in profile.signals:
        assert same(decoded[signal.name], image.read(signal)), signal.name
    if name == "pump_vfd":
        assert decoded["drive_model"] == values["drive_model"]
        assert decoded["alarm_dry_run"] is True
        assert decoded["fault_code"] == values["fault_code"]


# --- edge cases ---------------------------------------------------------------------------


def test_no_signals_no_requests() -> None:
    plan = plan_reads(BUILTIN["pump_vfd"], [])
    assert plan.requests == ()
    assert len(plan) == 0 and plan.registers_read == 0
    assert minimum_requests(BUILTIN["pump_vfd"], [], Table.INPUT) == 0


def test_only_the_wanted_signals_are_planned() -> None:
    profile = BUILTIN["pump_vfd"]
    wanted = [profile.signal("starts"), profile.signal("frequency_hz")]
    plan = plan_reads(profile, wanted)
    assert [(r.table, r.address, r.count) for r in plan] == [(IR, 0, 1), (IR, 12, 2)]
    assert [s.name for s in plan.signals] == ["frequency_hz", "starts"]
    assert len(plan_reads(profile, wanted, max_gap=11)) == 1


def test_a_signal_exactly_at_the_limit() -> None:
    big = sig("total", IR, 0, DataType.UINT64)
    profile = profile_of(big)
    plan = plan_reads(profile, max_registers=4)
    assert [(r.address, r.count) for r in plan] == [(0, 4)]
    with pytest.raises(ValueError, match="total"):
        plan_reads(profile, max_registers=3)


def test_a_request_exactly_at_the_limit() -> None:
    profile = profile_of(sig("a", IR, 0, DataType.UINT16), sig("b", IR, 9, DataType.UINT16))
    assert [(r.address, r.count) for r in plan_reads(profile, max_registers=10)] == [(0, 10)]
    assert len(plan_reads(profile, max_registers=9)) == 2


def test_a_string_of_123_registers() -> None:
    name = sig("name", HR, 0, DataType.STRING, length=123)
    tail = [sig("x", HR, 123, DataType.UINT16), sig("y", HR, 124, DataType.UINT16)]
    plan = plan_reads(profile_of(name, *tail))
    assert [(r.address, r.count, len(r.signals)) for r in plan] == [(0, 125, 3)]
    one_more = sig("z", HR, 125, DataType.UINT16)
    plan = plan_reads(profile_of(name, *tail, one_more))
    assert [(r.address, r.count) for r in plan] == [(0, 125), (125, 1)]
    image = RegisterImage(profile_of(name, *tail, one_more))
    image.write_values({"name": "x" * 246, "x": 1, "y": 2, "z": 3})
    decoded = dict(decode_plan(image, plan))
    assert decoded == {"name": "x" * 246, "x": 1, "y": 2, "z": 3}


def test_bit_tables_merge_up_to_2000_bits() -> None:
    coils = [sig(f"c{i}", Table.COIL, i, DataType.BOOL) for i in range(2001)]
    plan = plan_reads(profile_of(*coils), max_gap=0)
    assert [(r.address, r.count) for r in plan] == [(0, 2000), (2000, 1)]
    assert plan.bits_read == 2001 and plan.words_read == 0
    assert len(plan_reads(profile_of(*coils[:40]), max_bits=16)) == 3


def test_gap_of_exactly_max_gap_is_read_through() -> None:
    profile = profile_of(sig("a", IR, 0, DataType.UINT16), sig("b", IR, 4, DataType.UINT16))
    assert len(plan_reads(profile, max_gap=3)) == 1
    assert len(plan_reads(profile, max_gap=2)) == 2


def test_bits_of_one_register_and_overlaps_need_no_gap() -> None:
    profile = profile_of(
        sig("b0", IR, 15, DataType.BIT, bit=0),
        sig("b7", IR, 15, DataType.BIT, bit=7),
        sig("word", IR, 15, DataType.UINT16),
        sig("wide", IR, 14, DataType.UINT32),  # 14..15, overlaps the others
        sig("next", IR, 16, DataType.INT16),
    )
    plan = plan_reads(profile, max_gap=0)
    assert [(r.address, r.count) for r in plan] == [(14, 3)]
    assert [s.name for s in plan.requests[0].signals] == ["wide", "b0", "b7", "word", "next"]


def test_signals_inside_a_long_signal_are_bridged_by_it() -> None:
    profile = profile_of(
        sig("text", HR, 0, DataType.STRING, length=10),
        sig("inner", HR, 3, DataType.UINT16),
        sig("after", HR, 10, DataType.UINT16),
    )
    assert [(r.address, r.count) for r in plan_reads(profile, max_gap=0)] == [(0, 11)]


def test_address_base_is_applied() -> None:
    profile = profile_of(
        sig("a", IR, 1, DataType.UINT16),
        sig("b", IR, 2, DataType.UINT16),
        sig("c", IR, 2, DataType.UINT16, address_base=0),
        address_base=1,
    )
    plan = plan_reads(profile, max_gap=0)
    assert [(r.address, r.count) for r in plan] == [(0, 3)]
    with pytest.raises(ValueError, match="outside"):
        plan_reads(profile_of(sig("z", IR, 0, DataType.UINT16), address_base=1))


@pytest.mark.parametrize(
    ("max_gap", "max_registers", "max_bits"),
    [
        (-1, PROTOCOL_MAX_REGISTERS, PROTOCOL_MAX_BITS),
        (8, 0, PROTOCOL_MAX_BITS),
        (8, PROTOCOL_MAX_REGISTERS + 1, PROTOCOL_MAX_BITS),
        (8, PROTOCOL_MAX_REGISTERS, 0),
        (8, PROTOCOL_MAX_REGISTERS, PROTOCOL_MAX_BITS + 1),
    ],
)
def test_bad_options_raise(max_gap: int, max_registers: int, max_bits: int) -> None:
    with pytest.raises(ValueError):
        plan_reads(
            BUILTIN["tank_level"], max_gap=max_gap, max_registers=max_registers, max_bits=max_bits
        )


def test_brute_force_checks_its_options() -> None:
    profile = BUILTIN["pump_vfd"]
    with pytest.raises(ValueError, match="max_gap"):
        minimum_requests(profile, profile.signals, Table.INPUT, max_gap=-1)
    with pytest.raises(ValueError):
        minimum_requests(profile, profile.signals, Table.COIL, limit=PROTOCOL_MAX_BITS + 1)
    many = [sig(f"s{i}", IR, 2 * i, DataType.UINT16) for i in range(BRUTE_FORCE_MAX_SIGNALS + 1)]
    with pytest.raises(ValueError, match="brute force"):
        minimum_requests(profile_of(*many), many, Table.INPUT)
    assert protocol_limit(Table.HOLDING) == 125 and protocol_limit(Table.DISCRETE) == 2000


def test_repeated_signals_are_planned_once_and_name_clashes_raise() -> None:
    profile = BUILTIN["tank_level"]
    level = profile.signal("level_m")
    assert len(plan_reads(profile, [level, level]).signals) == 1
    clash = sig("level_m", IR, 40, DataType.UINT16)
    with pytest.raises(ValueError, match="level_m"):
        plan_reads(profile, [level, clash])


def test_decode_rejects_responses_of_the_wrong_length() -> None:
    profile = BUILTIN["tank_level"]
    words, bits = plan_reads(profile).requests
    assert (words.table, words.count, bits.table, bits.count) == (IR, 5, DI, 2)
    with pytest.raises(CodecError, match="4 registers"):
        words.decode(profile, [0, 0, 0, 0])
    with pytest.raises(CodecError):
        words.decode(profile, [0] * 6)
    with pytest.raises(CodecError):
        bits.decode(profile, [True])
    assert [v for _, v in bits.decode(profile, [True, False] + [False] * 6)] == [True, False]


def test_decode_with_a_foreign_profile_is_a_codec_error() -> None:
    request = plan_reads(BUILTIN["tank_level"]).requests[0]
    shifted = BUILTIN["tank_level"].model_copy(update={"address_base": 1})
    with pytest.raises(CodecError, match="outside"):
        request.decode(shifted, [0] * request.count)


def test_plans_are_immutable_values() -> None:
    plan = plan_reads(BUILTIN["water_quality"])
    assert plan == plan_reads(BUILTIN["water_quality"])
    with pytest.raises(AttributeError):
        plan.requests[0].count = 3  # type: ignore[misc]


@FAST
@given(register_maps())
def test_splitting_a_refused_request_keeps_every_signal_and_ends_at_single_signals(
    drawn: tuple[ModbusProfile, list[ModbusSignal], int, int, int],
) -> None:
    """What the gateway does on exception 2: split until each part is one signal (the
    worst case, a device refusing everything): every signal stays read exactly once and
    every part lies inside the request it came from."""
    profile, signals, max_gap, max_registers, max_bits = drawn
    plan = plan_reads(
        profile, signals, max_gap=max_gap, max_registers=max_registers, max_bits=max_bits
    )
    for request in plan:
        leaves, pending = [], [request]
        while pending:
            part = pending.pop()
            halves = split_request(profile, part)
            if halves is None:
                leaves.append(part)
                continue
            for half in halves:
                assert part.address <= half.address and half.end <= part.end
                assert half.signals and len(half.signals) < len(part.signals)
            pending.extend(halves)
        assert sorted(s.name for leaf in leaves for s in leaf.signals) == sorted(
            s.name for s in request.signals
        )
        assert all(len(leaf.signals) == 1 for leaf in leaves)


def test_a_refused_request_is_cut_at_its_widest_gap_first() -> None:
    profile = profile_of(
        sig("a", Table.HOLDING, 0, DataType.FLOAT32),
        sig("b", Table.HOLDING, 2, DataType.FLOAT32),
        sig("c", Table.HOLDING, 8, DataType.UINT32),  # 4 unmapped before it
        sig("d", Table.HOLDING, 16, DataType.BIT, bit=0),  # 6 unmapped before it
        sig("e", Table.HOLDING, 16, DataType.BIT, bit=1),
    )
    (whole,) = plan_reads(profile, max_gap=8)
    halves = split_request(profile, whole)
    assert halves is not None
    assert [(r.address, r.count) for r in halves] == [(0, 10), (16, 1)]
    again = split_request(profile, halves[0])
    assert again is not None and [(r.address, r.count) for r in again] == [(0, 4), (8, 2)]
    touching = split_request(profile, again[0])  # no gap: between the middle signals
    assert touching is not None and [(r.address, r.count) for r in touching] == [(0, 2), (2, 2)]
    bits = split_request(profile, halves[1])  # two bits of one register: one each
    assert bits is not None and [r.signals[0].name for r in bits] == ["d", "e"]
    assert split_request(profile, bits[0]) is None
