-- The dead-letter store (stamped 2), as main wrote it on 2026-12-06 (8be3ca3), before facility/sqlite.py.
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
