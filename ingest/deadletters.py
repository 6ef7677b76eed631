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
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    kind TEXT NOT NULL,          -- row | line | batch
    body TEXT NOT NULL,          -- wire row JSON | line protocol | payload base64
    reason TEXT NOT NULL,
    replayed_ms INTEGER          -- set once a replay has stored it
);
CREATE INDEX IF NOT EXISTS dead_letter_pending ON dead_letter (replayed_ms, id);
PRAGMA user_version = 2;
"""


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


class DeadLetters:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def add_rows(self, site: str, station: str, refused: Iterable[tuple[Any, str]]) -> int:
        """(wire row, reason) pairs; a row is whatever the gateway sent, JSON-able."""
        return self._add(
            site, station, LetterKind.ROW, ((json.dumps(r), why) for r, why in refused)
        )

    def add_lines(self, site: str, station: str, refused: Iterable[tuple[str, str]]) -> int:
        return self._add(site, station, LetterKind.LINE, refused)

    def add_batch(self, site: str, station: str, payload: bytes, reason: str) -> int:
        body = base64.b64encode(payload).decode("ascii")
        return self._add(site, station, LetterKind.BATCH, [(body, reason)])

    def _add(
        self, site: str, station: str, kind: LetterKind, letters: Iterable[tuple[str, str]]
    ) -> int:
        now = time.time_ns() // 1_000_000
        rows = [(now, site, station, kind.value, body, why) for body, why in letters]
        with self._db:
            self._db.executemany(
                "INSERT INTO dead_letter (received_ms, site, station, kind, body, reason) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def count(self, pending_only: bool = True) -> int:
        where = " WHERE replayed_ms IS NULL" if pending_only else ""
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
        now = time.time_ns() // 1_000_000
        with self._db:
            self._db.executemany(
                "UPDATE dead_letter SET replayed_ms = ? WHERE id = ?", [(now, i) for i in ids]
            )

    def set_reason(self, letter_id: int, reason: str) -> None:
        with self._db:
            self._db.execute("UPDATE dead_letter SET reason = ? WHERE id = ?", (reason, letter_id))

    def close(self) -> None:
        self._db.close()
