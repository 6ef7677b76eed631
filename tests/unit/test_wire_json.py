"""facility.wire's JSON reading of what others send: the piecewise parser a big batch
goes through gives json.loads's values and refusals, and whatever Python's parser
raises besides syntax errors (RecursionError, ValueError for long integers) comes out as
a WireError with a short reason."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility.wire import WireError, decode_ack, decode_batch, loads_piecewise, parse_json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=30,
)


@settings(max_examples=150)
@given(value=JSON_VALUES, indent=st.sampled_from([None, 0, 2]))
def test_piecewise_parse_equals_json_loads(value: Any, indent: int | None) -> None:
    text = json.dumps(value, indent=indent)
    assert loads_piecewise(text) == json.loads(text)


@settings(max_examples=250)
@given(
    text=st.text(alphabet='[]{}",: 0123456789.-eEtrufalsn\\\n ', max_size=40)
    | JSON_VALUES.map(json.dumps).map(lambda t: t[: len(t) // 2])
)
def test_piecewise_parse_refuses_what_json_loads_refuses(text: str) -> None:
    try:
        expected = json.loads(text)
    except json.JSONDecodeError as exc:
        with pytest.raises(json.JSONDecodeError) as refused:
            loads_piecewise(text)
        assert refused.value.pos == exc.pos
        return
    assert loads_piecewise(text) == expected


def _batch(rows: str) -> bytes:
    head = '{"v":1,"site":"s","station":"t","boot":1,"seq":1,"lane":"live","sent_ms":1,"r":'
    return zlib.compress((head + rows + "}").encode())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 60_000 + "]" * 60_000, "nested too deep"),
        ('{"a": ' + "7" * 5_000 + "}", "4300 digits"),
        ('{"a": "\\ud800" ', "not JSON"),
    ],
)
@pytest.mark.parametrize("size", ["small", "big"])
def test_what_pythons_parser_cannot_take_is_a_short_wire_error(
    text: str, reason: str, size: str
) -> None:
    padded = text if size == "small" else " " * 2_000_000 + text
    with pytest.raises(WireError, match=reason) as refused:
        parse_json(padded, "batch")
    assert len(str(refused.value)) < 200


def test_a_big_batch_is_read_row_by_row_with_the_same_result() -> None:
    rows = [["v", "pump_1", "flow_m3h", 1_000 + i, i * 0.5, "g"] for i in range(60_000)]
    batch, bad = decode_batch(_batch(json.dumps(rows)))
    assert [r.row() for r in batch.readings] == rows and not bad


@pytest.mark.parametrize(
    "ack",
    [
        b'{"v": 1, "boot": 1e400, "seq": 1}',
        b'{"v": 1, "boot": 1, "seq": ' + b"9" * 5_000 + b"}",
        b'{"v": 1, "boot": 1, "seq": 1.5}',
        b'{"v": 1, "boot": 1, "seq": "1"}',
        b'{"v": 1, "boot": 1, "seq": true}',
        b"[" * 3_000,
        b" " * 5_000,
    ],
)
def test_an_ack_the_reader_cannot_trust_is_a_wire_error(ack: bytes) -> None:
    with pytest.raises(WireError):
        decode_ack(ack)
