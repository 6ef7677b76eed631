"""What a refusal may cost, with bad input from outside: the logged reason quotes a short
preview, repeated refusals are logged at a bounded rate with a count, and the dead-letter
store (a real SQLite file) cuts big letters and stops at its size, counting what it drops
and forgetting replayed letters first."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from facility.logs import RateLimitedLog, preview
from ingest.deadletters import DeadLetters


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "value",
    [
        "x" * 60_000,
        b"y" * 60_000,
        list(range(10_000)),
        {str(i): i for i in range(500)},
        10**4000,
        [[[[["deep"]]]]] * 100,
    ],
)
def test_a_preview_is_short_whatever_the_value(value: object) -> None:
    assert len(preview(value)) <= 120


def test_repeated_refusals_are_logged_at_a_bounded_rate_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    refusals = RateLimitedLog(logging.getLogger("refusals"), every_s=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, "refusals"):
        for i in range(1_000):
            refusals.log("not JSON", "refused message %d", i)
            clock.now += 0.125  # 125 s in all
        for kind in range(500):
            refusals.log(f"kind {kind}", "refused %d", kind)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == [
        "refused message 0",
        "refused message 480 (and 479 more like it since the last report)",
        "refused message 960 (and 479 more like it since the last report)",
    ]
    assert len(lines) == 3 + 99 + 1  # the table holds 100 kinds; the rest share "other"
    assert lines[-1] == "refused 99"


def test_the_dead_letter_store_cuts_big_letters_and_stops_when_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = DeadLetters(
        tmp_path / "dl.sqlite", max_bytes=200_000, max_body_bytes=1_000, max_payload_bytes=5_000
    )
    big = ["v", "pump_1", "x" * 50_000, 1, 1.0, "g"]
    assert dead.add_rows("s", "t", [(big, "too long")]) == 1
    [letter] = dead.latest()
    assert len(letter.body) == 1_000 and "kept the first 1000 of" in letter.reason
    dead.add_batch("s", "t", b"z" * 9_000, "not zlib")
    [batch, _] = dead.latest()
    assert batch.payload() == b"z" * 5_000 and "cut to its first 5000 of 9000 bytes" in batch.reason

    rows = [(["v", "pump_1", "flow_m3h", i, 1.0, "g"], "unknown asset") for i in range(10_000)]
    with caplog.at_level(logging.ERROR, "ingest.deadletters"):
        kept = dead.add_rows("s", "t", rows)
        dead.add_rows("s", "t", rows[:100])
    assert 0 < kept < 10_000 and dead.dropped == 10_000 - kept + 100
    assert dead.count() == kept + 2 == dead.pending
    assert len(caplog.records) == 1 and "is full" in caplog.records[0].getMessage()
    assert len(caplog.records[0].getMessage()) < 300

    dead.mark_replayed([d.id for d in dead.latest(limit=kept)])
    assert dead.add_rows("s", "t", rows[:100]) == 100  # the replayed ones made room
    assert dead.count(pending_only=False) == 2 + 100
    dead.close()


def test_a_row_json_cannot_carry_is_kept_with_its_reason(tmp_path: Path) -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    dead = DeadLetters(tmp_path / "dl.sqlite")
    assert dead.add_rows("s", "t", [(deep, "nested"), (["v", "a", "b", 1, 2.0, "g"], "fine")]) == 2
    nested, fine = sorted(dead.latest(), key=lambda d: d.id)
    assert json.loads(nested.body) is None and "row not kept: RecursionError" in nested.reason
    assert fine.row() == ["v", "a", "b", 1, 2.0, "g"]
    dead.close()
