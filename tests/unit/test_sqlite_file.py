"""facility.sqlite: numbered migrations, the refusal of a newer file, transactions, close."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from facility.sqlite import Schema, SchemaTooNew, SqliteFile, schema_version

STEP_1 = ("CREATE TABLE reading (id INTEGER PRIMARY KEY, value REAL NOT NULL)",)
STEP_2 = ("ALTER TABLE reading ADD COLUMN quality TEXT NOT NULL DEFAULT 'g'",)


def version_of(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return schema_version(db)


def test_a_new_file_runs_every_step_in_order_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "store.db"
    with SqliteFile(path, Schema("test store", (STEP_1, STEP_2))) as opened:
        db = opened.connection
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        db.execute("INSERT INTO reading (value) VALUES (1.5)")
        assert db.execute("SELECT value, quality FROM reading").fetchall() == [(1.5, "g")]
    assert version_of(path) == 2


def test_an_older_file_runs_only_the_steps_it_lacks(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SqliteFile(path, Schema("test store", (STEP_1,))) as old:
        old.connection.execute("INSERT INTO reading (value) VALUES (7.0)")
    ran: list[int] = []

    def step_3(db: sqlite3.Connection) -> None:  # a step may be a function of the data
        ran.append(db.execute("SELECT COUNT(*) FROM reading").fetchone()[0])

    schema = Schema("test store", (STEP_1, STEP_2, step_3))
    with SqliteFile(path, schema) as new:  # STEP_1 again would fail: the table exists
        assert new.connection.execute("SELECT value, quality FROM reading").fetchall() == [
            (7.0, "g")
        ]
    with SqliteFile(path, schema):  # at its version: no step runs again
        pass
    assert ran == [1] and version_of(path) == 3


def test_a_failing_step_leaves_the_file_at_its_old_version(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SqliteFile(path, Schema("test store", (STEP_1,))).open().close()
    broken = Schema("test store", (STEP_1, STEP_2, ("CREATE TABLE reading (x)",)))
    opened = SqliteFile(path, broken)
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        opened.open()
    assert opened.closed
    assert version_of(path) == 1
    with sqlite3.connect(path) as db:  # step 2 was rolled back with step 3
        columns = [row[1] for row in db.execute("PRAGMA table_info(reading)")]
    assert columns == ["id", "value"]


def test_a_newer_file_is_refused_naming_the_file_and_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SqliteFile(path, Schema("test store", (STEP_1, STEP_2))).open().close()
    with pytest.raises(SchemaTooNew) as refused:
        SqliteFile(path, Schema("test store", (STEP_1,))).open()
    assert str(refused.value) == (
        f"{path}: test store schema version 2 is newer than this software's (1)"
    )
    assert (refused.value.found, refused.value.known) == (2, 1)
    assert version_of(path) == 2


def test_a_transaction_commits_all_or_nothing(tmp_path: Path) -> None:
    with SqliteFile(tmp_path / "store.db", Schema("test store", (STEP_1,))) as opened:
        with opened.transaction() as db:
            db.execute("INSERT INTO reading (value) VALUES (1)")
        with pytest.raises(ZeroDivisionError), opened.transaction() as db:
            db.execute("INSERT INTO reading (value) VALUES (2)")
            _ = 1 / 0
        assert not opened.connection.in_transaction
        rows = opened.connection.execute("SELECT value FROM reading").fetchall()
        assert rows == [(1.0,)]


def test_a_second_writer_waits_for_the_busy_timeout_then_fails(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    schema = Schema("test store", (STEP_1,))
    first = SqliteFile(path, schema)
    first.open()
    hasty = SqliteFile(path, schema, busy_timeout_s=0.2)
    hasty.open()
    with (
        first.transaction(),
        pytest.raises(sqlite3.OperationalError, match="locked"),
        hasty.transaction(),
    ):
        pass
    hasty.close()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with first.transaction():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with SqliteFile(path, schema, busy_timeout_s=5) as patient, patient.transaction() as db:
        db.execute("INSERT INTO reading (value) VALUES (3)")  # waited, did not fail
    assert time.monotonic() - started >= 0.25
    holder.join()
    first.close()


def test_a_closed_file_says_so_and_closing_twice_is_fine(tmp_path: Path) -> None:
    opened = SqliteFile(tmp_path / "store.db", Schema("test store", (STEP_1,)))
    with pytest.raises(RuntimeError, match="is closed"):  # not opened yet: no I/O before
        _ = opened.connection
    assert not (tmp_path / "store.db").exists()
    opened.open()
    opened.close()
    opened.close()
    with pytest.raises(RuntimeError, match=r"test store .*store\.db is closed"):
        opened.transaction().__enter__()
