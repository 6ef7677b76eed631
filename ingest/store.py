"""Validated readings -> InfluxDB points; refused ones -> the dead-letter store.

Readings of one asset taken at one instant become one point with a field per signal.
Tags: site, station, asset. A batch counts as stored only when InfluxDB has accepted
the write (or refused lines are in the dead-letter store); if InfluxDB is unreachable
the store raises, the receiver does not ack, and the gateway sends the batch again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from facility.wire import Batch, Reading, Value
from ingest.deadletters import DeadLetters
from ingest.influx import InfluxV1Writer
from ingest.lineproto import LineProtocolError, encode_point
from ingest.validate import Accepted, Validator

PointKey = tuple[str, str, int]  # measurement, asset, ts_ms
Refusal = tuple[Reading | None, str]


@dataclass
class InfluxStore:
    validator: Validator
    writer: InfluxV1Writer
    dead_letters: DeadLetters
    points_written: int = 0
    refused: int = 0
    null_values: int = 0

    async def __call__(self, batch: Batch, bad_rows: list[tuple[int, str]]) -> None:
        verdict = self.validator.check(batch, bad_rows)
        lines, unencodable = self._lines(batch, verdict.accepted)
        refused = verdict.rejected + unencodable
        if lines:
            result = await self.writer.write(lines)
            refused += [
                (None, f"InfluxDB refused {line!r}: {why}") for line, why in result.rejected
            ]
            self.points_written += len(lines) - len(result.rejected)
        if refused:
            self.dead_letters.add(batch.site, batch.station, refused)
            self.refused += len(refused)

    def _lines(self, batch: Batch, accepted: list[Accepted]) -> tuple[list[str], list[Refusal]]:
        points: dict[PointKey, dict[str, bool | int | float | str]] = defaultdict(dict)
        for item in accepted:
            value: Value = item.reading.value
            if value is None:  # a sensor's own fault report: nothing to store as a field
                self.null_values += 1
                continue
            key = (item.measurement, item.reading.asset, item.reading.ts_ms)
            points[key][item.reading.signal] = value
        lines: list[str] = []
        unencodable: list[Refusal] = []
        for (measurement, asset, ts_ms), fields in points.items():
            tags = {"site": batch.site, "station": batch.station, "asset": asset}
            try:
                lines.append(encode_point(measurement, tags, fields, ts_ms))
            except LineProtocolError as exc:
                unencodable.append((None, f"{measurement}/{asset}@{ts_ms}: {exc}"))
        return lines, unencodable
