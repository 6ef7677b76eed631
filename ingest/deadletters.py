"""Readings the ingest refused, kept with their reason until an operator looks at them.

SQLite, one row per refused reading (or per undecodable batch), so nothing a gateway
delivered is ever silently lost: the gateway's outbox has already let it go.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from facility.wire import Reading

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    site TEXT NOT NULL,
    station TEXT NOT NULL,
    row TEXT,              -- the reading as its wire row, JSON; NULL for a whole batch
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letter_received ON dead_letter (received_ms);
"""


@dataclass(frozen=True)
class DeadLetter:
    id: int
    received_ms: int
    site: str
    station: str
    row: list[object] | None
    reason: str


class DeadLetters:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def add(self, site: str, station: str, refused: list[tuple[Reading | None, str]]) -> None:
        now = time.time_ns() // 1_000_000
        rows = [(now, site, station, json.dumps(r.row()) if r else None, why) for r, why in refused]
        with self._db:
            self._db.executemany(
                "INSERT INTO dead_letter (received_ms, site, station, row, "
                "reason) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def count(self) -> int:
        (n,) = self._db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()
        return int(n)

    def latest(self, limit: int = 100, site: str | None = None) -> list[DeadLetter]:
        query = "SELECT id, received_ms, site, station, row, reason FROM dead_letter"
        args: tuple[object, ...] = ()
        if site is not None:
            query += " WHERE site = ?"
            args = (site,)
        rows = self._db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [
            DeadLetter(i, at, s, st, json.loads(row) if row else None, why)
            for i, at, s, st, row, why in rows
        ]

    def close(self) -> None:
        self._db.close()
