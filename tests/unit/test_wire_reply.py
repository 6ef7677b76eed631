"""The ingest's "not stored" reply on the ack topic: it round-trips, its fields are
checked and clamped, it stays within an ack's size, and the ack decoder of gateways
released before it (copied here as it shipped) refuses it, so an old gateway never takes
it for an ack and deletes a batch that was not stored."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility.wire import (
    MAX_ACK_BYTES,
    MAX_NOT_STORED_CHARS,
    MAX_RETRY_AFTER_MS,
    WIRE_VERSION,
    Ack,
    NotStored,
    WireError,
    decode_ack,
    decode_reply,
    encode_ack,
    encode_not_stored,
    parse_json,
)
from ingest.receiver import RETRY_AFTER_CAP_MS, RETRY_AFTER_SPREAD, retry_after_ms, spread

INTS = st.integers(min_value=-(2**63), max_value=2**63)


def first_decode_ack(payload: bytes) -> Ack:
    """facility.wire.decode_ack as the wire's first version shipped it (888fd32, up to
    5a2d369), verbatim but for the JSON parser: `int()` of whatever `stored` holds, so
    `false` would be 0, an ack."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"ack is not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("v") != WIRE_VERSION:
        raise WireError("ack is not a v1 object")
    try:
        return Ack(
            int(body["boot"]),
            int(body["seq"]),
            int(body.get("stored", 0)),
            int(body.get("rejected", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"ack lacks boot/seq: {exc}") from exc


def released_decode_ack(payload: bytes) -> Ack:
    """facility.wire.decode_ack as gateways run it from 7b53137 up to commit 3436dff,
    verbatim: those gateways stay in the field after this change."""
    if len(payload) > MAX_ACK_BYTES:
        raise WireError(f"ack of {len(payload)} bytes exceeds {MAX_ACK_BYTES}")
    body = parse_json(payload, "ack")
    if not isinstance(body, dict) or body.get("v") != WIRE_VERSION:
        raise WireError("ack is not a v1 object")
    numbers = []
    for name in ("boot", "seq", "stored", "rejected"):
        value = body.get(name, 0 if name in ("stored", "rejected") else None)
        # Exact ints only: int() of 1e400 overflows, of 1.5 rounds, of "7" guesses.
        if type(value) is not int:
            raise WireError(f"ack field {name!r} missing or not an integer")
        numbers.append(value)
    return Ack(*numbers)


@settings(max_examples=200)
@given(boot=INTS, seq=INTS, reason=st.text(min_size=1, max_size=300), wait=INTS)
def test_a_not_stored_reply_round_trips_and_no_ack_decoder_takes_it(
    boot: int, seq: int, reason: str, wait: int
) -> None:
    payload = encode_not_stored(boot, seq, reason, wait)
    assert len(payload) <= MAX_ACK_BYTES
    clamped = min(MAX_RETRY_AFTER_MS, max(0, wait))
    assert decode_reply(payload) == NotStored(boot, seq, reason[:MAX_NOT_STORED_CHARS], clamped)
    for old_or_new in (released_decode_ack, decode_ack):
        with pytest.raises(WireError, match="'stored' missing or not an integer"):
            old_or_new(payload)
    with pytest.raises(WireError, match="ack lacks boot/seq"):
        first_decode_ack(payload)


def test_a_reply_leaving_stored_out_or_false_would_be_an_ack_to_released_gateways() -> None:
    """Why the reply says "stored": null: both released decoders take a missing `stored`
    as 0, an ack, and the first takes `false` as 0 too: either would delete the batch.
    The new decoder refuses both."""
    bare = {"v": 1, "boot": 7, "seq": 3, "not_stored": "x", "retry_after_ms": 500}
    false = json.dumps(bare | {"stored": False}).encode()
    for decoder in (first_decode_ack, released_decode_ack):
        assert decoder(json.dumps(bare).encode()) == Ack(7, 3, 0, 0)
    assert first_decode_ack(false) == Ack(7, 3, 0, 0)
    for refused in (json.dumps(bare).encode(), false):
        with pytest.raises(WireError, match='"stored": null'):
            decode_reply(refused)


def test_acks_still_decode_as_acks() -> None:
    assert decode_reply(encode_ack(7, 3, 310, 2)) == Ack(7, 3, 310, 2)
    assert released_decode_ack(encode_ack(7, 3, 310, 2)) == Ack(7, 3, 310, 2)
    assert first_decode_ack(encode_ack(7, 3, 310, 2)) == Ack(7, 3, 310, 2)


def test_the_longest_reason_in_the_widest_characters_stays_within_an_ack() -> None:
    payload = encode_not_stored(2**63, 2**63, "\U0001f525" * 10_000, 2**63)
    assert len(payload) <= MAX_ACK_BYTES
    reply = decode_reply(payload)
    assert isinstance(reply, NotStored) and len(reply.reason) == MAX_NOT_STORED_CHARS
    assert decode_reply(encode_not_stored(1, 2, "", 500)) == NotStored(1, 2, "not stored", 500)


def _reply(**fields: object) -> bytes:
    body: dict[str, object] = {"v": 1, "boot": 7, "seq": 3, "stored": None}
    body |= {"not_stored": "InfluxUnavailable", "retry_after_ms": 500} | fields
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_reply(stored=0), '"stored": null'),
        (_reply(stored=False), '"stored": null'),
        (_reply(stored="null"), '"stored": null'),
        (_reply(not_stored=...), "reason missing"),
        (_reply(not_stored=""), "reason missing"),
        (_reply(not_stored=["InfluxUnavailable"]), "reason missing"),
        (_reply(not_stored="x" * (MAX_NOT_STORED_CHARS + 1)), "reason missing"),
        (_reply(retry_after_ms=...), "'retry_after_ms'"),
        (_reply(retry_after_ms=500.0), "'retry_after_ms'"),
        (_reply(retry_after_ms="500"), "'retry_after_ms'"),
        (_reply(retry_after_ms=True), "'retry_after_ms'"),
        (_reply(retry_after_ms=float("inf")), "'retry_after_ms'"),  # Python reads Infinity
        (_reply(boot=...), "'boot'"),
        (_reply(seq=True), "'seq'"),
        (_reply(seq=3.0), "'seq'"),
        (_reply(v=2), "not a v1 object"),
        (_reply(not_stored="x" * 10) + b" " * MAX_ACK_BYTES, "exceeds"),
        (_reply(retry_after_ms=...)[:-1] + b', "retry_after_ms": 1e400}', "'retry_after_ms'"),
    ],
)
def test_a_not_stored_reply_that_breaks_the_contract_is_refused(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(WireError, match=reason):
        decode_reply(payload)


def test_the_retry_after_a_reply_asks_for_is_clamped_to_a_sane_range() -> None:
    assert decode_reply(_reply(retry_after_ms=-5)) == NotStored(7, 3, "InfluxUnavailable", 0)
    huge = decode_reply(_reply(retry_after_ms=10**30))
    assert isinstance(huge, NotStored) and huge.retry_after_ms == MAX_RETRY_AFTER_MS


def test_the_ingest_asks_for_a_pause_as_long_as_its_store_has_failed_within_bounds() -> None:
    """A gateway resending after each pause sees it double: 0.5, 0.5, 1, 2, 4, 5 s."""
    failing_for, pauses = 0.0, []
    for _ in range(7):
        pauses.append(retry_after_ms(failing_for))
        failing_for += pauses[-1] / 1000
    assert pauses == [500, 500, 1000, 2000, 4000, 5000, 5000]
    assert retry_after_ms(-1.0) == 500 and retry_after_ms(1e12) == RETRY_AFTER_CAP_MS
    assert RETRY_AFTER_CAP_MS <= MAX_RETRY_AFTER_MS


def test_the_ingest_spreads_its_pauses_so_gateways_do_not_return_together() -> None:
    pauses = {spread(2_000) for _ in range(200)}
    assert min(pauses) >= 2_000 and max(pauses) <= 2_000 * (1 + RETRY_AFTER_SPREAD)
    assert len(pauses) > 50  # not one instant for everyone
    assert RETRY_AFTER_CAP_MS * (1 + RETRY_AFTER_SPREAD) <= MAX_RETRY_AFTER_MS  # never clamped
