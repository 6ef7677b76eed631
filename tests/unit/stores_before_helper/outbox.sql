-- The gateway outbox (no version stamp: user_version 0), as main wrote it on 2026-12-06 (8be3ca3), before facility/sqlite.py.
CREATE TABLE IF NOT EXISTS chunk (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an acked id is never reused
    oldest_ts INTEGER NOT NULL,
    newest_ts INTEGER NOT NULL,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunk_by_newest ON chunk (newest_ts, oldest_ts, count, bytes);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
