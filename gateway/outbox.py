"""The gateway's durable outbox: readings wait here until the ingest says they are stored.

Store and forward on the gateway's own disk, in one SQLite file in WAL mode.

* Chunks, not rows: each put() stores one chunk (a write-behind window of polls, or one
  device message) as one table row, so a reading costs a JSON encode and a share of one
  B-tree insert and one commit.
  A chunk's body is its rows as JSON arrays joined by newlines (the encoder escapes every
  control character, so a newline never occurs inside a row), zlib-compressed by default.
* End-to-end acknowledgement: take() leases chunks to the uplink, and only ack(lease) --
  called when the ingest reports the batch durably stored -- deletes them. Leases live in
  memory only: after a crash or restart everything unacked is pending again and is sent
  again, which is harmless because readings keep their acquisition timestamps.
* Bounds: at most `max_bytes` of chunks (bodies plus a fixed per-row overhead) and nothing
  older than `max_age_s`. When full, `drop_oldest` deletes the oldest chunks and
  `drop_newest` refuses the new one. Every dropped reading is counted in the meta table in
  the same transaction as the drop, so the count survives a crash and is reported.
  Chunks in flight are never dropped (their ack is probably on its way), so the byte
  bound can be exceeded by at most the bytes in flight.
* Lanes: "live" serves chunks whose newest reading is within `live_window_s` of now, so
  current values stay current after an outage; "backfill" drains everything oldest first.

Sync policy (PRAGMA synchronous, always in WAL mode), the durability/throughput trade-off:

    full    the WAL is fsynced at every commit: a put() that returned survives power loss.
    normal  fsync only at checkpoints: a put() that returned survives a process crash or
            kill -9; a power loss may undo the last commits but never corrupts the file.
    off     no fsync at all: fastest; survives kill -9, but a power loss or OS crash may
            lose recent commits and can corrupt the file.

One process owns an outbox file; the object serialises its own calls with a lock, so it may
be used from worker threads, but it does not coordinate with other processes.
"""

from __future__ import annotations

import errno
import json
import secrets
import sqlite3
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from facility.clock import now_ms
from facility.closing import ClosedOnExit
from facility.sqlite import Schema, SqliteFile, write_transaction
from facility.wire import Reading

Lane = Literal["live", "backfill"]
MiB = 1024 * 1024

# What one chunk row costs beyond its body (record header, four integers, its index
# entry); counted so that many tiny chunks cannot overrun max_bytes unnoticed.
CHUNK_OVERHEAD = 64
# The age bound costs a query, and a chunk a second late to expire harms nobody.
EXPIRE_EVERY_MS = 1000
# After a checkpoint SQLite truncates the WAL to this, so one burst does not leave a
# large -wal file behind on a small disk.
WAL_SIZE_LIMIT = 16 * MiB
ZLIB_LEVEL = 1  # level 1 compresses readings almost as well as 6 at half the cost

COUNTERS = (
    "dropped_readings_overflow",
    "dropped_readings_age",
    "dropped_chunks",
    "disk_full_errors",
)
_SYNC_PRAGMA: dict[str, Literal["FULL", "NORMAL", "OFF"]] = {
    "full": "FULL",
    "normal": "NORMAL",
    "off": "OFF",
}

# Step 1 is the schema outboxes had before they were versioned (user_version 0), hence
# IF NOT EXISTS: an unversioned file already holding it is only stamped version 1.
SCHEMA = Schema(
    "outbox",
    (
        (
            """CREATE TABLE IF NOT EXISTS chunk (
                id INTEGER PRIMARY KEY AUTOINCREMENT,  -- an acked id is never reused
                oldest_ts INTEGER NOT NULL,
                newest_ts INTEGER NOT NULL,
                count INTEGER NOT NULL,
                bytes INTEGER NOT NULL,
                body BLOB NOT NULL
            )""",
            # Serves the live lane and the age bound (range on newest_ts) and, being
            # covering, the totals at open and the stats without reading the bodies.
            "CREATE INDEX IF NOT EXISTS chunk_by_newest"
            " ON chunk (newest_ts, oldest_ts, count, bytes)",
            "CREATE TABLE IF NOT EXISTS meta"
            " (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        ),
    ),
)

_INSERT = "INSERT INTO chunk (oldest_ts, newest_ts, count, bytes, body) VALUES (?, ?, ?, ?, ?)"
# INDEXED BY / NOT INDEXED pin the plans: without statistics the planner would scan the
# whole table for the live lane.
_LIVE = (
    "SELECT id, oldest_ts, newest_ts, count FROM chunk INDEXED BY chunk_by_newest"
    " WHERE newest_ts >= ? ORDER BY id"
)
_BACKFILL = "SELECT id, oldest_ts, newest_ts, count FROM chunk NOT INDEXED ORDER BY id"
_AGED = "SELECT id, count, bytes FROM chunk WHERE newest_ts < ?"
_OLDEST = "SELECT id, count, bytes FROM chunk NOT INDEXED ORDER BY id"
# A JSON list as the one parameter: no limit on the number of ids, one statement.
_BODIES = "SELECT body FROM chunk WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id"
_DELETE = "DELETE FROM chunk WHERE id IN (SELECT value FROM json_each(?)) RETURNING count, bytes"
_SAVE_COUNTER = (
    "INSERT INTO meta (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


@dataclass(frozen=True)
class OutboxConfig:
    max_bytes: int = 256 * MiB
    max_age_s: float = 7 * 24 * 3600.0
    overflow: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    sync: Literal["full", "normal", "off"] = "normal"
    live_window_s: float = 10.0
    compress: bool = True  # zlib: ~5x more backlog in the same bytes, for ~0.2 us a reading

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_age_s <= 0 or self.live_window_s < 0:
            raise ValueError(f"outbox bounds must be positive: {self}")
        if self.overflow not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"unknown overflow policy {self.overflow!r}")
        if self.sync not in _SYNC_PRAGMA:
            raise ValueError(f"unknown sync policy {self.sync!r}")


class OutboxDiskFull(OSError):
    """The disk under the outbox is full (SQLITE_FULL): the chunk was not stored.

    The outbox stays usable: once space is freed (acks, cleanup) puts work again."""

    def __init__(self, path: Path, doing: str, readings: int) -> None:
        lost = f"; {readings} readings were not stored" if readings else ""
        super().__init__(
            errno.ENOSPC,
            f"outbox {path}: disk full (SQLITE_FULL) while {doing}"
            f"{lost}. Free space on that volume or lower the outbox's max_bytes",
        )
        self.readings = readings


@dataclass
class Lease:
    lease_id: int
    chunk_ids: tuple[int, ...]
    rows_json: list[str]
    count: int
    oldest_ts_ms: int
    newest_ts_ms: int
    lane: Lane


@dataclass
class OutboxStats:
    chunks: int
    readings: int
    bytes: int
    oldest_ts_ms: int | None
    newest_ts_ms: int | None
    in_flight_readings: int
    dropped_readings_overflow: int
    dropped_readings_age: int
    dropped_chunks: int
    disk_full_errors: int


_Picked = tuple[int, int, int, int]  # chunk id, oldest_ts, newest_ts, count


@dataclass(frozen=True, slots=True)
class _Chunk:
    oldest_ts: int
    newest_ts: int
    count: int
    size: int  # what it counts against max_bytes
    body: bytes | str


@dataclass
class _Change:
    """What one transaction did, applied to the in-memory totals only once it committed."""

    chunks: int = 0
    readings: int = 0
    bytes: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    stored: list[tuple[int, int, int]] = field(default_factory=list)  # id, newest_ts, count

    def bump(self, counter: str, by: int) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + by


def _not_json(value: object) -> Any:
    raise TypeError(f"a reading's value of type {type(value).__name__} is not JSON")


def _row_encoder() -> Callable[[list[Any]], str]:
    """JSON of one row, as json.dumps(row, separators=(",", ":")) but refusing NaN (the
    ingest would reject the whole batch, forever). The C encoder is built once: the public
    API builds one per call, which doubles the cost of a row."""
    try:
        from _json import encode_basestring_ascii, make_encoder
    except ImportError:  # not CPython: the public, slower path
        return json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    encoder = make_encoder(
        None, _not_json, encode_basestring_ascii, None, ":", ",", False, False, False
    )
    return lambda row: "".join(encoder(row, 0))


_encode_row = _row_encoder()


def _encode_chunk(readings: Sequence[Reading], compress: bool) -> _Chunk:
    text = "\n".join([_encode_row(r.row()) for r in readings])  # ASCII: len is bytes
    body: bytes | str = zlib.compress(text.encode("ascii"), ZLIB_LEVEL) if compress else text
    stamps = [r.ts_ms for r in readings]
    return _Chunk(min(stamps), max(stamps), len(readings), len(body) + CHUNK_OVERHEAD, body)


def _decode_rows(body: bytes | str) -> list[str]:
    text = zlib.decompress(body).decode("ascii") if isinstance(body, bytes) else body
    return text.split("\n")


def _is_disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_FULL


class Outbox(ClosedOnExit):
    def __init__(
        self,
        path: Path,
        config: OutboxConfig = OutboxConfig(),
        *,
        clock: Callable[[], int] = now_ms,
        max_pages: int | None = None,
    ) -> None:
        """Open or create the outbox. `clock` gives now in ms for the age bound; `max_pages`
        caps the file (PRAGMA max_page_count), for tests that need SQLITE_FULL."""
        self.path = Path(path)
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._leases: dict[int, dict[int, int]] = {}  # lease id -> {chunk id: readings}
        self._leased: set[int] = set()
        self._in_flight = 0
        # Random start: an ack meant for a previous process's lease cannot hit one of ours.
        self._next_lease = secrets.randbits(40) + 1
        self._last_expiry_ms: int | None = None
        self._pending_disk_full = 0  # counted when the disk was too full to write it
        # Chunks this process stored and nobody acked yet: chunk id -> (newest_ts, count),
        # for live_pending() without a query (overload control asks often).
        self._recent: dict[int, tuple[int, int]] = {}
        pragmas: list[tuple[str, int | str]] = [
            ("journal_size_limit", WAL_SIZE_LIMIT),
            ("temp_store", "MEMORY"),  # the live lane sorts a few ids
        ]
        if max_pages is not None:
            pragmas.append(("max_page_count", int(max_pages)))
        self._file = SqliteFile(
            self.path,
            SCHEMA,
            synchronous=_SYNC_PRAGMA[config.sync],
            busy_timeout_s=5.0,  # sqlite3's default, as before: one process owns the file
            pragmas=pragmas,
            make_parent=False,
        )
        try:
            # The raw connection: a put is a hot path, and the lock below guards it.
            self._db = self._file.open()
        except sqlite3.Error as exc:
            if _is_disk_full(exc):
                raise OutboxDiskFull(self.path, "creating the outbox", 0) from exc
            raise
        self._chunks, self._readings, self._bytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(count), 0), COALESCE(SUM(bytes), 0) FROM chunk"
        ).fetchone()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._counters.update(self._db.execute("SELECT key, value FROM meta").fetchall())

    # -- storing ---------------------------------------------------------------------------

    def put(self, readings: Sequence[Reading]) -> None:
        """Store the readings as one chunk, in one transaction, then enforce the bounds.

        Raises OutboxDiskFull (nothing stored, outbox still usable) and ValueError or
        TypeError for a value JSON cannot carry (NaN, infinities, objects)."""
        if not readings:
            return
        try:
            chunk = _encode_chunk(readings, self.config.compress)  # outside the lock: CPU only
        except ValueError as exc:
            raise ValueError(
                f"outbox: a reading's value is not valid JSON ({exc}); a value "
                "that cannot be read goes as None with quality 'b'"
            ) from exc
        with self._lock:
            now_ms = self._clock()
            doing = f"storing a chunk of {chunk.count} readings"
            self._commit(lambda: self._store(chunk, now_ms), doing, chunk.count)

    def _store(self, chunk: _Chunk, now_ms: int) -> _Change:
        change = _Change()
        # abs(): a clock stepped back (NTP after boot) must not pause the age bound.
        if self._last_expiry_ms is None or abs(now_ms - self._last_expiry_ms) >= EXPIRE_EVERY_MS:
            self._last_expiry_ms = now_ms
            self._drop_aged(now_ms, change)
        limit = self.config.max_bytes
        if (
            self.config.overflow == "drop_newest"
            and self._bytes + change.bytes + chunk.size > limit
        ):
            change.bump("dropped_readings_overflow", chunk.count)
            change.bump("dropped_chunks", 1)
            return change
        cursor = self._db.execute(
            _INSERT, (chunk.oldest_ts, chunk.newest_ts, chunk.count, chunk.size, chunk.body)
        )
        if cursor.lastrowid is not None:
            change.stored.append((cursor.lastrowid, chunk.newest_ts, chunk.count))
        change.chunks += 1
        change.readings += chunk.count
        change.bytes += chunk.size
        if self._bytes + change.bytes > limit:
            self._drop_oldest(self._bytes + change.bytes - limit, change)
        return change

    def _drop_aged(self, now_ms: int, change: _Change) -> None:
        cutoff = now_ms - int(self.config.max_age_s * 1000)
        aged = self._db.execute(_AGED, (cutoff,)).fetchall()
        victims = [cid for cid, _, _ in aged if cid not in self._leased]
        if victims:
            self._drop(victims, change, "dropped_readings_age")

    def _drop_oldest(self, excess: int, change: _Change) -> None:
        victims: list[int] = []
        freed = 0
        cursor = self._db.execute(_OLDEST)
        try:
            for cid, _, size in cursor:
                if freed >= excess:
                    break
                if cid not in self._leased:
                    victims.append(cid)
                    freed += size
        finally:
            cursor.close()  # an unfinished SELECT would pin the WAL against checkpoints
        if victims:
            self._drop(victims, change, "dropped_readings_overflow")

    def _drop(self, chunk_ids: list[int], change: _Change, counter: str) -> None:
        chunks, readings, size = self._delete(chunk_ids)
        change.chunks -= chunks
        change.readings -= readings
        change.bytes -= size
        change.bump(counter, readings)
        change.bump("dropped_chunks", chunks)

    def _delete(self, chunk_ids: list[int] | tuple[int, ...]) -> tuple[int, int, int]:
        for cid in chunk_ids:
            self._recent.pop(cid, None)  # a rolled-back delete only makes this undercount
        gone = self._db.execute(_DELETE, (json.dumps(chunk_ids),)).fetchall()
        return len(gone), sum(row[0] for row in gone), sum(row[1] for row in gone)

    # -- transactions ----------------------------------------------------------------------

    def _commit(self, work: Callable[[], _Change], doing: str, readings: int) -> _Change:
        """Run `work` in one write transaction; totals change only once it has committed."""
        try:
            with write_transaction(self._db):
                change = work()
                self._save_counters(change)
        except sqlite3.Error as exc:
            if _is_disk_full(exc):
                self._pending_disk_full += 1
                raise OutboxDiskFull(self.path, doing, readings) from exc
            raise
        self._apply(change)
        return change

    def _save_counters(self, change: _Change) -> None:
        # A disk-full error could not be recorded when it happened; the next transaction
        # that can write records it.
        if self._pending_disk_full:
            change.bump("disk_full_errors", self._pending_disk_full)
        for name, delta in change.counters.items():
            self._db.execute(_SAVE_COUNTER, (name, self._counters[name] + delta))

    def _apply(self, change: _Change) -> None:
        self._chunks += change.chunks
        self._readings += change.readings
        self._bytes += change.bytes
        for cid, newest, count in change.stored:
            self._recent[cid] = (newest, count)
        if change.stored:  # oldest first: forget what left the live window (bounded memory)
            cutoff = self._clock() - int(self.config.live_window_s * 1000)
            while self._recent:
                first = next(iter(self._recent))
                if self._recent[first][0] >= cutoff:
                    break
                del self._recent[first]
        for name, delta in change.counters.items():
            self._counters[name] += delta
        if "disk_full_errors" in change.counters:
            self._pending_disk_full = 0

    def live_pending(self, now_ms: int) -> int:
        """Readings of the live lane not yet leased (of chunks this process stored): what
        the uplink still has to send to be current. Forgets chunks past the live window."""
        cutoff = now_ms - int(self.config.live_window_s * 1000)
        with self._lock:
            stale = [cid for cid, (newest, _) in self._recent.items() if newest < cutoff]
            for cid in stale:
                del self._recent[cid]
            return sum(count for cid, (_, count) in self._recent.items() if cid not in self._leased)

    # -- forwarding ------------------------------------------------------------------------

    def take(self, lane: Lane, max_readings: int, now_ms: int) -> Lease | None:
        """Lease pending chunks of one lane, oldest first, up to max_readings (but always at
        least one chunk). live: chunks with a reading in the last live_window_s; backfill:
        any chunk. A leased chunk is not offered again until released."""
        with self._lock:
            picked = self._pick(lane, max_readings, now_ms)
            return self._lease(lane, picked) if picked else None

    def _pick(self, lane: Lane, max_readings: int, now_ms: int) -> list[_Picked]:
        if lane == "live":
            cutoff = now_ms - int(self.config.live_window_s * 1000)
            cursor = self._db.execute(_LIVE, (cutoff,))
        else:
            cursor = self._db.execute(_BACKFILL)
        picked: list[_Picked] = []
        total = 0
        try:
            for cid, oldest, newest, count in cursor:
                if cid in self._leased:
                    continue
                if picked and total + count > max_readings:
                    break
                picked.append((cid, oldest, newest, count))
                total += count
                if total >= max_readings:
                    break
        finally:
            cursor.close()  # an unfinished SELECT would pin the WAL against checkpoints
        return picked

    def _lease(self, lane: Lane, picked: list[_Picked]) -> Lease:
        ids = tuple(cid for cid, _, _, _ in picked)
        rows_json: list[str] = []
        for (body,) in self._db.execute(_BODIES, (json.dumps(ids),)):
            rows_json.extend(_decode_rows(body))
        lease_id = self._next_lease
        self._next_lease += 1
        self._leases[lease_id] = {cid: count for cid, _, _, count in picked}
        self._leased.update(ids)
        count = sum(p[3] for p in picked)
        self._in_flight += count
        return Lease(
            lease_id,
            ids,
            rows_json,
            count,
            min(p[1] for p in picked),
            max(p[2] for p in picked),
            lane,
        )

    def ack(self, lease_id: int) -> int:
        """The ingest stored the lease's readings: delete its chunks, in one transaction.
        Returns the readings deleted; 0 for an unknown lease (a late duplicate ack)."""
        with self._lock:
            chunks = self._leases.get(lease_id)
            if chunks is None:
                return 0
            ids = tuple(chunks)
            change = self._commit(lambda: self._acked(ids), "deleting acked readings", 0)
            self._forget(lease_id)
            return -change.readings

    def _acked(self, chunk_ids: tuple[int, ...]) -> _Change:
        chunks, readings, size = self._delete(chunk_ids)
        return _Change(chunks=-chunks, readings=-readings, bytes=-size)

    def release(self, lease_id: int) -> None:
        """The lease was not delivered (timed out, link lost): its chunks are pending again."""
        with self._lock:
            self._forget(lease_id)

    def release_all(self) -> None:
        with self._lock:
            for lease_id in list(self._leases):
                self._forget(lease_id)

    def _forget(self, lease_id: int) -> None:
        chunks = self._leases.pop(lease_id, None)
        if chunks is not None:
            self._leased.difference_update(chunks)
            self._in_flight -= sum(chunks.values())

    # -- reporting -------------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        with self._lock:
            oldest = self._db.execute("SELECT MIN(oldest_ts) FROM chunk").fetchone()[0]
            newest = self._db.execute("SELECT MAX(newest_ts) FROM chunk").fetchone()[0]
            counters = dict(self._counters)
            counters["disk_full_errors"] += self._pending_disk_full
            return OutboxStats(
                chunks=self._chunks,
                readings=self._readings,
                bytes=self._bytes,
                oldest_ts_ms=oldest,
                newest_ts_ms=newest,
                in_flight_readings=self._in_flight,
                **counters,
            )

    def close(self) -> None:
        with self._lock:
            try:
                if self._pending_disk_full:
                    self._commit(_Change, "recording a disk-full error", 0)
            except (OSError, sqlite3.Error):
                pass  # still full: this count dies with the process; closing matters more
            finally:
                self._file.close()
