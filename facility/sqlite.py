"""One SQLite file of a store: opened in WAL mode, its schema migrated by numbered steps.

Every durable store (the gateway outbox, the alarm book, the notifier, the audit log, the
dead letters) keeps its state in one SQLite file and needs the same plumbing: WAL and a
busy timeout so a second process waits instead of failing, a schema brought forward
from whatever version is on disk, write transactions that commit all or nothing, close.

Migrations are a list of steps; step N takes a file from version N-1 to N, and
`PRAGMA user_version` records the step reached, in the same transaction as the steps
(a crash midway leaves the file at its old version). A file at a version newer than the
software knows is refused before anything is written to it: an older binary would
otherwise write rows the newer schema does not expect (a rollback without its backup).

Locking stays with the store: it knows whether it is shared between threads and how.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from facility.closing import ClosedOnExit

# A migration step: SQL statements run in order, or a function given the connection
# (for a step that has to look at the data first).
Step = Sequence[str] | Callable[[sqlite3.Connection], None]
Synchronous = Literal["FULL", "NORMAL", "OFF"]


class SchemaTooNew(RuntimeError):
    """The file was written by newer software: its schema version is one we do not know."""

    def __init__(self, path: Path, what: str, found: int, known: int) -> None:
        super().__init__(
            f"{path}: {what} schema version {found} is newer than this software's ({known})"
        )
        self.path = path
        self.found = found
        self.known = known


@dataclass(frozen=True)
class Schema:
    """A store's schema: what the store is called (in errors) and its migration steps."""

    what: str
    steps: tuple[Step, ...]

    @property
    def version(self) -> int:
        return len(self.steps)


class SqliteFile(ClosedOnExit):
    """One store's SQLite file. The constructor only remembers; `open()` connects, sets
    the pragmas and migrates. `pragmas` are set after WAL and before the migrations, in
    order (name, value)."""

    def __init__(
        self,
        path: Path,
        schema: Schema,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_s: float = 10.0,
        pragmas: Sequence[tuple[str, int | str]] = (),
        check_same_thread: bool = False,
        make_parent: bool = True,
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        self.synchronous = synchronous
        self.busy_timeout_s = busy_timeout_s
        self.pragmas = tuple(pragmas)
        self.check_same_thread = check_same_thread
        self.make_parent = make_parent
        self._db: sqlite3.Connection | None = None

    def open(self) -> sqlite3.Connection:
        """Connect and migrate; on any failure the connection is closed again."""
        if self.make_parent:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_s,
            isolation_level=None,
            check_same_thread=self.check_same_thread,
        )
        try:
            self._configure(db)
            _migrate(db, self.path, self.schema)
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def _configure(self, db: sqlite3.Connection) -> None:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"{self.path}: WAL mode unavailable (got {mode})")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        for name, value in self.pragmas:
            db.execute(f"PRAGMA {name}={value}")

    @property
    def connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"{self.schema.what} {self.path} is closed")
        return self._db

    @property
    def closed(self) -> bool:
        return self._db is None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock is taken up front, so
        the busy timeout applies instead of a deadlock error on upgrade). An exception
        rolls everything back and is raised as it was."""
        with write_transaction(self.connection) as db:
            yield db

    def close(self) -> None:
        """Close the file; twice is fine."""
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    def __enter__(self) -> Self:
        if self._db is None:
            self.open()
        return self


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT on a connection in autocommit mode; ROLLBACK on any
    exception (unless SQLite already rolled back, as it does on SQLITE_FULL), raising the
    first error, not one of the rollback."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _migrate(db: sqlite3.Connection, path: Path, schema: Schema) -> None:
    with write_transaction(db):
        found = schema_version(db)
        if found > schema.version:
            raise SchemaTooNew(path, schema.what, found, schema.version)
        if found == schema.version:
            return
        for step in schema.steps[found:]:
            if callable(step):
                step(db)
            else:
                for statement in step:
                    db.execute(statement)
        db.execute(f"PRAGMA user_version = {schema.version}")
