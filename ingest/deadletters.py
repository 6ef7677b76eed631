"""What the ingest refused, kept with its reason until an operator has looked at it.

The gateway's outbox lets a batch go once it is acknowledged, so everything the ingest
does not write must be kept here or it is lost. Three kinds of letter:

- `row`: one reading (its wire row, JSON) that failed validation or could not be
  encoded (unknown asset, wrong type, NaN, absurd timestamp);
- `line`: one line of line protocol that InfluxDB refused (a field type conflict, ...);
- `batch`: a whole `up` message that could not be decoded (payload kept, base64).

`facility ingest dead-letters replay` sends pending letters through the ingest again
(after the site model or the database was fixed); a letter that lands is marked
replayed, one that fails again keeps its new reason.

Bounded, because what arrives is anyone's: a letter's body is cut at `max_body_bytes`
(a batch's payload at `max_payload_bytes`), saying so in its reason, and the store holds
at most `max_bytes`; when full it first forgets replayed letters, then drops new ones,
counted in `dropped` and logged. A batch's letters go in one transaction (a commit per
row took 120 s for a refused batch of 1.26 M rows); the service calls `keep` in a worker
thread so the event loop goes on meanwhile.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from facility.clock import now_ms
from facility.closing import ClosedOnExit
from facility.logs import RateLimitedLog
from facility.sqlite import Schema, SqliteFile, write_transaction
from facility.wire import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)

MAX_BYTES = 1024 * 1024 * 1024  # the store's size, bodies and reasons
MAX_BODY_BYTES = 64 * 1024  # a row or line letter; a wire row of a good gateway is < 300

LETTER_TABLE = (
    """CREATE TABLE IF NOT EXISTS dead_letter (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_ms INTEGER NOT NULL,
        site TEXT NOT NULL,
        station TEXT NOT NULL,
        kind TEXT NOT NULL,          -- row | line | batch
        body TEXT NOT NULL,          -- wire row JSON | line protocol | payload base64
        reason TEXT NOT NULL,
        replayed_ms INTEGER          -- set once a replay has stored it
    )""",
    "CREATE INDEX IF NOT EXISTS dead_letter_pending ON dead_letter (replayed_ms, id)",
)
# Stores have said version 2 since letters got kinds and replay marks (the first layout,
# one `row` column, never stamped a version), so today's table is reached in two steps
# and step 2 has nothing left to do. IF NOT EXISTS: a file whose stamp was lost in a
# crash right after the table was made is stamped, not refused.
SCHEMA = Schema("dead-letter store", (LETTER_TABLE, ()))


class LetterKind(StrEnum):
    ROW = "row"
    LINE = "line"
    BATCH = "batch"


@dataclass(frozen=True)
class DeadLetter:
    id: int
    received_ms: int
    site: str
    station: str
    kind: LetterKind
    body: str
    reason: str
    replayed_ms: int | None = None

    def row(self) -> Any:
        return json.loads(self.body)

    def payload(self) -> bytes:
        return base64.b64decode(self.body)


class DeadLetters(ClosedOnExit):
    def __init__(
        self,
        path: Path,
        max_bytes: int = MAX_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.max_body_bytes = max_body_bytes
        self.max_payload_bytes = max_payload_bytes
        self.dropped = 0  # letters not kept because the store was full
        # One connection for the service's event loop and its worker threads, one at a time.
        self._lock = threading.Lock()
        self._file = SqliteFile(path, SCHEMA, synchronous="FULL", busy_timeout_s=5.0)
        self._db = self._file.open()
        self._refusals = RateLimitedLog(log, level=logging.ERROR)
        self._bytes = self._size()
        self.pending = self._count_pending()  # as of the last write: health reads it

    def add_rows(self, site: str, station: str, refused: Iterable[tuple[Any, str]]) -> int:
        """(wire row, reason) pairs; a row is whatever the gateway sent, JSON-able."""
        return self.keep(site, station, refused, ())

    def add_lines(self, site: str, station: str, refused: Iterable[tuple[str, str]]) -> int:
        return self.keep(site, station, (), refused)

    def keep(
        self,
        site: str,
        station: str,
        rows: Iterable[tuple[Any, str]],
        lines: Iterable[tuple[str, str]],
    ) -> int:
        """A batch's refused rows and lines, in one transaction; how many were kept.
        Streamed into SQLite: a refused batch of a million rows is not copied again."""
        letters = itertools.chain(
            ((LetterKind.ROW, *self._row_body(r, why)) for r, why in rows),
            ((LetterKind.LINE, *self._cut(line, why)) for line, why in lines),
        )
        return self._add(site, station, letters)

    def add_batch(self, site: str, station: str, payload: bytes, reason: str) -> int:
        if len(payload) > self.max_payload_bytes:
            cut = self.max_payload_bytes
            reason += f" (payload cut to its first {cut} of {len(payload)} bytes)"
            payload = payload[: self.max_payload_bytes]
        body = base64.b64encode(payload).decode("ascii")
        return self._add(site, station, [(LetterKind.BATCH, body, reason)])

    def _row_body(self, row: Any, reason: str) -> tuple[str, str]:
        try:
            body = json.dumps(row)
        except (RecursionError, ValueError, TypeError) as exc:  # nested past the stack
            body, reason = "null", f"{reason} (row not kept: {type(exc).__name__})"
        return self._cut(body, reason)

    def _cut(self, body: str, reason: str) -> tuple[str, str]:
        if len(body) <= self.max_body_bytes:
            return body, reason
        return (
            body[: self.max_body_bytes],
            f"{reason} (kept the first {self.max_body_bytes} of {len(body)} characters)",
        )

    def _add(self, site: str, station: str, letters: Iterable[tuple[LetterKind, str, str]]) -> int:
        now = now_ms()
        offered = kept = size = 0

        def admitted(room: int) -> Iterator[tuple[int, str, str, str, str, str]]:
            nonlocal offered, kept, size
            for kind, body, why in letters:
                offered += 1
                if size + len(body) + len(why) > room:
                    continue  # full: counted, not kept
                size += len(body) + len(why)
                kept += 1
                yield (now, site, station, kind.value, body, why)

        with self._lock:
            room = self._make_room()
            with write_transaction(self._db):
                self._db.executemany(
                    "INSERT INTO dead_letter (received_ms, site, station, kind, body, reason)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    admitted(room),
                )
            self._bytes += size
            if kept:
                self.pending = self._count_pending()  # a replay elsewhere may have run
        if kept < offered:
            self._drop(site, station, offered - kept)
        return kept

    def _make_room(self) -> int:
        """Bytes free for new letters; past 90 % full, replayed letters are forgotten."""
        if self._bytes > 0.9 * self.max_bytes:
            self._db.execute("DELETE FROM dead_letter WHERE replayed_ms IS NOT NULL")
            self._bytes = self._size()
        return max(0, self.max_bytes - self._bytes)

    def _count_pending(self) -> int:
        (n,) = self._db.execute(
            "SELECT COUNT(*) FROM dead_letter WHERE replayed_ms IS NULL"
        ).fetchone()
        return int(n)

    def _size(self) -> int:
        (size,) = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(body) + LENGTH(reason)), 0) FROM dead_letter"
        ).fetchone()
        return int(size)

    def _drop(self, site: str, station: str, count: int) -> None:
        self.dropped += count
        self._refusals.log(
            "full",
            "dead-letter store %s is full (%d MB): %d letters of %s/%s not kept "
            "(%d dropped in all); replay or move it away",
            self.path,
            self.max_bytes // 1_000_000,
            count,
            site[:64],
            station[:64],
            self.dropped,
        )

    def count(self, pending_only: bool = True) -> int:
        where = " WHERE replayed_ms IS NULL" if pending_only else ""
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM dead_letter" + where).fetchone()
        return int(n)

    def latest(
        self,
        limit: int = 100,
        site: str | None = None,
        pending_only: bool = False,
        ids: Sequence[int] = (),
    ) -> list[DeadLetter]:
        """Newest first."""
        clauses: list[str] = []
        args: list[object] = []
        if site is not None:
            clauses.append("site = ?")
            args.append(site)
        if pending_only:
            clauses.append("replayed_ms IS NULL")
        if ids:
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, received_ms, site, station, kind, body, reason, replayed_ms "
                f"FROM dead_letter{where} ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [
            DeadLetter(i, at, s, st, LetterKind(k), b, why, r)
            for i, at, s, st, k, b, why, r in rows
        ]

    def mark_replayed(self, ids: Iterable[int]) -> None:
        now = now_ms()
        with self._lock, write_transaction(self._db):
            self._db.executemany(
                "UPDATE dead_letter SET replayed_ms = ? WHERE id = ?", [(now, i) for i in ids]
            )

    def set_reason(self, letter_id: int, reason: str) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE dead_letter SET reason = ? WHERE id = ?", (reason, letter_id))

    def close(self) -> None:
        with self._lock:
            self._file.close()
