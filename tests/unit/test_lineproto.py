"""Line protocol encoding: the InfluxDB docs' escaping examples, the refusals, numbers, and
a round trip through a small reference parser written from InfluxDB 1.x's parser rules.
The same round trip against a real influxd is in tests/integration/test_influx_write.py."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.lineproto import (
    FieldValue,
    LineEncoder,
    LineProtocolError,
    encode_point,
    measurement_for,
)

TS = 1465839830100  # ms


# --- the docs' examples (docs.influxdata.com, InfluxDB 1.x line protocol, special characters)


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "line"),
    [
        ("weather", {"location": "us,midwest"}, {"temperature": 82.0},
         r"weather,location=us\,midwest temperature=82.0"),
        ("weather", {"location": "us-midwest"}, {"temp=rature": 82.0},
         r"weather,location=us-midwest temp\=rature=82.0"),
        ("weather", {"location place": "us-midwest"}, {"temperature": 82.0},
         r"weather,location\ place=us-midwest temperature=82.0"),
        ("wea,ther", {"location": "us-midwest"}, {"temperature": 82.0},
         r"wea\,ther,location=us-midwest temperature=82.0"),
        ("wea ther", {"location": "us-midwest"}, {"temperature": 82.0},
         r"wea\ ther,location=us-midwest temperature=82.0"),
        ("weather", {"location": "us-midwest"}, {"temperature": 'too"hot"'},
         r'weather,location=us-midwest temperature="too\"hot\""'),
        ("weather", {"location": "us-midwest"}, {"temperature_str": "too hot/cold"},
         r'weather,location=us-midwest temperature_str="too hot/cold"'),
        ("weather", {"location": "us-midwest"}, {"temperature_str": "too hot\\cold"},
         r'weather,location=us-midwest temperature_str="too hot\\cold"'),
        ("weather", {"location": "us-midwest"}, {"temperature_str": "too hot\\\\cold"},
         r'weather,location=us-midwest temperature_str="too hot\\\\cold"'),
        ("\"weather\"", {"location": "us-midwest"}, {"temperature": 82.0},
         r'"weather",location=us-midwest temperature=82.0'),
        ("weather", {"location": "us-midwest"}, {"temperature": 82.0, "bug_concentration": 98},
         r"weather,location=us-midwest temperature=82.0,bug_concentration=98i"),
        ("天气", {"地点": "北京"}, {"温度": 82.5}, "天气,地点=北京 温度=82.5"),
    ],
)  # fmt: skip
def test_docs_escaping_examples(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], line: str
) -> None:
    assert encode_point(measurement, tags, fields, TS) == f"{line} {TS}"


def test_tags_sorted_and_empty_tag_values_left_out() -> None:
    line = encode_point("pump", {"site": "s", "asset": "a", "station": ""}, {"v": 1.0}, 5)
    assert line == "pump,asset=a,site=s v=1.0 5"


def test_backslashes_in_names_stay_as_written() -> None:
    # 1.x keeps a backslash that precedes no special character; one before an escaped
    # character stays too (tags are unescaped by replacing only `\,` `\=` `\ `).
    line = encode_point("m", {"k": r"C:\data\x", "k2": r"a\,b"}, {"f": 1.0}, 1)
    assert line == r"m,k=C:\data\x,k2=a\\,b f=1.0 1"
    assert encode_point("m", {"k": "v"}, {r"a\"b": 1.0}, 1) == r'm,k=v a\\"b=1.0 1'


def test_newlines_are_kept_inside_string_fields() -> None:
    assert encode_point("m", {}, {"note": "a\nb"}, 1) == 'm note="a\nb" 1'


# --- numbers


def test_ints_have_the_i_suffix_floats_always_read_as_floats() -> None:
    line = encode_point("m", {}, {"i": 2, "f": 2.0, "b": True, "n": False, "e": 1e-5}, 1)
    assert line == "m i=2i,f=2.0,b=true,n=false,e=1e-05 1"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_exactly_and_never_look_like_ints(value: float) -> None:
    text = encode_point("m", {}, {"f": value}, 1).split(" ")[1].removeprefix("f=")
    assert float(text) == value
    assert "." in text or "e" in text
    assert not text.endswith("i")


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_int64_range_is_written(value: int) -> None:
    assert encode_point("m", {}, {"i": value}, 1) == f"m i={value}i 1"


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_ints_outside_int64_are_refused(value: int) -> None:
    with pytest.raises(LineProtocolError, match="int64"):
        encode_point("m", {}, {"i": value}, 1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused_with_a_reason(value: float) -> None:
    with pytest.raises(LineProtocolError, match=r"field 'level_m'.*no line protocol form"):
        encode_point("tank", {"asset": "t1"}, {"level_m": value}, 1)


def test_timestamps_outside_influx_range_are_refused() -> None:
    assert encode_point("m", {}, {"f": 1.0}, -1).endswith(" -1")
    with pytest.raises(LineProtocolError, match="time range"):
        encode_point("m", {}, {"f": 1.0}, 9_300_000_000_000)


# --- refusals


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "reason"),
    [
        ("m", {"k": "a\nb"}, {"f": 1.0}, "tag value .* newline"),
        ("m", {"a\nb": "v"}, {"f": 1.0}, "tag key .* newline"),
        ("m", {}, {"a\nb": 1.0}, "field key .* newline"),
        ("m\n", {}, {"f": 1.0}, "measurement .* newline"),
        ("m", {"k": "v\\"}, {"f": 1.0}, "ends with a backslash"),
        ("m", {"k\\": "v"}, {"f": 1.0}, "ends with a backslash"),
        ("m", {}, {"f\\": 1.0}, "ends with a backslash"),
        ("m", {}, {"a\\=b": 1.0}, "field key .* backslash before"),
        ("m", {}, {"a\\ b": 1.0}, "field key .* backslash before"),
        ("a\\,b", {}, {"f": 1.0}, "measurement .* backslash before"),
        ('a\\"b', {}, {"f": 1.0}, "measurement .* backslash before"),
        ("#m", {}, {"f": 1.0}, "starts with '#'"),
        ("\tm", {}, {"f": 1.0}, "starts with '#' or a blank"),
        ("m", {}, {"\tf": 1.0}, "starts with a blank"),
        ("", {}, {"f": 1.0}, "empty measurement"),
        ("m", {"": "v"}, {"f": 1.0}, "empty tag key"),
        ("m", {}, {"": 1.0}, "empty field key"),
        ("m", {}, {}, "at least one field"),
        ("m", {"k": "\ud800"}, {"f": 1.0}, "not valid Unicode"),
        ("m", {"a\\ b": 'c"d'}, {"f": 1.0}, "would not read"),
    ],
)
def test_unrepresentable_points_are_refused_never_altered(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], reason: str
) -> None:
    with pytest.raises(LineProtocolError, match=reason):
        encode_point(measurement, tags, fields, 1)


def test_measurement_for_each_kind() -> None:
    assert measurement_for("v", "pump") == "pump"
    assert measurement_for("v", "barrier_gate") == "barrier_gate"
    assert measurement_for("s", "pump") == "device_status"
    assert measurement_for("s", None) == "device_status"
    assert measurement_for("h", None) == "gateway_health"
    with pytest.raises(LineProtocolError):
        measurement_for("v", None)
    with pytest.raises(LineProtocolError):
        measurement_for("v", "gateway")


# --- round trip through a reference parser


def _unescape(text: str, chars: str) -> str:
    """1.x's unescaping of names: a backslash before one of `chars` goes, any other stays."""
    return re.sub(r"\\([" + re.escape(chars) + "])", r"\1", text)


def _split(text: str, sep: str) -> list[str]:
    """Split at `sep` not preceded by a backslash (how 1.x scans keys and tags)."""
    return re.split(r"(?<!\\)" + re.escape(sep), text)


def _parse_value(text: str) -> FieldValue:
    if text.startswith('"'):
        return re.sub(r'\\([\\"])', r"\1", text[1:-1])
    if text in ("true", "false"):
        return text == "true"
    return int(text[:-1]) if text.endswith("i") else float(text)


def _parse_fields(text: str) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    for m in re.finditer(r'((?:\\.|[^=\\])+)=("(?:\\.|[^"\\])*"|[^,]+)(?:,|$)', text, re.S):
        fields[_unescape(m[1], ',= "')] = _parse_value(m[2])
    return fields


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, FieldValue], int]:
    """A reference parser for what encode_point writes, from the 1.x rules: a key ends at
    the first space not after a backslash; a string field is quoted with `\\"` and `\\\\`
    inside; the timestamp follows the last space."""
    key, rest = _split(line, " ")[0], line[len(_split(line, " ")[0]) + 1 :]
    body, ts = rest.rsplit(" ", 1)
    name, *pairs = _split(key, ",")
    tags = {}
    for pair in pairs:
        k, v = _split(pair, "=")
        tags[_unescape(k, ", =")] = _unescape(v, ", =")
    return _unescape(name, ', ="'), tags, _parse_fields(body), int(ts)


TRICKY = 'ab ,="\\#\t中文'
names = st.text(alphabet=TRICKY, min_size=1, max_size=8).filter(lambda s: not s.endswith("\\"))
strict_names = names.filter(
    lambda s: s[0] not in "#\t" and not re.search(r'\\[,= "]', s)
)  # measurements and field keys: no backslash before a special character
values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=TRICKY + "\n'", max_size=10),
)


@given(
    measurement=strict_names,
    tags=st.dictionaries(names, names, max_size=3),
    fields=st.dictionaries(strict_names, values, min_size=1, max_size=3),
    ts=st.integers(-(10**12), 9 * 10**12),
)
def test_names_with_commas_spaces_quotes_backslashes_and_chinese_round_trip(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], ts: int
) -> None:
    try:
        line = encode_point(measurement, tags, fields, ts)
    except LineProtocolError as exc:
        # the one refusal left for these names: a tag with `\ ` and quotes in the line
        assert "would not read" in str(exc)
        assert any("\\ " in t for t in (*tags, *tags.values()))
        return
    assert parse_line(line) == (measurement, tags, fields, ts)


# --- LineEncoder: encode_point with the escaped names kept


Point = tuple[str, dict[str, str], dict[str, FieldValue], int]


def _outcome(
    encode: Callable[[str, dict[str, str], dict[str, FieldValue], int], str], p: Point
) -> str:
    try:
        return encode(*p)
    except LineProtocolError as exc:
        return f"refused: {exc}"


class Level(enum.IntEnum):  # an int subclass takes the general path, as in encode_point
    HIGH = 3


@given(
    points=st.lists(
        st.tuples(
            strict_names | st.sampled_from(["", "#m", "a\\,b"]),
            st.dictionaries(names | st.just(""), names | st.just(""), max_size=3),
            st.dictionaries(
                strict_names | st.sampled_from(["", "f\\", "\tf"]),
                values | st.sampled_from([math.nan, math.inf, 2**63, Level.HIGH, "\ud800"]),
                max_size=3,
            ),
            st.integers(-(10**13), 10**13),
        ),
        max_size=8,
    )
)
def test_the_encoder_writes_and_refuses_exactly_as_encode_point(points: list[Point]) -> None:
    encoder = LineEncoder(max_names=4)  # small: the caches fill and start over too
    for _ in range(2):  # the second time from what the encoder kept
        for point in points:
            assert _outcome(encoder.encode, point) == _outcome(encode_point, point)


def test_the_encoder_keeps_at_most_max_names_of_each() -> None:
    encoder = LineEncoder(max_names=10)
    for i in range(100):
        encoder.encode("pump", {"asset": f"pump_{i}"}, {f"f{i}": 1.0}, 1)
        assert len(encoder._series) <= 10 and len(encoder._field_keys) <= 10
    line = encoder.encode("pump", {"asset": "pump_99"}, {"f99": 2}, 5)
    assert line == "pump,asset=pump_99 f99=2i 5"


def test_the_encoder_refuses_a_bad_series_every_time() -> None:
    encoder = LineEncoder()
    for _ in range(2):
        with pytest.raises(LineProtocolError, match=r"tag value .* newline"):
            encoder.encode("m", {"k": "a\nb"}, {"f": 1.0}, 1)
