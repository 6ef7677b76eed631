"""The wire contract between site gateways and the ingest service (version 1).

Documented in docs/wire-format.md; both sides use only this module to build and read
messages, so the format is written once.

Topics (per gateway, a gateway being one station's box):

    facility/v1/{site}/{station}/up       gateway -> ingest   batches of readings (QoS 1)
    facility/v1/{site}/{station}/ack      ingest -> gateway   "durably stored" (QoS 1)
    facility/v1/{site}/{station}/status   gateway, retained   online/offline (last will)

An `up` payload is zlib-compressed JSON:

    {"v": 1, "site": "fengshou", "station": "xiba", "boot": 1780264800123, "seq": 42,
     "lane": "live", "sent_ms": 1780264861000,
     "r": [["v", "pump_1", "flow_m3h", 1780264860000, 301.25, "g"], ...]}

Each row of `r` is [kind, asset, signal, ts_ms, value, quality]:
kind "v" a device's value, "s" a device's communication status, "h" the gateway's own
health; quality "g" good, "u" uncertain, "b" bad (value null). `boot` + `seq` name
the batch: `boot` changes each time the gateway starts, `seq` counts up from 1.

An `ack` payload is JSON: {"v": 1, "boot": ..., "seq": 42, "stored": 310, "rejected": 2}.
The ingest sends it only after InfluxDB has accepted the batch (rejected readings are
in its dead-letter store by then); the gateway deletes the batch from its outbox only
on this ack, never on the broker's PUBACK.

When the batch could not be stored, the ingest says so on the same topic:
{"v": 1, "boot": ..., "seq": 42, "stored": null, "not_stored": "InfluxUnavailable",
"retry_after_ms": 2000}. The gateway sends the batch again after that pause instead of
waiting out its ack timeout. `"stored": null` is what keeps gateways that predate this
reply safe: the first decoders (2026-11-22 on) took `int(body.get("stored", 0))`, the
later ones an exact integer defaulting to 0, so a missing `stored` is an ack to both and
`false` is `int(False) == 0` to the first; `null` makes both refuse the message as a
malformed ack.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, cast

from facility.logs import preview

WIRE_VERSION = 1
TOPIC_ROOT = "facility/v1"
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # a batch larger than this is refused unread
MAX_ACK_BYTES = 4096  # an ack is ~80 bytes
MAX_NOT_STORED_CHARS = 200  # the reason in a not-stored reply
MAX_RETRY_AFTER_MS = 10_000  # a not-stored reply never pauses a gateway longer

Kind = Literal["v", "s", "h"]
Quality = Literal["g", "u", "b"]
Value = bool | int | float | str | None
KINDS = frozenset(("v", "s", "h"))
# What a gateway reports about talking to each device (kind "s"), after every poll.
STATUS_SIGNALS = (
    "comm_ok",
    "error",
    "exception_code",
    "rtt_ms",
    "last_success_ms",
    "consecutive_failures",
)
QUALITIES = frozenset(("g", "u", "b"))


class WireError(ValueError):
    """A message that does not follow the contract; the text says what is wrong."""


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 4x to build, on the hot path
class Reading:
    """One value of one signal of one asset, stamped when the gateway acquired it."""

    asset: str
    signal: str
    ts_ms: int
    value: Value
    quality: Quality = "g"
    kind: Kind = "v"

    def row(self) -> list[Any]:
        return [self.kind, self.asset, self.signal, self.ts_ms, self.value, self.quality]


def topic(site: str, station: str, leaf: Literal["up", "ack", "status"]) -> str:
    return f"{TOPIC_ROOT}/{site}/{station}/{leaf}"


def parse_topic(name: str) -> tuple[str, str, str]:
    """'facility/v1/site/station/leaf' -> (site, station, leaf)."""
    parts = name.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise WireError(f"not a {TOPIC_ROOT} topic: {preview(name)}")
    return parts[2], parts[3], parts[4]


@dataclass(frozen=True)
class Batch:
    site: str
    station: str
    boot: int
    seq: int
    lane: Literal["live", "backfill"]
    sent_ms: int
    readings: Sequence[Reading]


def encode_batch(batch: Batch, level: int = 6) -> bytes:
    body = {
        "v": WIRE_VERSION,
        "site": batch.site,
        "station": batch.station,
        "boot": batch.boot,
        "seq": batch.seq,
        "lane": batch.lane,
        "sent_ms": batch.sent_ms,
        "r": [r.row() for r in batch.readings],
    }
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return zlib.compress(text.encode(), level)


def encode_rows(header: dict[str, Any], rows_json: Sequence[str], level: int = 6) -> bytes:
    """Like encode_batch, from rows already serialised as JSON arrays (the outbox's form)."""
    head = json.dumps({"v": WIRE_VERSION, **header}, separators=(",", ":"))
    text = head[:-1] + ',"r":[' + ",".join(rows_json) + "]}"
    return zlib.compress(text.encode(), level)


class BadRow(NamedTuple):
    """A row of a batch that breaks the contract, kept as it came for the dead letters."""

    position: int
    reason: str
    raw: Any


_PLAIN_VALUES = frozenset((bool, int, str, type(None)))  # the value types besides float


def decode_batch(payload: bytes) -> tuple[Batch, list[BadRow]]:
    """Read an `up` payload. Rows that break the contract are returned as BadRows
    instead of failing the batch; a batch whose envelope is wrong raises WireError."""
    body = _envelope(payload)
    readings: list[Reading] = []
    rejected: list[BadRow] = []
    rows = body["r"]
    for i, row in enumerate(rows):
        rows[i] = None  # let each row's list go as its Reading is made: a batch near the
        # wire's limit holds a million of them
        # The rows of a well-behaved gateway pass these inline checks (exact types are
        # enough: JSON makes no subclasses) at a fraction of read_row's cost; any other
        # row goes through read_row, which accepts it too or says what is wrong.
        if type(row) is list and len(row) == 6:
            kind, asset, signal, ts, value, quality = row
            vtype = type(value)
            if (
                (kind == "v" or kind == "s" or kind == "h")
                and type(asset) is str
                and asset
                and type(signal) is str
                and signal
                and type(ts) is int
                and (quality == "g" or quality == "u" or quality == "b")
                and ((vtype is float and math.isfinite(value)) or vtype in _PLAIN_VALUES)
            ):
                readings.append(Reading(asset, signal, ts, value, quality, kind))
                continue
        try:
            readings.append(read_row(row))
        except WireError as exc:
            rejected.append(BadRow(i, str(exc), row))
    batch = Batch(
        site=body["site"],
        station=body["station"],
        boot=body["boot"],
        seq=body["seq"],
        lane=body["lane"],
        sent_ms=body["sent_ms"],
        readings=readings,
    )
    return batch, rejected


def _envelope(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        decompressor = zlib.decompressobj()
        text = decompressor.decompress(payload, 16 * MAX_PAYLOAD_BYTES)
        if decompressor.unconsumed_tail:
            raise WireError("payload inflates past the size limit")
    except zlib.error as exc:
        raise WireError(f"not zlib-compressed JSON: {exc}") from exc
    body = parse_json(text, "batch")
    if not isinstance(body, dict):
        raise WireError("batch is not a JSON object")
    if body.get("v") != WIRE_VERSION:
        raise WireError(
            f"unsupported wire version {preview(body.get('v'))} (this side speaks {WIRE_VERSION})"
        )
    for name, kind in (
        ("site", str),
        ("station", str),
        ("boot", int),
        ("seq", int),
        ("sent_ms", int),
        ("r", list),
    ):
        if not isinstance(body.get(name), kind) or isinstance(body.get(name), bool):
            raise WireError(f"field {name!r} missing or not {kind.__name__}")
    if body.get("lane") not in ("live", "backfill"):
        raise WireError("field 'lane' must be 'live' or 'backfill'")
    return body


def read_row(row: Any) -> Reading:
    """One wire row as a Reading; WireError says what breaks the contract."""
    if not isinstance(row, list) or len(row) != 6:
        raise WireError("row is not a list of 6 items")
    kind, asset, signal, ts, value, quality = row
    if not isinstance(kind, str) or kind not in KINDS:  # a list would not even hash
        raise WireError(f"unknown kind {preview(kind)}")
    if not isinstance(asset, str) or not isinstance(signal, str) or not asset or not signal:
        raise WireError("asset and signal must be non-empty strings")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise WireError("ts_ms must be an integer")
    if not isinstance(quality, str) or quality not in QUALITIES:
        raise WireError(f"unknown quality {preview(quality)}")
    if value is not None and not isinstance(value, bool | int | float | str):
        raise WireError(f"value of type {type(value).__name__} is not a scalar")
    if isinstance(value, float) and not math.isfinite(value):
        raise WireError("value is not finite")
    return Reading(asset, signal, ts, value, cast(Quality, quality), cast(Kind, kind))


def encode_ack(boot: int, seq: int, stored: int, rejected: int) -> bytes:
    return json.dumps(
        {"v": WIRE_VERSION, "boot": boot, "seq": seq, "stored": stored, "rejected": rejected}
    ).encode()


@dataclass(frozen=True)
class Ack:
    boot: int
    seq: int
    stored: int
    rejected: int


def decode_ack(payload: bytes) -> Ack:
    """An ack; anything else, a not-stored reply included, raises WireError. Gateways
    released before the not-stored reply run this decoder: tests/unit/test_wire_reply.py
    holds a copy of theirs and proves it refuses every not-stored reply."""
    return _ack(_reply_body(payload))


def _reply_body(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_ACK_BYTES:
        raise WireError(f"ack of {len(payload)} bytes exceeds {MAX_ACK_BYTES}")
    body = parse_json(payload, "ack")
    if not isinstance(body, dict) or body.get("v") != WIRE_VERSION:
        raise WireError("ack is not a v1 object")
    return body


def _ack(body: dict[str, Any]) -> Ack:
    numbers = []
    for name in ("boot", "seq", "stored", "rejected"):
        value = body.get(name, 0 if name in ("stored", "rejected") else None)
        # Exact ints only: int() of 1e400 overflows, of 1.5 rounds, of "7" guesses.
        if type(value) is not int:
            raise WireError(f"ack field {name!r} missing or not an integer")
        numbers.append(value)
    return Ack(*numbers)


@dataclass(frozen=True)
class NotStored:
    """The ingest could not store batch (boot, seq): send it again after retry_after_ms."""

    boot: int
    seq: int
    reason: str
    retry_after_ms: int


def encode_not_stored(boot: int, seq: int, reason: str, retry_after_ms: int) -> bytes:
    # "stored": null, never left out nor false: see the module's docstring (old gateways).
    body = {
        "v": WIRE_VERSION,
        "boot": boot,
        "seq": seq,
        "stored": None,
        "not_stored": reason[:MAX_NOT_STORED_CHARS] or "not stored",
        "retry_after_ms": min(MAX_RETRY_AFTER_MS, max(0, retry_after_ms)),
    }
    return json.dumps(body).encode()


def decode_reply(payload: bytes) -> Ack | NotStored:
    """What the ingest answered about one batch: an Ack, or a NotStored. A message
    naming `not_stored` is a not-stored reply or refused, never taken for an ack."""
    body = _reply_body(payload)
    if _says_not_stored(body) or "not_stored" in body:
        return _not_stored(body)
    return _ack(body)


def _says_not_stored(body: dict[str, Any]) -> bool:
    return "stored" in body and body["stored"] is None


def _not_stored(body: dict[str, Any]) -> NotStored:
    if not _says_not_stored(body):
        raise WireError('a not-stored reply must say "stored": null')
    numbers: list[int] = []
    for name in ("boot", "seq", "retry_after_ms"):
        value = body.get(name)
        if type(value) is not int:  # exact ints, as in an ack
            raise WireError(f"not-stored field {name!r} missing or not an integer")
        numbers.append(value)
    boot, seq, wait = numbers
    reason = body.get("not_stored")
    if not isinstance(reason, str) or not 0 < len(reason) <= MAX_NOT_STORED_CHARS:
        raise WireError(f"not-stored reason missing, not text or over {MAX_NOT_STORED_CHARS}")
    return NotStored(boot, seq, reason, min(MAX_RETRY_AFTER_MS, max(0, wait)))


def parse_json(text: bytes | str, what: str) -> Any:
    """json.loads, with everything Python's parser can raise on hostile input as a
    WireError: bad syntax or encoding, but also nesting deeper than the interpreter's
    recursion limit (RecursionError) and integers past int_max_str_digits (ValueError)."""
    try:
        if len(text) > PIECEWISE_CHARS:
            return loads_piecewise(text.decode() if isinstance(text, bytes) else text)
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WireError(f"{what} is not JSON: {exc.msg} at {exc.pos}") from None
    except UnicodeDecodeError as exc:
        raise WireError(f"{what} is not UTF-8: {exc.reason} at {exc.start}") from None
    except RecursionError:
        raise WireError(f"{what} is not JSON this side can read: nested too deep") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string..."
        raise WireError(f"{what} is not JSON this side can read: {str(exc)[:80]}") from None


# Past this size a text is parsed a row at a time (loads_piecewise).
PIECEWISE_CHARS = 1 << 20
_DECODER = json.JSONDecoder()
_BLANK = re.compile(r"[ \t\n\r]*")


def _skip(text: str, i: int) -> int:
    """The index of the first non-blank character at or after i."""
    blank = _BLANK.match(text, i)
    return blank.end() if blank else i


def loads_piecewise(text: str, depth: int = 2) -> Any:
    """json.loads, but the outer `depth` levels of arrays and objects are walked here,
    their items parsed one by one: C's json.loads holds the GIL for a whole 64 MB batch
    (seconds), in a worker thread too, freezing the event loop; between items the thread
    lets it run. Same values and the same JSONDecodeErrors as json.loads."""
    value, end = _piece(text, _skip(text, 0), depth)
    end = _skip(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _piece(text: str, i: int, depth: int) -> tuple[Any, int]:
    opening = text[i : i + 1]
    if depth == 0 or opening not in ("[", "{"):
        return _DECODER.raw_decode(text, i)
    closing = "]" if opening == "[" else "}"
    items: list[Any] = []
    members: dict[str, Any] = {}
    i = _skip(text, i + 1)
    if text[i : i + 1] == closing:
        return (items if opening == "[" else members), i + 1
    while True:
        if opening == "{":
            if text[i : i + 1] != '"':
                raise json.JSONDecodeError(
                    "Expecting property name enclosed in double quotes", text, i
                )
            key, i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
            if text[i : i + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
            value, i = _piece(text, _skip(text, i + 1), depth - 1)
            members[key] = value
        else:
            value, i = _piece(text, i, depth - 1)
            items.append(value)
        i = _skip(text, i)
        separator = text[i : i + 1]
        if separator == closing:
            return (items if opening == "[" else members), i + 1
        if separator != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
        i = _skip(text, i + 1)


def encode_status(online: bool, boot: int, ts_ms: int) -> bytes:
    return json.dumps({"v": WIRE_VERSION, "online": online, "boot": boot, "ts": ts_ms}).encode()
