"""The alarm book: the ISA-18.2 lifecycle of every alarm, durable in SQLite.

The engine reports condition changes (a rule's condition became active or inactive for
one asset, in event time); operators acknowledge, reset, shelve and take assets out of
service. The book turns both into alarm states and `Transition`s, and stores each
transition in the same SQLite transaction as the state it leads to, so a crash never
leaves one without the other. Only committed transitions are returned, and each is
returned exactly once: a restarted book has the same states and tells nothing again.

The lifecycle itself (states, events, what moves them) is ingest/alarms/lifecycle.py,
pure; the rows are ingest/alarms/book_store.py; the `alarm_event` points are
ingest/alarms/alarm_events.py. This module joins them, and its names are the ones the
rest of the code imports.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from facility import clock
from facility.closing import ClosedOnExit
from facility.sqlite import SqliteFile
from ingest.alarms import book_store as store
from ingest.alarms.alarm_events import ALARM_EVENT, alarm_event_line
from ingest.alarms.book_store import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from ingest.alarms.lifecycle import (
    ACTIVE_STATES,
    EVENT_WORDS,
    Alarm,
    AlarmActionError,
    AlarmEvent,
    Transition,
    after_acknowledge,
    after_condition,
    after_reset,
    after_shelve,
    after_unshelve,
    duration_words,
    into_view,
    is_stale,
    iso_time,
    new_alarm,
    parse_asset_path,
    require,
    unshelved,
)
from ingest.alarms.model import AlarmKey, AlarmState, ConditionChange

__all__ = [
    "ACTIVE_STATES",
    "ALARM_EVENT",
    "DEFAULT_MAX_SHELVE_S",
    "EVENT_WORDS",
    "MIGRATIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Alarm",
    "AlarmActionError",
    "AlarmBook",
    "AlarmEvent",
    "Transition",
    "alarm_event_line",
    "wall_clock_ms",
]

DEFAULT_MAX_SHELVE_S = 8 * 3600.0


# The name the book's clock had before facility.clock, still imported by others' work.
wall_clock_ms = clock.now_ms


class AlarmBook(ClosedOnExit):
    """The alarm states and their history in one SQLite file. Thread-safe; several
    processes may share the file (every change is a read-modify-write inside one
    `BEGIN IMMEDIATE` transaction)."""

    def __init__(
        self,
        path: Path,
        now_ms: Callable[[], int] = clock.now_ms,
        max_shelve_s: float = DEFAULT_MAX_SHELVE_S,
    ) -> None:
        if not (math.isfinite(max_shelve_s) and max_shelve_s > 0):
            raise ValueError(f"max_shelve_s must be a positive number, not {max_shelve_s}")
        self.path = path
        self.now_ms = now_ms
        self.max_shelve_s = max_shelve_s
        self._lock = threading.Lock()
        # Few writes, and each is an alarm someone may be told of: worth an fsync each.
        self._file = SqliteFile(path, SCHEMA, synchronous="FULL")
        self._file.open()

    # -- condition changes ------------------------------------------------------------

    def apply(self, change: ConditionChange) -> list[Transition]:
        """The engine's news; [] if it changes nothing (a repeat, or stale)."""
        with self._write() as db:
            now = self.now_ms()
            before = store.load(db, change.key)
            if change.late_since_ms is not None:
                return _late(db, before, change, now)
            if is_stale(before, change):
                return []
            if before is None:
                before = new_alarm(change, now, store.asset_out_of_service(db, change.key))
            news, flip = after_condition(before, change, now)
            if flip is None:
                store.save(db, news)  # no transition, but the newest message and priority
                return []
            return [
                store.record(
                    db, before, flip.after, flip.event, change.at_ms, now, words=flip.words
                )
            ]

    # -- operator actions -------------------------------------------------------------

    def acknowledge(self, key: AlarmKey, user: str, comment: str = "") -> Transition:
        require(user, "a user")
        with self._write() as db:
            now = self.now_ms()
            alarm = _known(db, key)
            after = after_acknowledge(alarm, user, now)
            return store.record(db, alarm, after, AlarmEvent.ACKNOWLEDGED, now, now, user, comment)

    def reset(self, key: AlarmKey, user: str, comment: str = "") -> Transition:
        """Release a latched alarm whose condition has cleared and been acknowledged."""
        require(user, "a user")
        with self._write() as db:
            now = self.now_ms()
            alarm = _known(db, key)
            after = after_reset(alarm, now)
            return store.record(db, alarm, after, AlarmEvent.RESET, now, now, user, comment)

    def shelve(self, key: AlarmKey, user: str, reason: str, for_s: float) -> Transition:
        """Take the alarm out of view for `for_s` seconds (at most max_shelve_s, so a
        shelved alarm cannot be forgotten). Shelving a shelved alarm sets a new end."""
        require(user, "a user")
        require(reason, "a reason")
        if not (math.isfinite(for_s) and 0 < for_s <= self.max_shelve_s):
            raise AlarmActionError(
                f"an alarm can be shelved for more than 0 s and at most "
                f"{duration_words(self.max_shelve_s)}, not {for_s:g} s"
            )
        with self._write() as db:
            now = self.now_ms()
            alarm = _known(db, key)
            after = after_shelve(alarm, user, reason, now + math.ceil(for_s * 1000), now)
            return store.record(db, alarm, after, AlarmEvent.SHELVED, now, now, user, reason)

    def unshelve(self, key: AlarmKey, user: str, comment: str = "") -> Transition:
        require(user, "a user")
        with self._write() as db:
            now = self.now_ms()
            alarm = _known(db, key)
            after = after_unshelve(alarm, now)
            return store.record(db, alarm, after, AlarmEvent.UNSHELVED, now, now, user, comment)

    def expire_shelves(self) -> list[Transition]:
        """End every shelf that is due. A shelf lasts until this runs, so the service
        calls it every few seconds."""
        with self._write() as db:
            now = self.now_ms()
            due = store.load_where(db, "a.shelved_until_ms <= ?", (now,))
            due.sort(key=lambda a: (a.shelved_until_ms or 0, a.key))
            return [
                store.record(
                    db,
                    alarm,
                    into_view(unshelved(alarm, now)),
                    AlarmEvent.SHELVE_EXPIRED,
                    alarm.shelved_until_ms or now,  # the instant the shelf ended
                    now,
                )
                for alarm in due
            ]

    def set_out_of_service(self, asset_path: str, user: str, reason: str) -> list[Transition]:
        """Take every alarm of an asset out of view (maintenance, a known fault), until
        return_to_service; alarms first seen meanwhile are hidden too."""
        site, station, asset = parse_asset_path(asset_path)
        require(user, "a user")
        require(reason, "a reason")
        with self._write() as db:
            now = self.now_ms()
            row = store.out_of_service_row(db, site, station, asset)
            if row is not None:
                since_ms, by = row
                raise AlarmActionError(
                    f"{asset_path} is already out of service since {iso_time(since_ms)} (by {by})"
                )
            alarms = store.load_asset(db, site, station, asset)
            store.add_out_of_service(db, site, station, asset, now, user, reason)
            return [
                store.record(
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
        site, station, asset = parse_asset_path(asset_path)
        require(user, "a user")
        with self._write() as db:
            now = self.now_ms()
            if store.out_of_service_row(db, site, station, asset) is None:
                raise AlarmActionError(f"{asset_path} is not out of service")
            alarms = store.load_asset(db, site, station, asset)
            store.remove_out_of_service(db, site, station, asset)
            return [
                store.record(
                    db,
                    alarm,
                    into_view(replace(alarm, out_of_service=False, updated_ms=now)),
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
        site, station, asset = parse_asset_path(asset_path)
        with self._read() as db:
            return store.out_of_service_row(db, site, station, asset) is not None

    def get(self, key: AlarmKey) -> Alarm | None:
        with self._read() as db:
            return store.load(db, key)

    def active(self) -> list[Alarm]:
        """Every alarm not NORMAL (hidden ones too: see Alarm.hidden), the most urgent
        priority first, then the oldest raise."""
        with self._read() as db:
            alarms = store.load_where(db, "a.state != ?", (AlarmState.NORMAL.value,))
        return sorted(alarms, key=lambda a: (a.priority.rank, a.raised_ms or 0, a.key))

    def active_conditions(self) -> list[AlarmKey]:
        """The alarms whose condition is active (UNACKED or ACKED, hidden or not): what
        the engine must take as active after a restart (AlarmEngine.restore). Not the
        same as active(): a RTN_UNACKED or LATCHED alarm's condition has cleared."""
        with self._read() as db:
            return store.active_condition_keys(db)

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
        with self._read() as db:
            return store.transitions(db, key, since_ms, until_ms, limit)

    def close(self) -> None:
        """Close the file; twice is fine."""
        with self._lock:
            self._file.close()

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: everything in it is stored, or nothing (an exception, a
        refused action or a failed COMMIT rolls back)."""
        with self._lock, self._file.transaction() as db:
            yield db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._file.connection


def _late(
    db: sqlite3.Connection, before: Alarm | None, change: ConditionChange, now: int
) -> list[Transition]:
    """A late condition: journal only, the alarm's state unchanged; once per condition
    (a backlog sent again tells nothing twice)."""
    key = change.key
    if store.late_seen(db, key, change.at_ms, change.late_since_ms):
        return []
    if before is None:
        first = replace(change, at_ms=change.late_since_ms or change.at_ms)
        before = new_alarm(first, now, store.asset_out_of_service(db, key))
    words = (change.message, change.value)
    return [
        store.record(
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


def _known(db: sqlite3.Connection, key: AlarmKey) -> Alarm:
    alarm = store.load(db, key)
    if alarm is None:
        raise AlarmActionError(f"no alarm {key}")
    return alarm
