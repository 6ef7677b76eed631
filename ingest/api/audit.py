"""The audit log: who changed which alarm, when, how, and whether it was allowed.

Its own SQLite file, apart from the alarm book: the book says what state an alarm is in,
the audit log says who asked for what, including the requests the book refused (an
acknowledgement of an alarm someone else had just acknowledged is worth knowing when
two people claim the same call-out). Append-only: nothing here updates or deletes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from facility import clock
from facility.closing import ClosedOnExit
from facility.sqlite import Schema, SqliteFile


class AuditAction(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESET = "reset"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"
    OUT_OF_SERVICE = "out_of_service"
    IN_SERVICE = "in_service"
    REVOKE_ACCESS = "revoke_access"  # target: user/NAME
    RESTORE_ACCESS = "restore_access"
    READ = "read"  # only audited when refused: a role too low to read it (target: the path)


USER_TARGET = "user/"  # the audit target of an action on a user: user/NAME


class Outcome(StrEnum):
    DONE = "done"
    REFUSED = "refused"  # the alarm's state did not allow it (HTTP 409)
    FORBIDDEN = "forbidden"  # the user's role does not allow it (HTTP 403)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """`role` is the user's role, or `link` for a signed acknowledge link; `target` an
    alarm key or an asset path; `comment` the operator's words (comment or reason);
    `detail` what the service adds (a shelf's length, why it was refused)."""

    id: int
    at_ms: int
    user: str
    role: str
    action: AuditAction
    target: str
    comment: str
    outcome: Outcome
    detail: str


# Step 1 is the table audit logs had before they were versioned (user_version 0), hence
# IF NOT EXISTS: an unversioned file holding it is only stamped version 1.
_TABLE = (
    """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        user TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        comment TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_at ON audit (at_ms)",
)
SCHEMA = Schema("audit log", (_TABLE,))
_COLUMNS = "id, at_ms, user, role, action, target, comment, outcome, detail"


class AuditLog(ClosedOnExit):
    """Thread-safe; every entry is committed (and fsynced) before `record` returns."""

    def __init__(self, path: Path, now_ms: Callable[[], int] = clock.now_ms) -> None:
        self.path = path
        self.now_ms = now_ms
        self._lock = threading.Lock()
        self._file = SqliteFile(path, SCHEMA, synchronous="FULL")
        self._file.open()

    def record(
        self,
        user: str,
        role: str,
        action: AuditAction,
        target: str,
        comment: str,
        outcome: Outcome,
        detail: str = "",
    ) -> AuditEntry:
        at_ms = self.now_ms()
        row = (at_ms, user, role, action.value, target, comment, outcome.value, detail)
        with self._connection() as db:
            cursor = db.execute(
                f"INSERT INTO audit ({_COLUMNS.removeprefix('id, ')}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        assert cursor.lastrowid is not None
        return AuditEntry(
            cursor.lastrowid, at_ms, user, role, action, target, comment, outcome, detail
        )

    def entries(
        self,
        since_ms: int | None = None,
        until_ms: int | None = None,
        user: str | None = None,
        action: AuditAction | None = None,
        target: str | None = None,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        """The newest `limit` entries matching, oldest first. `target` matches an alarm
        key, or everything under an asset path, station or site."""
        clauses: list[str] = []
        args: list[object] = []
        for clause, value in (
            ("at_ms >= ?", since_ms),
            ("at_ms < ?", until_ms),
            ("user = ?", user),
            ("action = ?", action.value if action else None),
        ):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        if target is not None:
            clauses.append("(target = ? OR substr(target, 1, ?) = ?)")
            prefix = target.rstrip("/") + "/"
            args += [target, len(prefix), prefix]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connection() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM audit{where} ORDER BY id DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [_entry(row) for row in reversed(rows)]

    def revoked_users(self) -> dict[str, AuditEntry]:
        """Users whose access was revoked and not restored since, with the revocation:
        the newest of the two actions, done, decides."""
        actions = (AuditAction.REVOKE_ACCESS.value, AuditAction.RESTORE_ACCESS.value)
        with self._connection() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM audit WHERE action IN (?, ?) AND outcome = ? ORDER BY id",
                (*actions, Outcome.DONE.value),
            ).fetchall()
        found: dict[str, AuditEntry] = {}
        for entry in map(_entry, rows):
            name = entry.target.removeprefix(USER_TARGET)
            if entry.action is AuditAction.REVOKE_ACCESS:
                found[name] = entry
            else:
                found.pop(name, None)
        return found

    def last_revocations(self) -> dict[str, int]:
        """The time (ms) of each user's newest revocation, restored since or not: an
        acknowledge link sent before it stays refused (a lost phone keeps its mail)."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT target, MAX(at_ms) FROM audit WHERE action = ? AND outcome = ?"
                " GROUP BY target",
                (AuditAction.REVOKE_ACCESS.value, Outcome.DONE.value),
            ).fetchall()
        return {str(target).removeprefix(USER_TARGET): int(at) for target, at in rows}

    def close(self) -> None:
        with self._lock:
            self._file.close()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._file.connection


def _entry(row: tuple[object, ...]) -> AuditEntry:
    id_, at_ms, user, role, action, target, comment, outcome, detail = row
    return AuditEntry(
        id=int(str(id_)),
        at_ms=int(str(at_ms)),
        user=str(user),
        role=str(role),
        action=AuditAction(str(action)),
        target=str(target),
        comment=str(comment),
        outcome=Outcome(str(outcome)),
        detail=str(detail),
    )
