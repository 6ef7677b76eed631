"""The alarm book: the ISA-18.2 lifecycle of every alarm, durable in SQLite.

The engine reports condition changes (a rule's condition became active or inactive for
one asset, in event time); operators acknowledge, reset, shelve and take assets out of
service. The book turns both into alarm states and `Transition`s, and stores each
transition in the same SQLite transaction as the state it leads to, so a crash never
leaves one without the other. Only committed transitions are returned, and each is
returned exactly once: a restarted book has the same states and tells nothing again.

States and what moves them (`latched` comes with the condition change):

    state        condition active   condition inactive         acknowledge        reset
    NORMAL       UNACKED (raised)   -                          error              error
    UNACKED      -                  RTN_UNACKED (cleared)      ACKED              error
    ACKED        -                  NORMAL, latched: LATCHED   error              error
    RTN_UNACKED  UNACKED (raised)   -                          NORMAL, latched:   error
                                                               LATCHED
    LATCHED      UNACKED (raised)   -                          error              NORMAL

The condition is active exactly in UNACKED and ACKED. A latched alarm reaches NORMAL
only through a reset, which needs the condition inactive (it is, in LATCHED).

Out of the crew's view: a shelved alarm, or any alarm of an asset out of service. Its
condition changes still move the state machine (so the book always knows the process
state), but they are recorded with `suppressed=True` and never notified; a raise is
recorded under its own event name, SUPPRESSED, so history and Grafana show plainly that
nobody was told. Acknowledge and reset are refused while hidden (nobody can see it).
When the alarm comes back into view (unshelved, shelf expired, asset returned to
service, and not still hidden for the other reason) it starts afresh from its
condition, as ISA-18.2 has it: active -> UNACKED (the crew hears of it again), inactive
-> NORMAL (whatever came and went while hidden, or was latched, is let go).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from facility.wire import Value
from ingest.alarms.model import AlarmKey, AlarmState, ConditionChange, Priority
from ingest.lineproto import FieldValue, encode_point

ALARM_EVENT = "alarm_event"
DEFAULT_MAX_SHELVE_S = 8 * 3600.0

ACTIVE_STATES = frozenset({AlarmState.UNACKED, AlarmState.ACKED})


class AlarmEvent(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    RESET = "reset"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    SHELVE_EXPIRED = "shelve_expired"
    OUT_OF_SERVICE = "out_of_service"
    RETURNED_TO_SERVICE = "returned_to_service"
    SUPPRESSED = "suppressed"  # a raise while the alarm was out of view: recorded, not told
    LATE = "late"  # a condition that began and ended before it could be told: history


# What each transition says to a person (the console's history, the reports, the log):
# `{message}` is the alarm's own words (its clear words for CLEARED), `{by}` who did it
# and why.
EVENT_WORDS: dict[AlarmEvent, str] = {
    AlarmEvent.RAISED: "Raised: {message}",
    AlarmEvent.CLEARED: "Back to normal: {message}",
    AlarmEvent.ACKNOWLEDGED: "Acknowledged{by}: {message}",
    AlarmEvent.RESET: "Reset{by}, back to normal: {message}",
    AlarmEvent.SHELVED: "Shelved{by}: {message}",
    AlarmEvent.UNSHELVED: "Unshelved{by}, back in view: {message}",
    AlarmEvent.SHELVE_EXPIRED: "Shelf ran out, back in view: {message}",
    AlarmEvent.OUT_OF_SERVICE: "Asset out of service{by}: {message}",
    AlarmEvent.RETURNED_TO_SERVICE: "Asset back in service{by}: {message}",
    AlarmEvent.SUPPRESSED: "Raised out of view, nobody told: {message}",
    AlarmEvent.LATE: "Late, nobody told: {message}",
}


# Events that take an alarm out of view or bring it back.
_VIEW_EVENTS = frozenset(
    {
        AlarmEvent.SHELVED,
        AlarmEvent.UNSHELVED,
        AlarmEvent.SHELVE_EXPIRED,
        AlarmEvent.OUT_OF_SERVICE,
        AlarmEvent.RETURNED_TO_SERVICE,
    }
)

# The state tables (see the module docstring). A result of NORMAL becomes LATCHED for a
# latched alarm on a clear or an acknowledgement: see _settle.
_ON_RAISE = {
    AlarmState.NORMAL: AlarmState.UNACKED,
    AlarmState.RTN_UNACKED: AlarmState.UNACKED,
    AlarmState.LATCHED: AlarmState.UNACKED,
}
_ON_CLEAR = {AlarmState.UNACKED: AlarmState.RTN_UNACKED, AlarmState.ACKED: AlarmState.NORMAL}
_ON_ACK = {AlarmState.UNACKED: AlarmState.ACKED, AlarmState.RTN_UNACKED: AlarmState.NORMAL}
_ON_RESET = {AlarmState.LATCHED: AlarmState.NORMAL}


class AlarmActionError(ValueError):
    """An operator action the alarm's state does not allow; the text is for the operator."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of an alarm, as stored. `at_ms` is the event time for a condition
    change, the wall time of an operator action, the shelf's end for an expiry;
    `recorded_ms` is always the wall time it was stored. `suppressed`: it happened while
    the alarm was out of the crew's view and stayed so (shelved, out of service)."""

    id: int
    key: AlarmKey
    event: AlarmEvent
    from_state: AlarmState
    to_state: AlarmState
    at_ms: int
    recorded_ms: int
    user: str
    comment: str
    priority: Priority
    message: str
    value: Value
    suppressed: bool = False
    since_ms: int | None = None  # LATE: when the condition began (at_ms: when it ended)

    @property
    def active(self) -> bool:
        """Whether the condition was active after this transition."""
        return self.to_state in ACTIVE_STATES

    @property
    def text(self) -> str:
        """The transition in a sentence for a person (EVENT_WORDS)."""
        by = f" by {self.user}" if self.user else ""
        if self.comment:
            by += f" ({self.comment})"
        return EVENT_WORDS[self.event].format(by=by, message=self.message)

    @property
    def notify(self) -> bool:
        """Whether the crew should hear of it. Hiding or showing an alarm is news only if
        it is something the crew deals with (not NORMAL): an alarm put out of view while
        they work on it, or one back in view still active."""
        if self.suppressed or self.event in (AlarmEvent.SUPPRESSED, AlarmEvent.LATE):
            return False
        if self.event in _VIEW_EVENTS:
            return self.to_state is not AlarmState.NORMAL
        return True


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm's row. `last_change_ms` is the event time of the newest condition
    change seen; `raised_ms` the event time of the latest raise; `acked_*` belong to the
    latest raise; `out_of_service` is its asset's."""

    key: AlarmKey
    state: AlarmState
    active: bool
    priority: Priority
    message: str
    value: Value
    latched: bool
    raised_ms: int | None
    last_change_ms: int
    updated_ms: int
    acked_ms: int | None = None
    acked_by: str | None = None
    shelved_until_ms: int | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None
    out_of_service: bool = False

    @property
    def shelved(self) -> bool:
        return self.shelved_until_ms is not None

    @property
    def hidden(self) -> bool:
        """Out of the crew's view: shelved or its asset out of service."""
        return self.shelved or self.out_of_service


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class AlarmBook:
    """The alarm states and their history in one SQLite file. Thread-safe; several
    processes may share the file (every change is a read-modify-write inside one
    `BEGIN IMMEDIATE` transaction)."""

    def __init__(
        self,
        path: Path,
        now_ms: Callable[[], int] = wall_clock_ms,
        max_shelve_s: float = DEFAULT_MAX_SHELVE_S,
    ) -> None:
        if not (math.isfinite(max_shelve_s) and max_shelve_s > 0):
            raise ValueError(f"max_shelve_s must be a positive number, not {max_shelve_s}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.now_ms = now_ms
        self.max_shelve_s = max_shelve_s
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False
        )
        try:
            _open(self._db, path)
        except BaseException:
            self._db.close()
            raise

    # -- condition changes ------------------------------------------------------------

    def apply(self, change: ConditionChange) -> list[Transition]:
        """The engine's news; [] if it changes nothing (a repeat, or stale)."""
        with self._write() as db:
            now = self.now_ms()
            before = _load(db, change.key)
            if change.late_since_ms is not None:
                return _late(db, before, change, now)
            if before is not None and change.at_ms < before.last_change_ms:
                # Stale news: the gateway resent a batch, or a backlog from an outage
                # arrived after newer readings. The book already holds what the condition
                # was at a later instant, so an older change would undo newer knowledge
                # (and re-raise what was cleared, re-notifying the crew). The same time is
                # not stale: a repeat is then a no-op by `active`, and a real flip at the
                # instant of the last one (never from the engine's delays) is not lost.
                return []
            if before is None:
                before = _new_alarm(change, now, _asset_out_of_service(db, change.key))
            # The alarm keeps the words it was raised with (what an acknowledgement or a
            # reset is about); its return to normal has its own, on the transition.
            news = replace(
                before,
                priority=change.priority,
                message=change.message if change.active else before.message,
                value=change.value if change.active else before.value,
                latched=change.latched,
                last_change_ms=change.at_ms,
                updated_ms=now,
            )
            if before.active == change.active:
                _save(db, news)  # no transition, but the newest message and priority
                return []
            after = _condition_flipped(news, change.active, change.at_ms)
            event = AlarmEvent.RAISED if change.active else AlarmEvent.CLEARED
            if change.active and before.hidden:
                event = AlarmEvent.SUPPRESSED
            words = None if change.active else (change.message, change.value)
            return [_commit(db, before, after, event, change.at_ms, now, words=words)]

    # -- operator actions -------------------------------------------------------------

    def acknowledge(self, key: AlarmKey, user: str, comment: str = "") -> Transition:
        _require(user, "a user")
        with self._write() as db:
            now = self.now_ms()
            alarm = _in_view(db, key, "acknowledge")
            if alarm.state not in _ON_ACK:
                raise AlarmActionError(_why_no_ack(alarm))
            state = _settle(_ON_ACK[alarm.state], alarm.latched)
            after = replace(alarm, state=state, acked_ms=now, acked_by=user, updated_ms=now)
            return _commit(db, alarm, after, AlarmEvent.ACKNOWLEDGED, now, now, user, comment)

    def reset(self, key: AlarmKey, user: str, comment: str = "") -> Transition:
        """Release a latched alarm whose condition has cleared and been acknowledged."""
        _require(user, "a user")
        with self._write() as db:
            now = self.now_ms()
            alarm = _in_view(db, key, "reset")
            if alarm.state not in _ON_RESET:
                raise AlarmActionError(_why_no_reset(alarm))
            after = replace(alarm, state=_ON_RESET[alarm.state], updated_ms=now)
            return _commit(db, alarm, after, AlarmEvent.RESET, now, now, user, comment)

    def shelve(self, key: AlarmKey, user: str, reason: str, for_s: float) -> Transition:
        """Take the alarm out of view for `for_s` seconds (at most max_shelve_s, so a
        shelved alarm cannot be forgotten). Shelving a shelved alarm sets a new end."""
        _require(user, "a user")
        _require(reason, "a reason")
        if not (math.isfinite(for_s) and 0 < for_s <= self.max_shelve_s):
            raise AlarmActionError(
                f"an alarm can be shelved for more than 0 s and at most "
                f"{_duration(self.max_shelve_s)}, not {for_s:g} s"
            )
        with self._write() as db:
            now = self.now_ms()
            alarm = _known(db, key)
            until = now + math.ceil(for_s * 1000)
            after = replace(
                alarm,
                shelved_until_ms=until,
                shelved_by=user,
                shelve_reason=reason,
                updated_ms=now,
            )
            return _commit(db, alarm, after, AlarmEvent.SHELVED, now, now, user, reason)

    def unshelve(self, key: AlarmKey, user: str, comment: str = "") -> Transition:
        _require(user, "a user")
        with self._write() as db:
            now = self.now_ms()
            alarm = _known(db, key)
            if not alarm.shelved:
                raise AlarmActionError(f"{key} is not shelved")
            after = _into_view(_unshelved(alarm, now))
            return _commit(db, alarm, after, AlarmEvent.UNSHELVED, now, now, user, comment)

    def expire_shelves(self) -> list[Transition]:
        """End every shelf that is due. A shelf lasts until this runs, so the service
        calls it every few seconds."""
        with self._write() as db:
            now = self.now_ms()
            due = _load_where(db, "a.shelved_until_ms <= ?", (now,))
            due.sort(key=lambda a: (a.shelved_until_ms or 0, a.key))
            return [
                _commit(
                    db,
                    alarm,
                    _into_view(_unshelved(alarm, now)),
                    AlarmEvent.SHELVE_EXPIRED,
                    alarm.shelved_until_ms or now,  # the instant the shelf ended
                    now,
                )
                for alarm in due
            ]

    def set_out_of_service(self, asset_path: str, user: str, reason: str) -> list[Transition]:
        """Take every alarm of an asset out of view (maintenance, a known fault), until
        return_to_service; alarms first seen meanwhile are hidden too."""
        site, station, asset = _parse_asset_path(asset_path)
        _require(user, "a user")
        _require(reason, "a reason")
        with self._write() as db:
            now = self.now_ms()
            row = _out_of_service_row(db, site, station, asset)
            if row is not None:
                since_ms, by = row
                raise AlarmActionError(
                    f"{asset_path} is already out of service since {_iso(since_ms)} (by {by})"
                )
            alarms = _load_asset(db, site, station, asset)
            db.execute(
                "INSERT INTO out_of_service (site, station, asset, since_ms, user, reason) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (site, station, asset, now, user, reason),
            )
            return [
                _commit(
                    db,
                    alarm,
                    replace(alarm, out_of_service=True, updated_ms=now),
                    AlarmEvent.OUT_OF_SERVICE,
                    now,
                    now,
                    user,
                    reason,
                )
                for alarm in alarms
            ]

    def return_to_service(self, asset_path: str, user: str, comment: str = "") -> list[Transition]:
        site, station, asset = _parse_asset_path(asset_path)
        _require(user, "a user")
        with self._write() as db:
            now = self.now_ms()
            if _out_of_service_row(db, site, station, asset) is None:
                raise AlarmActionError(f"{asset_path} is not out of service")
            alarms = _load_asset(db, site, station, asset)
            db.execute(
                "DELETE FROM out_of_service WHERE site = ? AND station = ? AND asset = ?",
                (site, station, asset),
            )
            return [
                _commit(
                    db,
                    alarm,
                    _into_view(replace(alarm, out_of_service=False, updated_ms=now)),
                    AlarmEvent.RETURNED_TO_SERVICE,
                    now,
                    now,
                    user,
                    comment,
                )
                for alarm in alarms
            ]

    # -- reading ----------------------------------------------------------------------

    def is_out_of_service(self, asset_path: str) -> bool:
        site, station, asset = _parse_asset_path(asset_path)
        with self._read() as db:
            return _out_of_service_row(db, site, station, asset) is not None

    def get(self, key: AlarmKey) -> Alarm | None:
        with self._read() as db:
            return _load(db, key)

    def active(self) -> list[Alarm]:
        """Every alarm not NORMAL (hidden ones too: see Alarm.hidden), the most urgent
        priority first, then the oldest raise."""
        with self._read() as db:
            alarms = _load_where(db, "a.state != ?", (AlarmState.NORMAL.value,))
        return sorted(alarms, key=lambda a: (a.priority.rank, a.raised_ms or 0, a.key))

    def active_conditions(self) -> list[AlarmKey]:
        """The alarms whose condition is active (UNACKED or ACKED, hidden or not): what
        the engine must take as active after a restart (AlarmEngine.restore). Not the
        same as active(): a RTN_UNACKED or LATCHED alarm's condition has cleared."""
        with self._read() as db:
            rows = db.execute(
                "SELECT site, station, asset, rule FROM alarm WHERE active ORDER BY 1, 2, 3, 4"
            ).fetchall()
        return [AlarmKey(*row) for row in rows]

    def history(
        self,
        key: AlarmKey | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Transition]:
        """The newest `limit` transitions with since_ms <= at_ms < until_ms, in the order
        they were recorded. That order, not at_ms, is the order of the state changes: an
        acknowledgement (wall time) may precede a late clear whose event time is older."""
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
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_TRANSITION_COLUMNS} FROM transition{where} ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_transition(row) for row in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> AlarmBook:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: everything in it is stored, or nothing (an exception, a
        refused action or a failed COMMIT rolls back)."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._connection()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"alarm book {self.path} is closed")
        return self._db


def alarm_event_line(t: Transition) -> str:
    """The transition as an `alarm_event` point (Grafana annotations). Empty strings are
    left out; `event` is always there. The alarm's value is not written: its type varies
    by rule, and an InfluxDB field cannot change type."""
    fields: dict[str, FieldValue] = {
        "event": t.event.value,
        "state": t.to_state.value,
        "active": t.active,
    }
    for name, text in (("user", t.user), ("comment", t.comment), ("message", t.message)):
        if text:
            fields[name] = text
    tags = {
        "site": t.key.site,
        "station": t.key.station,
        "asset": t.key.asset,
        "rule": t.key.rule,
        "priority": t.priority.value,
    }
    return encode_point(ALARM_EVENT, tags, fields, t.at_ms)


# -- the state machine ----------------------------------------------------------------


def _settle(state: AlarmState, latched: bool) -> AlarmState:
    """A latched alarm never returns to NORMAL by itself: it waits, LATCHED, for a reset."""
    return AlarmState.LATCHED if latched and state is AlarmState.NORMAL else state


def _condition_flipped(alarm: Alarm, active: bool, at_ms: int) -> Alarm:
    if active:
        return replace(
            alarm,
            state=_ON_RAISE[alarm.state],
            active=True,
            raised_ms=at_ms,
            acked_ms=None,
            acked_by=None,
        )
    return replace(alarm, state=_settle(_ON_CLEAR[alarm.state], alarm.latched), active=False)


def _into_view(alarm: Alarm) -> Alarm:
    """Back in view (if neither shelved nor out of service any more): the alarm starts
    afresh from its condition, so the crew hears again of what is still wrong."""
    if alarm.hidden:
        return alarm
    if alarm.active:
        return replace(alarm, state=AlarmState.UNACKED, acked_ms=None, acked_by=None)
    return replace(alarm, state=AlarmState.NORMAL)


def _unshelved(alarm: Alarm, now: int) -> Alarm:
    return replace(
        alarm, shelved_until_ms=None, shelved_by=None, shelve_reason=None, updated_ms=now
    )


def _why_no_ack(alarm: Alarm) -> str:
    if alarm.state is AlarmState.NORMAL:
        return f"nothing to acknowledge: {alarm.key} is normal"
    by = f" by {alarm.acked_by}" if alarm.acked_by else ""
    at = f" at {_iso(alarm.acked_ms)}" if alarm.acked_ms is not None else ""
    waiting = ", waiting for a reset" if alarm.state is AlarmState.LATCHED else ""
    return f"{alarm.key} is already acknowledged{by}{at}{waiting}"


def _why_no_reset(alarm: Alarm) -> str:
    if alarm.active:
        return f"cannot reset {alarm.key}: its condition is still active"
    if alarm.state is AlarmState.RTN_UNACKED:
        return f"cannot reset {alarm.key}: acknowledge it first"
    return f"nothing to reset: {alarm.key} is normal"


def _require(text: str, what: str) -> None:
    if not text.strip():
        raise AlarmActionError(f"{what} is required")


def _parse_asset_path(asset_path: str) -> tuple[str, str, str]:
    parts = asset_path.split("/")
    if len(parts) != 3 or not all(parts):
        raise AlarmActionError(f"not SITE/STATION/ASSET: {asset_path!r}")
    return parts[0], parts[1], parts[2]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


# -- storage --------------------------------------------------------------------------

# Each entry moves the schema one version up; user_version says how many have run.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
SCHEMA_VERSION = len(_MIGRATIONS)

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


def _open(db: sqlite3.Connection, path: Path) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    # Few writes, and each is an alarm someone may be told of: worth an fsync each.
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("BEGIN IMMEDIATE")
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path}: alarm book schema version {version} is newer than this "
                f"software's ({SCHEMA_VERSION})"
            )
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _new_alarm(change: ConditionChange, now: int, out_of_service: bool) -> Alarm:
    return Alarm(
        key=change.key,
        state=AlarmState.NORMAL,
        active=False,
        priority=change.priority,
        message=change.message,
        value=change.value,
        latched=change.latched,
        raised_ms=None,
        last_change_ms=change.at_ms,
        updated_ms=now,
        out_of_service=out_of_service,
    )


def _commit(
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
    _save(db, after)
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


def _late(
    db: sqlite3.Connection, before: Alarm | None, change: ConditionChange, now: int
) -> list[Transition]:
    """A late condition: journal only, the alarm's state unchanged; once per condition
    (a backlog sent again tells nothing twice)."""
    key = change.key
    seen = db.execute(
        "SELECT 1 FROM transition WHERE site = ? AND station = ? AND asset = ? AND rule = ? "
        "AND event = ? AND at_ms = ? AND since_ms = ?",
        (
            key.site,
            key.station,
            key.asset,
            key.rule,
            AlarmEvent.LATE.value,
            change.at_ms,
            change.late_since_ms,
        ),
    ).fetchone()
    if seen is not None:
        return []
    if before is None:
        first = replace(change, at_ms=change.late_since_ms or change.at_ms)
        before = _new_alarm(first, now, _asset_out_of_service(db, key))
    words = (change.message, change.value)
    return [
        _commit(
            db,
            before,
            before,
            AlarmEvent.LATE,
            change.at_ms,
            now,
            words=words,
            since_ms=change.late_since_ms,
        )
    ]


def _save(db: sqlite3.Connection, alarm: Alarm) -> None:
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


def _load(db: sqlite3.Connection, key: AlarmKey) -> Alarm | None:
    found = _load_where(
        db,
        "a.site = ? AND a.station = ? AND a.asset = ? AND a.rule = ?",
        (key.site, key.station, key.asset, key.rule),
    )
    return found[0] if found else None


def _load_asset(db: sqlite3.Connection, site: str, station: str, asset: str) -> list[Alarm]:
    return _load_where(db, "a.site = ? AND a.station = ? AND a.asset = ?", (site, station, asset))


def _load_where(db: sqlite3.Connection, where: str, args: Sequence[object]) -> list[Alarm]:
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


def _known(db: sqlite3.Connection, key: AlarmKey) -> Alarm:
    alarm = _load(db, key)
    if alarm is None:
        raise AlarmActionError(f"no alarm {key}")
    return alarm


def _in_view(db: sqlite3.Connection, key: AlarmKey, verb: str) -> Alarm:
    alarm = _known(db, key)
    if alarm.shelved_until_ms is not None:
        raise AlarmActionError(
            f"cannot {verb} {key}: it is shelved until {_iso(alarm.shelved_until_ms)} "
            f"(by {alarm.shelved_by}); unshelve it first"
        )
    if alarm.out_of_service:
        raise AlarmActionError(f"cannot {verb} {key}: {key.asset_path} is out of service")
    return alarm


def _asset_out_of_service(db: sqlite3.Connection, key: AlarmKey) -> bool:
    return _out_of_service_row(db, key.site, key.station, key.asset) is not None


def _out_of_service_row(
    db: sqlite3.Connection, site: str, station: str, asset: str
) -> tuple[int, str] | None:
    row = db.execute(
        "SELECT since_ms, user FROM out_of_service WHERE site = ? AND station = ? AND asset = ?",
        (site, station, asset),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))
