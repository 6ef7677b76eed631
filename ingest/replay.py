"""Send dead letters through the ingest again, once their cause has been fixed.

A row goes through validation again (against the site model as it is now), a refused
line is written again as it was, an undecodable batch is decoded again. A letter that
lands is marked replayed; one that is refused again keeps its new reason and stays
pending. A batch that decodes is stored like a fresh one: readings in it that are still
refused become row letters of their own, so the batch letter itself is done.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from facility.wire import Batch, WireError, decode_batch, read_row
from ingest.deadletters import DeadLetter, DeadLetters, LetterKind
from ingest.store import InfluxStore


@dataclass
class ReplayOutcome:
    replayed: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # letter id -> reason now


async def replay(
    letters: Sequence[DeadLetter], dead_letters: DeadLetters, store: InfluxStore
) -> ReplayOutcome:
    outcome = ReplayOutcome()
    lines: dict[str, list[int]] = defaultdict(list)  # line -> the letters it came from
    for letter in letters:
        if letter.replayed_ms is not None:
            continue
        if letter.kind is LetterKind.BATCH:
            await _replay_batch(letter, store, outcome)
            continue
        try:
            for line in _lines_of(letter, store):
                lines[line].append(letter.id)
        except ValueError as exc:
            outcome.refused[letter.id] = str(exc)
    if lines:
        result = await store.writer.write(list(lines))
        for line, why in result.rejected:
            for letter_id in lines[line]:
                outcome.refused[letter_id] = f"InfluxDB refused {line!r}: {why}"
    outcome.replayed += sorted({i for ids in lines.values() for i in ids} - set(outcome.refused))
    dead_letters.mark_replayed(outcome.replayed)
    for letter_id, reason in outcome.refused.items():
        dead_letters.set_reason(letter_id, reason)
    return outcome


def _lines_of(letter: DeadLetter, store: InfluxStore) -> list[str]:
    """The line protocol a letter stands for; ValueError (WireError) says why not."""
    if letter.kind is LetterKind.LINE:
        return [letter.body]
    reading = read_row(letter.row())
    batch = Batch(letter.site, letter.station, 0, 0, "backfill", 0, [reading])
    verdict = store.validator.check(batch)
    if verdict.rejected:
        raise ValueError(verdict.rejected[0][1])
    lines, unencodable = store.lines_for(batch, verdict.accepted)
    if unencodable:
        raise ValueError(unencodable[0][1])
    if not lines:
        raise ValueError("nothing to store: a null value (the sensor's own fault report)")
    return lines


async def _replay_batch(letter: DeadLetter, store: InfluxStore, outcome: ReplayOutcome) -> None:
    try:
        batch, bad_rows = decode_batch(letter.payload())
    except WireError as exc:
        outcome.refused[letter.id] = str(exc)
        return
    await store(batch, bad_rows)
    outcome.replayed.append(letter.id)
