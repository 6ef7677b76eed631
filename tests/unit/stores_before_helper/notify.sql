-- The notifier store (stamped 2), as main wrote it on 2026-12-06 (8be3ca3), before facility/sqlite.py.
CREATE TABLE IF NOT EXISTS waiting (
        transition_id INTEGER PRIMARY KEY,  -- the book's id: a transition is taken once
        crew TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        sent_ms INTEGER,                    -- NULL while it waits in its group
        transition TEXT NOT NULL            -- JSON
    );
CREATE INDEX IF NOT EXISTS waiting_crew ON waiting (crew) WHERE sent_ms IS NULL;
CREATE TABLE IF NOT EXISTS crew_group (crew TEXT PRIMARY KEY, last_sent_ms INTEGER);
CREATE TABLE IF NOT EXISTS episode (
        raise_id INTEGER PRIMARY KEY,
        site TEXT NOT NULL, station TEXT NOT NULL, asset TEXT NOT NULL, rule TEXT NOT NULL,
        priority TEXT NOT NULL,
        crew TEXT NOT NULL,
        opened_ms INTEGER NOT NULL,         -- wall time the crew on duty was told
        raised_ms INTEGER,                  -- the book's raised_ms then
        closed_ms INTEGER,
        closed_why TEXT
    );
CREATE INDEX IF NOT EXISTS episode_open ON episode (closed_ms) WHERE closed_ms IS NULL;
CREATE INDEX IF NOT EXISTS episode_key ON episode (site, station, asset, rule, raise_id);
CREATE TABLE IF NOT EXISTS episode_tier (
        raise_id INTEGER NOT NULL REFERENCES episode (raise_id),
        tier INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        repeats INTEGER NOT NULL DEFAULT 0,
        people TEXT NOT NULL,               -- JSON list of person ids told
        PRIMARY KEY (raise_id, tier)
    );
CREATE TABLE IF NOT EXISTS message (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        person TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        notify_type TEXT NOT NULL,
        alarms TEXT NOT NULL,               -- JSON
        created_ms INTEGER NOT NULL
    );
CREATE TABLE IF NOT EXISTS delivery (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id INTEGER NOT NULL REFERENCES message (id),
        person TEXT NOT NULL,
        contact_id TEXT NOT NULL,
        contact_label TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL,
        sent_ms INTEGER,
        last_attempt_ms INTEGER             -- NULL until tried
    );
CREATE INDEX IF NOT EXISTS delivery_open ON delivery (status) WHERE status IN ('pending', 'failed');
PRAGMA user_version = 2;
