"""The alarm book's storage: its SQLite schema, and alarms and transitions as rows.

Every function here works inside the caller's transaction (ingest/alarms/book.py opens
them); none commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from facility.sqlite import Schema
from facility.wire import Value
from ingest.alarms.lifecycle import Alarm, AlarmEvent, Transition
from ingest.alarms.model import AlarmKey, AlarmState, Priority

# Each entry moves the schema one version up; user_version says how many have run.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE alarm (
            site TEXT NOT NULL,
            station TEXT NOT NULL,
            asset TEXT NOT NULL,
            rule TEXT NOT NULL,
            state TEXT NOT NULL,
            active INTEGER NOT NULL,
            priority TEXT NOT NULL,
            message TEXT NOT NULL,
            value TEXT NOT NULL,            -- JSON
            latched INTEGER NOT NULL,
            raised_ms INTEGER,
            last_change_ms INTEGER NOT NULL, -- event time of the newest condition change
            updated_ms INTEGER NOT NULL,     -- wall time
            acked_ms INTEGER,
            acked_by TEXT,
            shelved_until_ms INTEGER,
            shelved_by TEXT,
            shelve_reason TEXT,
            PRIMARY KEY (site, station, asset, rule)
        )""",
        "CREATE INDEX alarm_state ON alarm (state)",
        "CREATE INDEX alarm_shelved ON alarm (shelved_until_ms) WHERE shelved_until_ms IS NOT NULL",
        """CREATE TABLE transition (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            site TEXT NOT NULL,
            station TEXT NOT NULL,
            asset TEXT NOT NULL,
            rule TEXT NOT NULL,
            event TEXT NOT NULL,
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            at_ms INTEGER NOT NULL,          -- event time, or the action's wall time
            recorded_ms INTEGER NOT NULL,    -- wall time
            user TEXT NOT NULL,
            comment TEXT NOT NULL,
            priority TEXT NOT NULL,
            message TEXT NOT NULL,
            value TEXT NOT NULL,             -- JSON
            suppressed INTEGER NOT NULL
        )""",
        "CREATE INDEX transition_key ON transition (site, station, asset, rule, id)",
        "CREATE INDEX transition_at ON transition (at_ms)",
        """CREATE TABLE out_of_service (
            site TEXT NOT NULL,
            station TEXT NOT NULL,
            asset TEXT NOT NULL,
            since_ms INTEGER NOT NULL,
            user TEXT NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (site, station, asset)
        )""",
    ),
    # late conditions: when they began (at_ms is when they ended)
    ("ALTER TABLE transition ADD COLUMN since_ms INTEGER",),
)
SCHEMA = Schema("alarm book", MIGRATIONS)
SCHEMA_VERSION = SCHEMA.version

_ALARM_COLUMNS = (
    "a.site, a.station, a.asset, a.rule, a.state, a.active, a.priority, a.message, a.value, "
    "a.latched, a.raised_ms, a.last_change_ms, a.updated_ms, a.acked_ms, a.acked_by, "
    "a.shelved_until_ms, a.shelved_by, a.shelve_reason, o.since_ms IS NOT NULL"
)
_ALARM_FROM = (
    "alarm a LEFT JOIN out_of_service o "
    "ON o.site = a.site AND o.station = a.station AND o.asset = a.asset"
)
_TRANSITION_COLUMNS = (
    "id, site, station, asset, rule, event, from_state, to_state, at_ms, recorded_ms, "
    "user, comment, priority, message, value, suppressed, since_ms"
)


def record(
    db: sqlite3.Connection,
    before: Alarm,
    after: Alarm,
    event: AlarmEvent,
    at_ms: int,
    now: int,
    user: str = "",
    comment: str = "",
    words: tuple[str, Value] | None = None,
    since_ms: int | None = None,
) -> Transition:
    """Store the new state and its transition (the caller's transaction holds both).
    `words`: the transition's own message and value (a clear's), else the alarm's."""
    key = after.key
    suppressed = before.hidden and after.hidden
    message, value = words if words is not None else (after.message, after.value)
    cursor = db.execute(
        f"INSERT INTO transition ({_TRANSITION_COLUMNS.removeprefix('id, ')}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key.site,
            key.station,
            key.asset,
            key.rule,
            event.value,
            before.state.value,
            after.state.value,
            at_ms,
            now,
            user,
            comment,
            after.priority.value,
            message,
            json.dumps(value),
            suppressed,
            since_ms,
        ),
    )
    save(db, after)
    assert cursor.lastrowid is not None
    return Transition(
        id=cursor.lastrowid,
        key=key,
        event=event,
        from_state=before.state,
        to_state=after.state,
        at_ms=at_ms,
        recorded_ms=now,
        user=user,
        comment=comment,
        priority=after.priority,
        message=message,
        value=value,
        suppressed=suppressed,
        since_ms=since_ms,
    )


def save(db: sqlite3.Connection, alarm: Alarm) -> None:
    """Write the alarm's row (its out_of_service flag lives in its own table)."""
    key = alarm.key
    db.execute(
        "INSERT OR REPLACE INTO alarm (site, station, asset, rule, state, active, priority, "
        "message, value, latched, raised_ms, last_change_ms, updated_ms, acked_ms, acked_by, "
        "shelved_until_ms, shelved_by, shelve_reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key.site,
            key.station,
            key.asset,
            key.rule,
            alarm.state.value,
            alarm.active,
            alarm.priority.value,
            alarm.message,
            json.dumps(alarm.value),
            alarm.latched,
            alarm.raised_ms,
            alarm.last_change_ms,
            alarm.updated_ms,
            alarm.acked_ms,
            alarm.acked_by,
            alarm.shelved_until_ms,
            alarm.shelved_by,
            alarm.shelve_reason,
        ),
    )


def load(db: sqlite3.Connection, key: AlarmKey) -> Alarm | None:
    found = load_where(
        db,
        "a.site = ? AND a.station = ? AND a.asset = ? AND a.rule = ?",
        (key.site, key.station, key.asset, key.rule),
    )
    return found[0] if found else None


def load_asset(db: sqlite3.Connection, site: str, station: str, asset: str) -> list[Alarm]:
    return load_where(db, "a.site = ? AND a.station = ? AND a.asset = ?", (site, station, asset))


def load_where(db: sqlite3.Connection, where: str, args: Sequence[object]) -> list[Alarm]:
    rows = db.execute(
        f"SELECT {_ALARM_COLUMNS} FROM {_ALARM_FROM} WHERE {where} "
        "ORDER BY a.site, a.station, a.asset, a.rule",
        args,
    ).fetchall()
    return [_alarm(row) for row in rows]


def _alarm(row: Sequence[Any]) -> Alarm:
    (site, station, asset, rule, state, active, priority, message, value) = row[:9]
    (latched, raised, last, updated, acked, acked_by, until, shelved_by, reason, oos) = row[9:]
    return Alarm(
        key=AlarmKey(str(site), str(station), str(asset), str(rule)),
        state=AlarmState(state),
        active=bool(active),
        priority=Priority(priority),
        message=str(message),
        value=json.loads(value),
        latched=bool(latched),
        raised_ms=_int_or_none(raised),
        last_change_ms=int(last),
        updated_ms=int(updated),
        acked_ms=_int_or_none(acked),
        acked_by=None if acked_by is None else str(acked_by),
        shelved_until_ms=_int_or_none(until),
        shelved_by=None if shelved_by is None else str(shelved_by),
        shelve_reason=None if reason is None else str(reason),
        out_of_service=bool(oos),
    )


def _transition(row: Sequence[Any]) -> Transition:
    (id_, site, station, asset, rule, event, from_state, to_state, at_ms, recorded) = row[:10]
    (user, comment, priority, message, value, suppressed, since) = row[10:]
    return Transition(
        id=int(id_),
        key=AlarmKey(str(site), str(station), str(asset), str(rule)),
        event=AlarmEvent(event),
        from_state=AlarmState(from_state),
        to_state=AlarmState(to_state),
        at_ms=int(at_ms),
        recorded_ms=int(recorded),
        user=str(user),
        comment=str(comment),
        priority=Priority(priority),
        message=str(message),
        value=json.loads(value),
        suppressed=bool(suppressed),
        since_ms=_int_or_none(since),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def asset_out_of_service(db: sqlite3.Connection, key: AlarmKey) -> bool:
    return out_of_service_row(db, key.site, key.station, key.asset) is not None


def out_of_service_row(
    db: sqlite3.Connection, site: str, station: str, asset: str
) -> tuple[int, str] | None:
    row = db.execute(
        "SELECT since_ms, user FROM out_of_service WHERE site = ? AND station = ? AND asset = ?",
        (site, station, asset),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def late_seen(db: sqlite3.Connection, key: AlarmKey, at_ms: int, since_ms: int | None) -> bool:
    """Whether this late condition (began since_ms, ended at_ms) is already journalled."""
    row = db.execute(
        "SELECT 1 FROM transition WHERE site = ? AND station = ? AND asset = ? AND rule = ? "
        "AND event = ? AND at_ms = ? AND since_ms = ?",
        (key.site, key.station, key.asset, key.rule, AlarmEvent.LATE.value, at_ms, since_ms),
    ).fetchone()
    return row is not None


def add_out_of_service(
    db: sqlite3.Connection, site: str, station: str, asset: str, now: int, user: str, reason: str
) -> None:
    db.execute(
        "INSERT INTO out_of_service (site, station, asset, since_ms, user, reason) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (site, station, asset, now, user, reason),
    )


def remove_out_of_service(db: sqlite3.Connection, site: str, station: str, asset: str) -> None:
    db.execute(
        "DELETE FROM out_of_service WHERE site = ? AND station = ? AND asset = ?",
        (site, station, asset),
    )


def active_condition_keys(db: sqlite3.Connection) -> list[AlarmKey]:
    rows = db.execute(
        "SELECT site, station, asset, rule FROM alarm WHERE active ORDER BY 1, 2, 3, 4"
    ).fetchall()
    return [AlarmKey(*row) for row in rows]


def transitions(
    db: sqlite3.Connection,
    key: AlarmKey | None,
    since_ms: int | None,
    until_ms: int | None,
    limit: int,
) -> list[Transition]:
    """The newest `limit` transitions matching, in the order they were recorded."""
    clauses: list[str] = []
    args: list[object] = []
    if key is not None:
        clauses.append("site = ? AND station = ? AND asset = ? AND rule = ?")
        args += [key.site, key.station, key.asset, key.rule]
    if since_ms is not None:
        clauses.append("at_ms >= ?")
        args.append(since_ms)
    if until_ms is not None:
        clauses.append("at_ms < ?")
        args.append(until_ms)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = db.execute(
        f"SELECT {_TRANSITION_COLUMNS} FROM transition{where} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [_transition(row) for row in reversed(rows)]
