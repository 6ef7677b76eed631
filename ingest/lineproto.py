r"""InfluxDB line protocol: one reading -> one line, escaped the way InfluxDB 1.x parses it.

    measurement[,tag_key=tag_value...] field_key=field_value[,...] timestamp_ms

Escaping (backslash before the character), checked against a real influxd 1.6:

- measurement: comma, space.
- tag keys, tag values, field keys: comma, equals sign, space; field keys also the double
  quote (1.x unescapes `\"` in field keys and measurements, so `a\"b` is sent as
  `a\\"b`).
- string field values: double quote and backslash; a newline is kept as it is (the
  parser knows it is inside quotes).
- any other backslash is written as it is: the 1.x parser keeps a backslash that does not
  precede one of the characters above (`\\` in a name stays two backslashes, unlike
  the 2.x parser, which reads it as one).

Names that line protocol cannot carry are refused with LineProtocolError, never altered:
an empty name, a newline (ends the line), a trailing backslash (would escape the
separator after it); in field keys a backslash before `,` `=` or a space, in measurements
a backslash before `,` `=` `"` or a space (1.x scans and unescapes those differently, the
stored name would lose or gain a backslash); a measurement starting with `#` (a comment
line: dropped without an error), a measurement or field key starting with a tab or a
NUL (skipped as blanks); and the rare line whose tags hold a backslash
before a space and that also has quotes, which the 1.x line splitter would cut wrongly.

Numbers: an int is written with the `i` suffix (`3i`); a float is written with repr(),
which always has a `.` or an exponent (`1.0`, `1e-05`), so a float never reads back as
an int and a field never flips type. A bare `1` would also be a float to InfluxDB; `i` is
what makes an integer. NaN and infinities have no line protocol form: refused.
Timestamps are UTC milliseconds; the writer sends `precision=ms`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from facility.logs import preview

FieldValue = bool | int | float | str

# InfluxDB stores nanoseconds in an int64 and refuses times within 2 ns of its ends.
_MIN_TS_MS = -9223372036854775806 // 1_000_000 + 1
_MAX_TS_MS = 9223372036854775806 // 1_000_000
_INT64 = (-(2**63), 2**63 - 1)

_MEASUREMENT_ESC = str.maketrans({",": "\\,", " ": "\\ "})
_TAG_ESC = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_FIELD_KEY_ESC = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", '"': '\\"'})
_STRING_ESC = str.maketrans({"\\": "\\\\", '"': '\\"'})

# The asset kinds that have a measurement of their own (one per asset type).
ASSET_MEASUREMENTS = frozenset(
    ("pump", "transformer", "tank", "reservoir", "water_quality", "barrier_gate", "parking_lot")
)
DEVICE_STATUS = "device_status"
GATEWAY_HEALTH = "gateway_health"


class LineProtocolError(ValueError):
    """A point that line protocol cannot carry; the text says which part and why."""


def measurement_for(kind: str, asset_kind: str | None) -> str:
    """The measurement a reading belongs to: its asset type's for a device value ('v'),
    device_status for communication status ('s'), gateway_health for the gateway ('h')."""
    if kind == "s":
        return DEVICE_STATUS
    if kind == "h":
        return GATEWAY_HEALTH
    if kind == "v" and asset_kind in ASSET_MEASUREMENTS:
        return asset_kind
    raise LineProtocolError(
        f"no measurement for kind {preview(kind)} of asset kind {preview(asset_kind)}"
    )


def encode_point(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ms: int
) -> str:
    """One line (without the newline). Tags are sorted by key, as InfluxDB prefers; a tag
    with an empty value is left out (InfluxDB has no empty tag values: it is the same
    series as one without the tag)."""
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    if not _MIN_TS_MS <= ts_ms <= _MAX_TS_MS:
        raise LineProtocolError(f"timestamp {ts_ms} ms is outside InfluxDB's time range")
    series = _series_key(measurement, tags)
    body = ",".join(f"{_field_key(k)}={_value(k, v)}" for k, v in fields.items())
    return _checked(f"{series} {body} {ts_ms}")


class LineEncoder:
    """encode_point for a stream of points over few series and field names, as an ingest
    writes them: most of encode_point's work is escaping and checking the measurement,
    the tags and the field keys, so their escaped forms are kept and reused. Lines and
    refusals are exactly encode_point's."""

    def __init__(self, max_names: int = 10_000) -> None:
        # Bounded: a gateway's own health readings may carry any names, and a cache that
        # grows with whatever arrives would be a memory leak.
        self.max_names = max_names
        self._series: dict[tuple[str, ...], str] = {}
        self._field_keys: dict[str, str] = {}

    def encode(
        self,
        measurement: str,
        tags: Mapping[str, str],
        fields: Mapping[str, FieldValue],
        ts_ms: int,
    ) -> str:
        if not fields:
            raise LineProtocolError("a point needs at least one field")
        if not _MIN_TS_MS <= ts_ms <= _MAX_TS_MS:
            raise LineProtocolError(f"timestamp {ts_ms} ms is outside InfluxDB's time range")
        cache_key = (measurement, *tags.keys(), *tags.values())
        series = self._series.get(cache_key)
        if series is None:
            series = _series_key(measurement, tags)  # raises for a name it cannot carry
            if len(self._series) >= self.max_names:
                self._series.clear()
            self._series[cache_key] = series
        keys = self._field_keys
        parts = []
        value: Any  # narrowed by the exact-type tests below, which mypy does not follow
        for name, value in fields.items():
            key = keys.get(name)
            if key is None:
                key = _field_key(name)
                if len(keys) >= self.max_names:
                    keys.clear()
                keys[name] = key
            # The common types inline; anything else (strings, subclasses, values to
            # refuse) goes through _value, which words the refusal.
            kind = type(value)
            if kind is float and math.isfinite(value):
                parts.append(f"{key}={value!r}")
            elif kind is bool:
                parts.append(f"{key}=true" if value else f"{key}=false")
            elif kind is int and _INT64[0] <= value <= _INT64[1]:
                parts.append(f"{key}={value}i")
            else:
                parts.append(f"{key}={_value(name, value)}")
        return _checked(f"{series} {','.join(parts)} {ts_ms}")


def _series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """`measurement,tag=value,...` escaped, tags sorted, empty tag values left out."""
    key = [_measurement(measurement)]
    for k in sorted(tags):
        if tags[k] != "":
            key.append(f"{_name(k, 'tag key', _TAG_ESC)}={_name(tags[k], 'tag value', _TAG_ESC)}")
    return ",".join(key)


def _checked(line: str) -> str:
    # Only a line with both a quote and a backslash can confuse the 1.x line splitter.
    if '"' in line and "\\" in line and not _splits_as_one_line(line):
        raise LineProtocolError(f"InfluxDB 1.x would not read {preview(line)} as one line")
    return line


def _measurement(name: str) -> str:
    # The parser skips tabs and NULs at the start of a line; a `#` line is a comment.
    if name[:1] in ("#", "\t", "\x00"):
        raise LineProtocolError(f"measurement {preview(name)} starts with '#' or a blank")
    return _name(name, "measurement", _MEASUREMENT_ESC, unsafe_after_backslash=',= "')


def _field_key(name: str) -> str:
    # The parser skips tabs and NULs before the first field key: the key would lose them.
    if name[:1] in ("\t", "\x00"):
        raise LineProtocolError(f"field key {preview(name)} starts with a blank")
    return _name(name, "field key", _FIELD_KEY_ESC, unsafe_after_backslash=",= ")


def _name(text: str, what: str, table: dict[int, str], unsafe_after_backslash: str = "") -> str:
    if not text:
        raise LineProtocolError(f"empty {what}")
    if "\n" in text:
        raise LineProtocolError(f"{what} {preview(text)} contains a newline (ends the line)")
    if text.endswith("\\"):
        raise LineProtocolError(
            f"{what} {preview(text)} ends with a backslash (escapes the separator)"
        )
    if "\\" in text and any(f"\\{c}" in text for c in unsafe_after_backslash):
        raise LineProtocolError(
            f"{what} {preview(text)}: InfluxDB 1.x cannot store a backslash before "
            f"any of {unsafe_after_backslash!r}"
        )
    _check_utf8(text, what)
    return text.translate(table)


def _value(key: str, value: FieldValue) -> str:
    # bool before int: True is an int to Python, a boolean to InfluxDB.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise LineProtocolError(f"field {preview(key)}: {preview(value)} does not fit an int64")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field {preview(key)}: {value} has no line protocol form")
        return repr(value)
    if isinstance(value, str):
        if not value.isascii():  # the field name is only worded for a refusal
            _check_utf8(value, f"field {preview(key)}")
        return '"' + value.translate(_STRING_ESC) + '"'
    raise LineProtocolError(f"field {preview(key)}: unsupported type {type(value).__name__}")


def _check_utf8(text: str, what: str) -> None:
    # A lone surrogate (possible in a Python str) cannot be sent as UTF-8 at all.
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise LineProtocolError(f"{what} {preview(text)} is not valid Unicode: {exc}") from None


def _splits_as_one_line(line: str) -> bool:
    r"""Whether influxd 1.x's line splitter (models.scanLine) reads `line` as exactly one
    line. The splitter skips the character after any backslash and counts quotes only
    after the first unescaped space, so an escaped space after a literal backslash in a
    tag (`a\ b`, sent as `a\\ b`) can make it miss or invent a string field's quotes:
    it would then end the line at a newline inside a string, or run on into the next
    line of the batch."""
    quoted = in_fields = False
    equals = commas = 0
    i = 0
    while i < len(line):
        c = line[i]
        i += 1
        if c == "\\":
            i += 1
            continue
        in_fields = in_fields or c == " "
        if in_fields and not quoted and c in "=,":
            equals += c == "="
            commas += c == ","
        elif in_fields and c == '"' and equals > commas:
            quoted = not quoted
        elif c == "\n" and not quoted:
            return False
    return not quoted
