"""Hostile `up` messages at the ingest's receiver, with a real broker and a real InfluxDB
behind it: random bytes, random JSON, broken envelopes, rows of every wrong shape, names
built to break line protocol or InfluxQL, oversize and zip-bomb payloads, other wire
versions. Each is refused with a reason and kept as a dead letter, the good rows of a
batch still land, and the receiver never raises."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.wire import MAX_PAYLOAD_BYTES, WireError, decode_batch, topic
from ingest.deadletters import DeadLetters, LetterKind
from ingest.influx import InfluxV1Writer
from ingest.receiver import Receiver
from ingest.store import InfluxStore
from ingest.validate import Validator
from tests.services import Mosquitto
from wiring.services import InfluxDB

DB = "facility"
UP = topic("fengshou", "xiba", "up")
NOW_MS = now_ms()
KNOWN = [("pump_1", "flow_m3h", 12.5), ("pump_1", "running", True), ("tank_no4", "level_m", 3.0)]
NASTY_TEXT = st.sampled_from(
    [
        'No.1 tank, behind "school"',
        "a=b c,d\\",
        "line\nbreak",
        "'; DROP DATABASE facility; --",
        '" OR 1=1 --',
        "ütf-8 水泵 \u0000 nul",
        "",
    ]
) | st.text(max_size=30)
JSON_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | NASTY_TEXT
)
JSON = st.recursive(
    JSON_SCALAR,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=20,
)


def good_row(i: int) -> list[Any]:
    asset, signal, value = KNOWN[i % len(KNOWN)]
    return ["v", asset, signal, NOW_MS + i, value, "g"]


ROW = (
    st.integers(0, 50).map(good_row)
    | st.lists(JSON_SCALAR, min_size=6, max_size=6)
    | st.tuples(
        st.sampled_from(["v", "s", "h", "x", 1]),
        NASTY_TEXT,
        NASTY_TEXT,
        st.integers(min_value=-(2**70), max_value=2**70) | st.just(NOW_MS),
        JSON_SCALAR,
        st.sampled_from(["g", "u", "b", "?"]),
    ).map(list)
    | JSON
)


def envelope(rows: list[Any], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "site": "fengshou",
        "station": "xiba",
        "boot": 1,
        "seq": 1,
        "lane": "live",
        "sent_ms": NOW_MS,
        "r": rows,
    }
    body.update(changes)
    return body


def pack(body: Any) -> bytes:
    # allow_nan: a hostile sender is free to write NaN, which Python's json reads back
    return zlib.compress(json.dumps(body, allow_nan=True).encode())


ENVELOPE_CHANGE = st.sampled_from(
    ["v", "site", "station", "boot", "seq", "lane", "sent_ms", "r"]
).flatmap(lambda key: st.tuples(st.just(key), JSON))
PAYLOAD = (
    st.binary(max_size=300)
    | JSON.map(pack)
    | st.lists(ROW, max_size=30).map(lambda rows: pack(envelope(rows)))
    | st.tuples(st.lists(ROW, max_size=10), ENVELOPE_CHANGE).map(
        lambda t: pack(envelope(t[0], **{t[1][0]: t[1][1]}))
    )
)


@dataclass(repr=False)  # hypothesis prints its arguments: keep the site model out
class Intake:
    client: aiomqtt.Client
    receiver: Receiver
    store: InfluxStore
    dead: DeadLetters
    writer: InfluxV1Writer

    async def take(self, payload: bytes, name: str = UP) -> None:
        await self.receiver.handle(self.client, name, payload)


async def open_intake(
    config: SiteConfig, mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> Intake:
    client = aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="hostile-test")
    await client.__aenter__()
    writer = InfluxV1Writer(influxdb.url, DB, max_retries=0)
    await writer.create_database(DB)
    dead = DeadLetters(tmp_path / "dead.sqlite")
    store = InfluxStore(Validator(config), writer, dead)
    receiver = Receiver("127.0.0.1", mosquitto.port, store, quarantine=dead.add_batch)
    return Intake(client, receiver, store, dead, writer)


@pytest.fixture
def intake(
    demo_config: SiteConfig, mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> Iterator[tuple[asyncio.Runner, Intake]]:
    runner = asyncio.Runner()
    at = runner.run(open_intake(demo_config, mosquitto, influxdb, tmp_path))
    yield runner, at
    runner.run(at.client.__aexit__(None, None, None))
    runner.run(at.writer.close())
    runner.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=PAYLOAD)
def test_every_hostile_message_is_stored_or_refused_with_a_reason(
    intake: tuple[asyncio.Runner, Intake], payload: bytes
) -> None:
    runner, at = intake
    letters_before, batches_before = at.dead.count(), at.receiver.batches
    try:
        batch, bad_rows = decode_batch(payload)
        envelope_ok = (batch.site, batch.station) == ("fengshou", "xiba")
    except WireError:
        envelope_ok = False
    runner.run(at.take(payload))
    new_letters = at.dead.latest(limit=at.dead.count() - letters_before)
    assert all(letter.reason for letter in new_letters)
    if not envelope_ok:
        assert [d.kind for d in new_letters] == [LetterKind.BATCH]
        assert new_letters[0].payload() == payload
        assert at.receiver.batches == batches_before
        return
    assert at.receiver.batches == batches_before + 1
    rows = len(batch.readings) + len(bad_rows)
    refused_rows = [d for d in new_letters if d.kind is LetterKind.ROW]
    assert len(refused_rows) <= rows
    good = sum(1 for r in batch.readings if [r.kind, r.asset, r.signal, r.value] in _GOOD)
    assert rows - len(refused_rows) >= good, "a good row of a hostile batch was refused"


_GOOD = [["v", a, s, v] for a, s, v in KNOWN]


def test_hand_written_hostile_messages_are_each_refused_with_their_reason(
    intake: tuple[asyncio.Runner, Intake],
) -> None:
    runner, at = intake
    bomb = zlib.compress(b"[" + b" " * (80 * MAX_PAYLOAD_BYTES) + b"]", 9)
    cases = [
        (b"\x00" * (MAX_PAYLOAD_BYTES + 1), "exceeds"),
        (bomb, "inflates past the size limit"),
        (pack(envelope([good_row(0)], v=2)), "unsupported wire version 2"),
        (pack(envelope([good_row(0)], station="sankeshu")), "on the topic of another"),
        (pack(envelope([good_row(0)], seq="1")), "field 'seq'"),
        (pack([1, 2, 3]), "not a JSON object"),
        (b"not zlib at all", "not zlib-compressed JSON"),
    ]
    for payload, reason in cases:
        runner.run(at.take(payload))
        [letter] = at.dead.latest(limit=1)
        assert letter.kind is LetterKind.BATCH and reason in letter.reason, letter.reason
    assert at.receiver.batches == 0
    assert sum(at.receiver.malformed.values()) == len(cases)


def test_rows_that_would_break_line_protocol_or_influxql_are_refused_and_the_rest_lands(
    intake: tuple[asyncio.Runner, Intake],
) -> None:
    runner, at = intake
    rows: list[Any] = [
        good_row(0),
        ["v", 'pump_1,site=evil asset="x"', "flow_m3h", NOW_MS, 1.0, "g"],
        ["v", "pump_1", "flow_m3h=1 9\nevil", NOW_MS, 1.0, "g"],
        ["v", "pump_1", "flow_m3h", NOW_MS + 5, float("nan"), "g"],
        ["v", "pump_1", "flow_m3h", NOW_MS + 6, 2**70, "g"],
        ["v", "pump_1", "flow_m3h", 10**30, 1.0, "g"],
        ["v", "'; DROP DATABASE facility; --", "flow_m3h", NOW_MS, 1.0, "g"],
        {"asset": "pump_1"},
    ]
    runner.run(at.take(pack(envelope(rows))))
    refused = at.dead.latest()
    assert len(refused) == len(rows) - 1
    assert all(d.kind is LetterKind.ROW and d.reason for d in refused)
    answer = runner.run(at.writer.query('SELECT "flow_m3h" FROM "pump"'))
    assert answer["results"][0]["series"][0]["values"] == [[NOW_MS, 12.5]]
    databases = runner.run(at.writer.query("SHOW DATABASES"))
    assert [DB] in databases["results"][0]["series"][0]["values"]
    measurements = runner.run(at.writer.query("SHOW MEASUREMENTS"))
    assert measurements["results"][0]["series"][0]["values"] == [["pump"]]
