"""Every store opens the files the software before the shared SQLite helper wrote, and
refuses a file newer than itself."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from facility.closing import ClosedOnExit
from facility.sqlite import SchemaTooNew, schema_version
from facility.wire import Reading
from gateway.outbox import Outbox, OutboxConfig
from ingest.alarms import book_store
from ingest.alarms.book import AlarmBook
from ingest.alarms.model import AlarmKey, AlarmState, Priority
from ingest.alarms.notify.store import DeliveryStatus, NotifyStore
from ingest.api.audit import AuditAction, AuditLog, Outcome
from ingest.deadletters import DeadLetters, LetterKind

NOW = 1_780_264_860_000

# The SQL main wrote, one file a store, copied on purpose: the stores' own schema
# definitions may change, the files on disk do not.
BEFORE = Path(__file__).parent / "stores_before_helper"


Row = str | tuple[str, tuple[object, ...]]  # an INSERT, with its parameters if any


def write_old_file(path: Path, store: str, *rows: Row) -> None:
    """A file as main left it (WAL, its schema and its version stamp if it set one),
    holding the rows."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript((BEFORE / f"{store}.sql").read_text())
    for row in rows:
        sql, args = (row, ()) if isinstance(row, str) else row
        db.execute(sql, args)
    db.close()


def version_of(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return schema_version(db)


# -- files main wrote open, keep their rows, and are stamped ------------------------------


def test_an_unversioned_outbox_keeps_its_chunks_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    rows = [json.dumps(Reading("pump_1", f"s{i}", NOW + i, i * 0.5).row()) for i in range(3)]
    body = "\n".join(rows)
    write_old_file(
        path,
        "outbox",
        (
            "INSERT INTO chunk (oldest_ts, newest_ts, count, bytes, body) VALUES (?, ?, 3, ?, ?)",
            (NOW, NOW + 2, len(body) + 64, body),
        ),
        "INSERT INTO meta (key, value) VALUES ('dropped_readings_age', 41)",
    )
    with Outbox(path, OutboxConfig(compress=False), clock=lambda: NOW) as outbox:
        stats = outbox.stats()
        assert (stats.chunks, stats.readings, stats.dropped_readings_age) == (1, 3, 41)
        lease = outbox.take("backfill", 100, NOW)
        assert lease is not None and lease.rows_json == rows
        assert outbox.ack(lease.lease_id) == 3
        outbox.put([Reading("pump_1", "s9", NOW + 9, 1.0)])
    assert version_of(path) == 1


def test_an_alarm_book_of_main_keeps_its_alarms(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    db = sqlite3.connect(path, isolation_level=None)
    for step in book_store.MIGRATIONS:  # unchanged since main: the same SQL
        for statement in step:
            db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    db.execute(
        "INSERT INTO alarm VALUES ('fengshou', 'xiba', 'pump_1', 'trip', "
        "'active_unacknowledged', 1, 'high', 'Pump 1 tripped', '7', 0, 5, 5, 6, "
        "NULL, NULL, NULL, NULL, NULL)"
    )
    db.close()
    key = AlarmKey("fengshou", "xiba", "pump_1", "trip")
    with AlarmBook(path, now_ms=lambda: NOW) as book:
        alarm = book.get(key)
        assert alarm is not None
        assert (alarm.state, alarm.priority, alarm.value) == (AlarmState.UNACKED, Priority.HIGH, 7)
        assert book.acknowledge(key, "wang").to_state is AlarmState.ACKED
    assert version_of(path) == 2


def test_a_notifier_store_of_main_keeps_its_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "notify.db"
    write_old_file(
        path,
        "notify",
        "INSERT INTO message (kind, person, title, body, notify_type, alarms, created_ms) "
        "VALUES ('group', 'li_wei', 'RAISED', 'body', 'failure', '[]', 5)",
        "INSERT INTO delivery (message_id, person, contact_id, contact_label, status, "
        "attempts, next_attempt_ms, last_error, created_ms, last_attempt_ms) "
        "VALUES (1, 'li_wei', 'c1', 'mailto://x', 'failed', 1, 15, 'refused', 5, 10)",
    )
    store = NotifyStore(path)
    [kept] = store.deliveries()
    assert (kept.status, kept.last_error, kept.last_attempt_ms) == (
        DeliveryStatus.FAILED,
        "refused",
        10,
    )
    store.mark_sent(kept.id, 20)
    assert store.counts()[DeliveryStatus.SENT] == 1
    store.close()
    assert version_of(path) == 2


def test_a_new_notifier_store_has_the_columns_main_made(tmp_path: Path) -> None:
    """Step 1 then step 2 builds the same tables main built in one go."""

    def tables(path: Path) -> list[tuple[str, list[str]]]:
        with sqlite3.connect(path) as db:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master ORDER BY name")]
            return [(n, [c[1] for c in db.execute(f"PRAGMA table_info({n})")]) for n in names]

    write_old_file(tmp_path / "main.db", "notify")
    NotifyStore(tmp_path / "new.db").close()
    assert tables(tmp_path / "new.db") == tables(tmp_path / "main.db")


def test_an_unversioned_audit_log_keeps_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    write_old_file(
        path,
        "audit",
        "INSERT INTO audit (at_ms, user, role, action, target, comment, outcome, detail) "
        "VALUES (5, 'wang', 'operator', 'acknowledge', 'fengshou/xiba/pump_1/trip', "
        "'on it', 'done', '')",
    )
    with AuditLog(path, now_ms=lambda: NOW) as audit:
        audit.record(
            "li", "operator", AuditAction.RESET, "fengshou/xiba/pump_1/trip", "", Outcome.DONE
        )
        old, new = audit.entries()
        assert (old.id, old.user, old.action, old.comment) == (
            1,
            "wang",
            AuditAction.ACKNOWLEDGE,
            "on it",
        )
        assert (new.id, new.at_ms) == (2, NOW)
    assert version_of(path) == 1


def test_a_dead_letter_store_of_main_keeps_its_letters(tmp_path: Path) -> None:
    path = tmp_path / "dead.db"
    write_old_file(
        path,
        "dead_letters",
        "INSERT INTO dead_letter (received_ms, site, station, kind, body, reason) "
        "VALUES (5, 'fengshou', 'xiba', 'line', 'x value=1', 'type conflict')",
    )
    dead = DeadLetters(path)
    assert dead.pending == 1
    dead.add_lines("fengshou", "xiba", [("y value=2", "type conflict")])
    [newer, older] = dead.latest()
    assert (older.kind, older.body, older.reason) == (LetterKind.LINE, "x value=1", "type conflict")
    assert newer.body == "y value=2"
    dead.close()
    assert version_of(path) == 2


# -- a file newer than the software is refused, and left as it was --------------------


STORES: dict[str, tuple[Callable[[Path], ClosedOnExit], int]] = {
    "outbox": (Outbox, 1),
    "alarm book": (AlarmBook, 2),
    "notifier store": (NotifyStore, 2),
    "audit log": (AuditLog, 1),
    "dead-letter store": (DeadLetters, 2),
}


@pytest.mark.parametrize("what", STORES)
def test_a_newer_file_is_refused(tmp_path: Path, what: str) -> None:
    open_store, known = STORES[what]
    path = tmp_path / "store.db"
    open_store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {known + 1}")
        before = db.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
    expected = f"{path}: {what} schema version {known + 1} is newer than this software's ({known})"
    with pytest.raises(SchemaTooNew, match=re.escape(expected)):
        open_store(path)
    assert version_of(path) == known + 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall() == before
