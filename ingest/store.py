"""Validated readings -> InfluxDB points; refused ones -> the dead-letter store.

Readings of one asset taken at one instant become one point with a field per signal.
Tags: site, station, asset. A batch counts as stored only when InfluxDB has accepted
the write (or refused lines are in the dead-letter store); if InfluxDB is unreachable
the store raises, the receiver does not ack, and the gateway sends the batch again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from facility.wire import BadRow, Batch, Reading
from ingest.deadletters import DeadLetters
from ingest.influx import WriteResult
from ingest.lineproto import FieldValue, LineEncoder, LineProtocolError
from ingest.validate import Accepted, Validator, Verdict

PointKey = tuple[str, str, int]  # measurement, asset, ts_ms
# A batch this large (a gateway sends 5,000 readings at most by default; the wire allows
# ~1.3 M) is validated and encoded in a worker thread, so the event loop keeps serving
# health, acks and signals meanwhile.
OFF_LOOP_ROWS = 20_000

# One for every store: the series keys and field names it keeps are the site model's.
_ENCODER = LineEncoder()


class LineWriter(Protocol):
    """InfluxDB's v1 or v2 write path: lines in, what landed and what was refused out."""

    async def write(self, lines: Sequence[str]) -> WriteResult: ...


@dataclass
class StoreResult:
    stored: int  # readings now in InfluxDB
    refused: int  # readings or lines now in the dead-letter store
    valid: list[Reading]  # what passed validation: the alarm engine's input


@dataclass
class InfluxStore:
    validator: Validator
    writer: LineWriter
    dead_letters: DeadLetters
    points_written: int = 0
    refused: int = 0
    null_values: int = 0

    async def __call__(self, batch: Batch, bad_rows: Sequence[BadRow] = ()) -> StoreResult:
        if len(batch.readings) + len(bad_rows) > OFF_LOOP_ROWS:
            verdict, lines, unencodable = await asyncio.to_thread(self._prepare, batch, bad_rows)
        else:
            verdict, lines, unencodable = self._prepare(batch, bad_rows)
        refused_rows = verdict.rejected + unencodable
        refused_lines: list[tuple[str, str]] = []
        if lines:
            result = await self.writer.write(lines)
            refused_lines = result.rejected
            self.points_written += len(lines) - len(refused_lines)
        # Written only after InfluxDB answered: a crash before this line means no ack,
        # and the resent batch lands on the same points and refuses the same rows again.
        if refused_rows or refused_lines:  # one transaction, off the event loop
            await asyncio.to_thread(
                self.dead_letters.keep, batch.site, batch.station, refused_rows, refused_lines
            )
        refused = len(refused_rows) + len(refused_lines)
        self.refused += refused
        valid = [a.reading for a in verdict.accepted]
        return StoreResult(len(batch.readings) - len(refused_rows), refused, valid)

    def _prepare(
        self, batch: Batch, bad_rows: Sequence[BadRow]
    ) -> tuple[Verdict, list[str], list[tuple[Any, str]]]:
        verdict = self.validator.check(batch, bad_rows)
        lines, unencodable = self._lines(batch, verdict.accepted)
        return verdict, lines, unencodable

    def lines_for(
        self, batch: Batch, accepted: list[Accepted]
    ) -> tuple[list[str], list[tuple[Any, str]]]:
        """Line protocol for accepted readings, and the readings that cannot be encoded."""
        return self._lines(batch, accepted)

    def _lines(
        self, batch: Batch, accepted: list[Accepted]
    ) -> tuple[list[str], list[tuple[Any, str]]]:
        points: dict[PointKey, list[Reading]] = {}
        nulls = 0
        for reading, measurement, _ in accepted:
            if reading.value is None:  # a sensor's own fault report: no field to store
                nulls += 1
                continue
            key = (measurement, reading.asset, reading.ts_ms)
            group = points.get(key)
            if group is None:
                points[key] = [reading]
            else:
                group.append(reading)
        self.null_values += nulls
        lines: list[str] = []
        unencodable: list[tuple[Any, str]] = []
        site, station = batch.site, batch.station
        for (measurement, asset, ts_ms), readings in points.items():
            tags = {"site": site, "station": station, "asset": asset}
            fields = {r.signal: r.value for r in readings if r.value is not None}
            try:
                lines.append(_ENCODER.encode(measurement, tags, fields, ts_ms))
            except LineProtocolError:
                line, refused = _good_fields(measurement, tags, readings, ts_ms)
                lines += line
                unencodable += refused
        return lines, unencodable


def _good_fields(
    measurement: str, tags: dict[str, str], readings: list[Reading], ts_ms: int
) -> tuple[list[str], list[tuple[Any, str]]]:
    """A point with a field line protocol cannot carry (a uint64 of 2^63 or more, a lone
    surrogate): the other fields are stored, each bad one refused with its own reason."""
    good: dict[str, FieldValue] = {}
    refused: list[tuple[Any, str]] = []
    for r in readings:
        if r.value is None:
            continue
        try:
            _ENCODER.encode(measurement, tags, {r.signal: r.value}, ts_ms)
        except LineProtocolError as exc:
            refused.append((r.row(), f"{measurement}/{tags['asset']}@{ts_ms}: {exc}"))
        else:
            good[r.signal] = r.value
    if not good:
        return [], refused
    try:
        return [_ENCODER.encode(measurement, tags, good, ts_ms)], refused
    except LineProtocolError as exc:  # fine alone, not together (the 1.x line splitter)
        where = f"{measurement}/{tags['asset']}@{ts_ms}"
        together = [(r.row(), f"{where}: {exc}") for r in readings if r.signal in good]
        return [], refused + together
