"""The notifier's durable state in one SQLite file: groups waiting, episodes and their
tiers, messages and their deliveries (the outbox).

What makes a restart safe: every decision to tell someone is stored in the same
transaction as the state that makes it happen once. A group's transitions are marked
sent in the transaction that writes its messages; a tier reached or a reminder number
in the one that writes the escalation or reminder. A new Notifier on the same file
therefore neither repeats a decision nor forgets one that is due (a timer is worked
out from what is stored). Deliveries are marked sent right after the channel accepted
them; a crash between the two sends that one delivery again on restart (at least
once: a duplicate is better than a crew never told).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from facility.closing import ClosedOnExit
from facility.sqlite import Schema, SqliteFile
from ingest.alarms.book import AlarmEvent, Transition
from ingest.alarms.model import AlarmKey, AlarmState, Priority
from ingest.alarms.notify.config import Contact
from ingest.alarms.notify.escalate import Reached


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # not tried yet
    FAILED = "failed"  # the last try failed; tried again at next_attempt_ms
    SENT = "sent"
    ABANDONED = "abandoned"  # failed for longer than delivery.give_up_after: logged loudly


@dataclass(frozen=True)
class Episode:
    """One raise of one alarm as the notifier follows it, from telling the crew on duty
    until the book says it needs nobody any more."""

    raise_id: int  # the book's transition id of the raise (or back-in-view)
    key: AlarmKey
    priority: Priority
    crew: str
    opened_ms: int
    raised_ms: int | None
    closed_ms: int | None = None
    reached: dict[int, Reached] = field(default_factory=dict)

    @property
    def people(self) -> set[str]:
        return {p for r in self.reached.values() for p in r.people}


@dataclass(frozen=True)
class NewMessage:
    kind: str  # group | escalation | reminder
    person: str
    title: str
    body: str
    notify_type: str
    alarms: list[dict[str, Any]]
    contacts: tuple[Contact, ...]


@dataclass(frozen=True)
class TierTold:
    raise_id: int
    tier: int
    at_ms: int
    people: tuple[str, ...]


@dataclass(frozen=True)
class Reminded:
    raise_id: int
    tier: int
    n: int


@dataclass(frozen=True)
class Delivery:
    id: int
    message_id: int
    kind: str
    person: str
    contact_id: str
    contact_label: str
    status: DeliveryStatus
    attempts: int
    next_attempt_ms: int
    last_error: str
    created_ms: int
    sent_ms: int | None
    title: str
    body: str
    notify_type: str
    alarms: list[dict[str, Any]]
    last_attempt_ms: int | None = None


# Schema 1, as the first stores were written (a new file gets it, then every step after).
_SCHEMA_1 = (
    """CREATE TABLE IF NOT EXISTS waiting (
        transition_id INTEGER PRIMARY KEY,  -- the book's id: a transition is taken once
        crew TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        sent_ms INTEGER,                    -- NULL while it waits in its group
        transition TEXT NOT NULL            -- JSON
    )""",
    "CREATE INDEX IF NOT EXISTS waiting_crew ON waiting (crew) WHERE sent_ms IS NULL",
    "CREATE TABLE IF NOT EXISTS crew_group (crew TEXT PRIMARY KEY, last_sent_ms INTEGER)",
    """CREATE TABLE IF NOT EXISTS episode (
        raise_id INTEGER PRIMARY KEY,
        site TEXT NOT NULL, station TEXT NOT NULL, asset TEXT NOT NULL, rule TEXT NOT NULL,
        priority TEXT NOT NULL,
        crew TEXT NOT NULL,
        opened_ms INTEGER NOT NULL,         -- wall time the crew on duty was told
        raised_ms INTEGER,                  -- the book's raised_ms then
        closed_ms INTEGER,
        closed_why TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS episode_open ON episode (closed_ms) WHERE closed_ms IS NULL",
    "CREATE INDEX IF NOT EXISTS episode_key ON episode (site, station, asset, rule, raise_id)",
    """CREATE TABLE IF NOT EXISTS episode_tier (
        raise_id INTEGER NOT NULL REFERENCES episode (raise_id),
        tier INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        repeats INTEGER NOT NULL DEFAULT 0,
        people TEXT NOT NULL,               -- JSON list of person ids told
        PRIMARY KEY (raise_id, tier)
    )""",
    """CREATE TABLE IF NOT EXISTS message (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        person TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        notify_type TEXT NOT NULL,
        alarms TEXT NOT NULL,               -- JSON
        created_ms INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS delivery (
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
        sent_ms INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS delivery_open ON delivery (status) "
    "WHERE status IN ('pending', 'failed')",
)

SCHEMA = Schema(
    "notifier store",
    (
        _SCHEMA_1,
        # 2: when a delivery was last tried, NULL until it is
        ("ALTER TABLE delivery ADD COLUMN last_attempt_ms INTEGER",),
    ),
)
SCHEMA_VERSION = SCHEMA.version

_DELIVERY_COLUMNS = (
    "d.id, d.message_id, m.kind, d.person, d.contact_id, d.contact_label, d.status, "
    "d.attempts, d.next_attempt_ms, d.last_error, d.created_ms, d.sent_ms, m.title, m.body, "
    "m.notify_type, m.alarms, d.last_attempt_ms"
)


class NotifyStore(ClosedOnExit):
    def __init__(self, path: Path) -> None:
        self.path = path
        # Few writes, each a promise to tell someone: worth an fsync each (FULL). The
        # notifier runs on the event loop's thread only: sqlite3 checks that.
        self._file = SqliteFile(path, SCHEMA, synchronous="FULL", check_same_thread=True)
        self._db = self._file.open()
        self._transaction = self._file.transaction

    def close(self) -> None:
        self._file.close()

    # -- groups -----------------------------------------------------------------------

    def add_waiting(self, crew: str, t: Transition, now_ms: int) -> bool:
        """Put a transition in its crew's group; False if it was taken before."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO waiting (transition_id, crew, received_ms, transition) "
                "VALUES (?, ?, ?, ?)",
                (t.id, crew, now_ms, json.dumps(transition_to_json(t))),
            )
            return cursor.rowcount == 1

    def waiting_groups(self) -> list[tuple[str, int, int | None]]:
        """(crew, first received, last group sent) of every crew with a group waiting."""
        rows = self._db.execute(
            "SELECT w.crew, MIN(w.received_ms), g.last_sent_ms FROM waiting w "
            "LEFT JOIN crew_group g ON g.crew = w.crew WHERE w.sent_ms IS NULL "
            "GROUP BY w.crew ORDER BY w.crew"
        ).fetchall()
        return [(str(c), int(first), _int_or_none(last)) for c, first, last in rows]

    def waiting_of(self, crew: str) -> list[Transition]:
        rows = self._db.execute(
            "SELECT transition FROM waiting WHERE crew = ? AND sent_ms IS NULL "
            "ORDER BY transition_id",
            (crew,),
        ).fetchall()
        return [transition_from_json(json.loads(r[0])) for r in rows]

    def waiting_count(self) -> int:
        (n,) = self._db.execute("SELECT COUNT(*) FROM waiting WHERE sent_ms IS NULL").fetchone()
        return int(n)

    def commit_group(
        self,
        crew: str,
        transition_ids: Sequence[int],
        now_ms: int,
        opened: Sequence[Episode],
        messages: Sequence[NewMessage],
    ) -> None:
        """A group sent: its transitions done, episodes opened, messages queued, at once."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE waiting SET sent_ms = ? WHERE transition_id = ?",
                [(now_ms, i) for i in transition_ids],
            )
            db.execute(
                "INSERT INTO crew_group (crew, last_sent_ms) VALUES (?, ?) "
                "ON CONFLICT (crew) DO UPDATE SET last_sent_ms = excluded.last_sent_ms",
                (crew, now_ms),
            )
            for episode in opened:
                _open_episode(db, episode, now_ms)
            _queue(db, messages, now_ms)

    # -- episodes ---------------------------------------------------------------------

    def open_episodes(self) -> list[Episode]:
        return self._episodes("closed_ms IS NULL", ())

    def latest_episode(self, key: AlarmKey, up_to_id: int | None = None) -> Episode | None:
        """The newest episode of the alarm begun by a transition up to `up_to_id`."""
        found = self._episodes(
            "site = ? AND station = ? AND asset = ? AND rule = ? AND raise_id <= ?",
            (key.site, key.station, key.asset, key.rule, up_to_id or 2**62),
            "ORDER BY raise_id DESC LIMIT 1",
        )
        return found[0] if found else None

    def close_episode(self, raise_id: int, now_ms: int, why: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE episode SET closed_ms = ?, closed_why = ? "
                "WHERE raise_id = ? AND closed_ms IS NULL",
                (now_ms, why, raise_id),
            )

    def commit_timers(
        self,
        now_ms: int,
        told: Sequence[TierTold],
        reminded: Sequence[Reminded],
        messages: Sequence[NewMessage],
    ) -> None:
        """Escalations and reminders decided in one tick, with their messages, at once."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO episode_tier (raise_id, tier, at_ms, people) VALUES (?, ?, ?, ?)",
                [(t.raise_id, t.tier, t.at_ms, json.dumps(t.people)) for t in told],
            )
            db.executemany(
                "UPDATE episode_tier SET repeats = ? WHERE raise_id = ? AND tier = ?",
                [(r.n, r.raise_id, r.tier) for r in reminded],
            )
            _queue(db, messages, now_ms)

    def _episodes(self, where: str, args: Sequence[object], tail: str = "") -> list[Episode]:
        rows = self._db.execute(
            "SELECT raise_id, site, station, asset, rule, priority, crew, opened_ms, raised_ms, "
            f"closed_ms FROM episode WHERE {where} {tail or 'ORDER BY raise_id'}",
            args,
        ).fetchall()
        return [self._episode(row) for row in rows]

    def _episode(self, row: Sequence[Any]) -> Episode:
        raise_id, site, station, asset, rule, priority, crew, opened, raised, closed = row
        tiers = self._db.execute(
            "SELECT tier, at_ms, repeats, people FROM episode_tier WHERE raise_id = ?",
            (raise_id,),
        ).fetchall()
        reached = {
            int(t): Reached(int(t), int(at), int(n), tuple(json.loads(people)))
            for t, at, n, people in tiers
        }
        return Episode(
            raise_id=int(raise_id),
            key=AlarmKey(str(site), str(station), str(asset), str(rule)),
            priority=Priority(priority),
            crew=str(crew),
            opened_ms=int(opened),
            raised_ms=None if raised is None else int(raised),
            closed_ms=None if closed is None else int(closed),
            reached=reached,
        )

    # -- deliveries -------------------------------------------------------------------

    def undelivered(self) -> list[Delivery]:
        """Every delivery still to make, oldest first (pending and failed)."""
        return self._deliveries("d.status IN ('pending', 'failed')", (), "ORDER BY d.id")

    def deliveries(
        self,
        status: DeliveryStatus | Collection[DeliveryStatus] | None = None,
        limit: int = 100,
        since_ms: int | None = None,
    ) -> list[Delivery]:
        """The newest deliveries, optionally of some statuses, and only those made or
        last tried at or after `since_ms`: what an operator looks at."""
        statuses = [status] if isinstance(status, DeliveryStatus) else list(status or [])
        clauses, args = ["1"], list[object]()
        if statuses:
            clauses.append(f"d.status IN ({', '.join('?' * len(statuses))})")
            args += [s.value for s in statuses]
        if since_ms is not None:
            clauses.append("COALESCE(d.last_attempt_ms, d.created_ms) >= ?")
            args.append(since_ms)
        tail = f"ORDER BY d.id DESC LIMIT {int(limit)}"
        return self._deliveries(" AND ".join(clauses), args, tail)

    def mark_sent(self, delivery_id: int, now_ms: int) -> None:
        self._mark(delivery_id, DeliveryStatus.SENT, now_ms, "", now_ms, now_ms)

    def mark_failed(
        self, delivery_id: int, error: str, retry_at_ms: int, now_ms: int | None = None
    ) -> None:
        self._mark(delivery_id, DeliveryStatus.FAILED, retry_at_ms, error, None, now_ms)

    def mark_abandoned(
        self, delivery_id: int, error: str, now_ms: int, attempted: bool = True
    ) -> None:
        tried = now_ms if attempted else None
        self._mark(delivery_id, DeliveryStatus.ABANDONED, now_ms, error, None, tried)

    def _mark(
        self,
        delivery_id: int,
        status: DeliveryStatus,
        next_ms: int,
        error: str,
        sent_ms: int | None,
        tried_ms: int | None,
    ) -> None:
        """`tried_ms`: when the channel was tried (None: not tried, just given up)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE delivery SET status = ?, next_attempt_ms = ?, last_error = ?, "
                "sent_ms = ?, attempts = attempts + ?, "
                "last_attempt_ms = COALESCE(?, last_attempt_ms) WHERE id = ?",
                (
                    status.value,
                    next_ms,
                    error,
                    sent_ms,
                    int(tried_ms is not None),
                    tried_ms,
                    delivery_id,
                ),
            )

    def prune(self, before_ms: int) -> None:
        """Forget what is over and older than `before_ms`: sent groups, closed episodes,
        messages whose deliveries are all sent or abandoned. Open work is never pruned."""
        with self._transaction() as db:
            db.execute("DELETE FROM waiting WHERE sent_ms < ?", (before_ms,))
            old = "SELECT raise_id FROM episode WHERE closed_ms < ?"
            db.execute(f"DELETE FROM episode_tier WHERE raise_id IN ({old})", (before_ms,))
            db.execute("DELETE FROM episode WHERE closed_ms < ?", (before_ms,))
            done = (
                "SELECT id FROM message WHERE created_ms < ? AND id NOT IN (SELECT message_id "
                "FROM delivery WHERE status IN ('pending', 'failed'))"
            )
            db.execute(f"DELETE FROM delivery WHERE message_id IN ({done})", (before_ms,))
            db.execute(f"DELETE FROM message WHERE id IN ({done})", (before_ms,))

    def counts(self) -> dict[DeliveryStatus, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM delivery GROUP BY status")
        found = {DeliveryStatus(s): int(n) for s, n in rows}
        return {s: found.get(s, 0) for s in DeliveryStatus}

    def _deliveries(self, where: str, args: Sequence[object], tail: str) -> list[Delivery]:
        rows = self._db.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM delivery d JOIN message m ON m.id = d.message_id "
            f"WHERE {where} {tail}",
            args,
        ).fetchall()
        return [_delivery(row) for row in rows]


def _open_episode(db: sqlite3.Connection, e: Episode, now_ms: int) -> None:
    key = e.key
    db.execute(
        "UPDATE episode SET closed_ms = ?, closed_why = 'raised again' WHERE site = ? AND "
        "station = ? AND asset = ? AND rule = ? AND closed_ms IS NULL AND raise_id < ?",
        (now_ms, key.site, key.station, key.asset, key.rule, e.raise_id),
    )
    db.execute(
        "INSERT OR IGNORE INTO episode (raise_id, site, station, asset, rule, priority, crew, "
        "opened_ms, raised_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.raise_id,
            key.site,
            key.station,
            key.asset,
            key.rule,
            e.priority.value,
            e.crew,
            e.opened_ms,
            e.raised_ms,
        ),
    )
    for r in e.reached.values():
        db.execute(
            "INSERT OR IGNORE INTO episode_tier (raise_id, tier, at_ms, people) "
            "VALUES (?, ?, ?, ?)",
            (e.raise_id, r.tier, r.at_ms, json.dumps(r.people)),
        )


def _queue(db: sqlite3.Connection, messages: Sequence[NewMessage], now_ms: int) -> None:
    for m in messages:
        cursor = db.execute(
            "INSERT INTO message (kind, person, title, body, notify_type, alarms, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (m.kind, m.person, m.title, m.body, m.notify_type, json.dumps(m.alarms), now_ms),
        )
        db.executemany(
            "INSERT INTO delivery (message_id, person, contact_id, contact_label, status, "
            "next_attempt_ms, created_ms) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
            [(cursor.lastrowid, m.person, c.id, c.label, now_ms, now_ms) for c in m.contacts],
        )


def _delivery(row: Sequence[Any]) -> Delivery:
    (id_, message_id, kind, person, contact_id, label, status, attempts, next_ms) = row[:9]
    (error, created, sent, title, body, notify_type, alarms, tried) = row[9:]
    return Delivery(
        id=int(id_),
        message_id=int(message_id),
        kind=str(kind),
        person=str(person),
        contact_id=str(contact_id),
        contact_label=str(label),
        status=DeliveryStatus(status),
        attempts=int(attempts),
        next_attempt_ms=int(next_ms),
        last_error=str(error),
        created_ms=int(created),
        sent_ms=None if sent is None else int(sent),
        title=str(title),
        body=str(body),
        notify_type=str(notify_type),
        alarms=list(json.loads(alarms)),
        last_attempt_ms=_int_or_none(tried),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def transition_to_json(t: Transition) -> dict[str, Any]:
    return {
        "id": t.id,
        "key": str(t.key),
        "event": t.event.value,
        "from_state": t.from_state.value,
        "to_state": t.to_state.value,
        "at_ms": t.at_ms,
        "recorded_ms": t.recorded_ms,
        "user": t.user,
        "comment": t.comment,
        "priority": t.priority.value,
        "message": t.message,
        "value": t.value,
        "suppressed": t.suppressed,
    }


def transition_from_json(data: dict[str, Any]) -> Transition:
    return Transition(
        id=int(data["id"]),
        key=AlarmKey.parse(str(data["key"])),
        event=AlarmEvent(data["event"]),
        from_state=AlarmState(data["from_state"]),
        to_state=AlarmState(data["to_state"]),
        at_ms=int(data["at_ms"]),
        recorded_ms=int(data["recorded_ms"]),
        user=str(data["user"]),
        comment=str(data["comment"]),
        priority=Priority(data["priority"]),
        message=str(data["message"]),
        value=data["value"],
        suppressed=bool(data["suppressed"]),
    )
