"""The gateway outbox on real SQLite files: lanes, leases, bounds, counters, disk full."""

from __future__ import annotations

import json
import random
import sqlite3
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from facility.wire import Reading
from gateway.outbox import CHUNK_OVERHEAD, Lease, Outbox, OutboxConfig, OutboxDiskFull

NOW = 1_780_264_860_000
HOUR_MS = 3_600_000


class Clock:
    def __init__(self, now_ms: int = NOW) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def readings(n: int, ts_ms: int = NOW, tag: int = 0) -> list[Reading]:
    """n readings whose value is `tag` (fixed width, so every chunk has the same size)."""
    return [Reading("pump_1", f"s{i:03d}", ts_ms + i, tag) for i in range(n)]


def tags(lease: Lease) -> list[int]:
    """The tag of each chunk in the lease, in order (the readings of a chunk share it)."""
    values = [json.loads(row)[4] for row in lease.rows_json]
    return list(dict.fromkeys(values))


def must_take(outbox: Outbox, lane: str = "backfill", limit: int = 10**6) -> Lease:
    lease = outbox.take("live" if lane == "live" else "backfill", limit, NOW)
    assert lease is not None
    return lease


def plain(**kwargs: object) -> OutboxConfig:
    """Uncompressed, so chunk sizes are predictable."""
    return OutboxConfig(compress=False, **kwargs)  # type: ignore[arg-type]


def chunk_size(n: int) -> int:
    """What a plain chunk of n readings counts against max_bytes: rows joined by newlines."""
    rows = [json.dumps(r.row(), separators=(",", ":")) for r in readings(n)]
    return len("\n".join(rows)) + CHUNK_OVERHEAD


# -- put, take, ack, release --------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_keeps_rows_exactly(tmp_path: Path, compress: bool) -> None:
    batch = [
        Reading("pump_1", "flow_m3h", NOW, 301.25),
        Reading("pump_1", "running", NOW + 1, True),
        Reading("gw", "link", NOW + 2, "up", "u", "s"),
        Reading("pump_1", "pressure", NOW + 3, None, "b"),
        Reading("水泵", 'note\n"x"', NOW + 4, "温度\u2028", "g", "h"),
    ]
    with Outbox(tmp_path / "o.db", OutboxConfig(compress=compress)) as outbox:
        outbox.put(batch)
        lease = must_take(outbox)
    assert lease.rows_json == [json.dumps(r.row(), separators=(",", ":")) for r in batch]
    assert [json.loads(row) for row in lease.rows_json] == [r.row() for r in batch]
    assert (lease.count, lease.oldest_ts_ms, lease.newest_ts_ms) == (5, NOW, NOW + 4)
    assert lease.lane == "backfill" and len(lease.chunk_ids) == 1


def test_ack_deletes_and_counts(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.put(readings(3, tag=1))
        outbox.put(readings(4, tag=2))
        lease = must_take(outbox)
        assert outbox.stats().in_flight_readings == 7
        assert outbox.ack(lease.lease_id) == 7
        stats = outbox.stats()
        assert (stats.chunks, stats.readings, stats.bytes, stats.in_flight_readings) == (0, 0, 0, 0)
        assert (stats.oldest_ts_ms, stats.newest_ts_ms) == (None, None)
        assert outbox.take("backfill", 100, NOW) is None


def test_unknown_or_duplicate_ack_is_zero(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.put(readings(3))
        lease = must_take(outbox)
        assert outbox.ack(lease.lease_id + 1000) == 0
        assert outbox.ack(lease.lease_id) == 3
        assert outbox.ack(lease.lease_id) == 0
        outbox.release(lease.lease_id)  # releasing an acked lease is harmless too


def test_take_limits_readings_but_always_gives_one_chunk(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        for tag in range(4):
            outbox.put(readings(10, tag=tag))
        big = must_take(outbox, limit=5)  # one chunk even though it exceeds the limit
        assert (tags(big), big.count) == ([0], 10)
        two = must_take(outbox, limit=25)  # stops before exceeding the limit
        assert (tags(two), two.count) == ([1, 2], 20)
        last = must_take(outbox, limit=10)
        assert tags(last) == [3]
        assert outbox.take("backfill", 100, NOW) is None


def test_release_and_release_all_make_chunks_pending_again(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        for tag in range(3):
            outbox.put(readings(2, tag=tag))
        first = must_take(outbox, limit=2)
        second = must_take(outbox, limit=2)
        outbox.release(first.lease_id)
        again = must_take(outbox, limit=2)
        assert tags(again) == tags(first) == [0]
        outbox.release_all()
        assert outbox.stats().in_flight_readings == 0
        everything = must_take(outbox)
        assert tags(everything) == [0, 1, 2]
        assert outbox.ack(second.lease_id) == 0  # released: its late ack is ignored


# -- lanes --------------------------------------------------------------------------------


def test_live_lane_gets_fresh_chunks_and_backfill_drains_oldest_first(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", OutboxConfig(live_window_s=10)) as outbox:
        for tag in range(5):  # an hour-old backlog
            outbox.put(readings(10, NOW - HOUR_MS + tag * 1000, tag=tag))
        outbox.put(readings(10, NOW - 10_000, tag=5))  # newest reading exactly at the edge
        outbox.put(readings(10, NOW - 1000, tag=6))

        live = must_take(outbox, "live")
        assert (live.lane, tags(live)) == ("live", [5, 6])
        assert outbox.take("live", 100, NOW) is None  # fresh chunks are all in flight
        assert tags(must_take(outbox, limit=20)) == [0, 1]
        assert tags(must_take(outbox, limit=20)) == [2, 3]
        assert tags(must_take(outbox)) == [4]  # never the live lane's leased chunks
        assert outbox.take("backfill", 100, NOW) is None

        outbox.release(live.lease_id)
        assert tags(must_take(outbox)) == [5, 6]


def test_live_window_moves_with_now(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", OutboxConfig(live_window_s=10)) as outbox:
        outbox.put(readings(10, NOW))
        assert outbox.take("live", 100, NOW + 20_000) is None
        lease = outbox.take("live", 100, NOW + 5_000)
        assert lease is not None and lease.count == 10


def test_live_pending_counts_fresh_unleased_readings_only(tmp_path: Path) -> None:
    """What overload control asks: live readings the uplink has still to send."""
    clock = Clock()
    with Outbox(tmp_path / "o.db", OutboxConfig(live_window_s=10), clock=clock) as outbox:
        outbox.put(readings(7, NOW - HOUR_MS))  # a backlog is not live
        outbox.put(readings(10, NOW - 1000, tag=1))
        outbox.put(readings(20, NOW - 500, tag=2))
        assert outbox.live_pending(NOW) == 30
        lease = must_take(outbox, "live", limit=10)
        assert tags(lease) == [1] and outbox.live_pending(NOW) == 20
        outbox.release(lease.lease_id)
        assert outbox.live_pending(NOW) == 30  # released: to be sent again
        lease = must_take(outbox, "live", limit=10)
        outbox.ack(lease.lease_id)
        assert outbox.live_pending(NOW) == 20  # acked: gone
        assert outbox.live_pending(NOW + 20_000) == 0  # out of the live window
        clock.now_ms = NOW + 60_000
        outbox.put(readings(5, NOW + 60_000, tag=3))
        assert outbox.live_pending(NOW + 60_000) == 5


# -- bounds -------------------------------------------------------------------------------


def test_byte_limit_drops_oldest_and_counts(tmp_path: Path) -> None:
    size = chunk_size(10)
    config = plain(max_bytes=3 * size + size // 2)
    with Outbox(tmp_path / "o.db", config) as outbox:
        for tag in range(5):
            outbox.put(readings(10, tag=tag))
        stats = outbox.stats()
        assert (stats.chunks, stats.readings, stats.bytes) == (3, 30, 3 * size)
        assert (stats.dropped_readings_overflow, stats.dropped_chunks) == (20, 2)
        assert stats.dropped_readings_age == 0
        assert tags(must_take(outbox)) == [2, 3, 4]


def test_byte_limit_never_drops_chunks_in_flight(tmp_path: Path) -> None:
    size = chunk_size(10)
    with Outbox(tmp_path / "o.db", plain(max_bytes=3 * size)) as outbox:
        for tag in range(3):
            outbox.put(readings(10, tag=tag))
        in_flight = must_take(outbox, limit=10)
        outbox.put(readings(10, tag=3))
        assert tags(must_take(outbox)) == [2, 3]  # chunk 1 went, chunk 0 is in flight
        assert outbox.ack(in_flight.lease_id) == 10
        assert outbox.stats().dropped_readings_overflow == 10


def test_drop_newest_refuses_new_chunks_and_counts(tmp_path: Path) -> None:
    size = chunk_size(10)
    config = plain(max_bytes=3 * size + size // 2, overflow="drop_newest")
    with Outbox(tmp_path / "o.db", config) as outbox:
        for tag in range(5):
            outbox.put(readings(10, tag=tag))
        stats = outbox.stats()
        assert (stats.chunks, stats.dropped_readings_overflow, stats.dropped_chunks) == (3, 20, 2)
        lease = must_take(outbox)
        assert tags(lease) == [0, 1, 2]
        outbox.ack(lease.lease_id)
        outbox.put(readings(10, tag=9))  # room again
        assert tags(must_take(outbox)) == [9]


def test_age_limit_drops_old_chunks_and_counts(tmp_path: Path) -> None:
    clock = Clock(NOW - 2 * HOUR_MS)
    with Outbox(tmp_path / "o.db", OutboxConfig(max_age_s=3600), clock=clock) as outbox:
        outbox.put(readings(10, NOW - 2 * HOUR_MS, tag=0))  # fresh when stored
        outbox.put(readings(10, NOW - HOUR_MS + 60_000, tag=1))
        clock.now_ms = NOW
        outbox.put(readings(10, NOW, tag=2))  # the next put applies the bound
        stats = outbox.stats()
        assert (stats.dropped_readings_age, stats.dropped_chunks, stats.readings) == (10, 1, 20)
        assert stats.dropped_readings_overflow == 0
        assert stats.oldest_ts_ms == NOW - HOUR_MS + 60_000
        assert tags(must_take(outbox)) == [1, 2]


def test_age_limit_never_drops_chunks_in_flight(tmp_path: Path) -> None:
    clock = Clock(NOW - 2 * HOUR_MS)
    with Outbox(tmp_path / "o.db", OutboxConfig(max_age_s=3600), clock=clock) as outbox:
        outbox.put(readings(10, NOW - 2 * HOUR_MS, tag=0))
        in_flight = must_take(outbox)
        clock.now_ms = NOW
        outbox.put(readings(10, NOW, tag=1))
        assert outbox.ack(in_flight.lease_id) == 10  # delivered, not dropped
        assert outbox.stats().dropped_readings_age == 0


def test_counters_survive_reopen(tmp_path: Path) -> None:
    size = chunk_size(10)
    clock = Clock()
    config = plain(max_bytes=2 * size, max_age_s=3600)
    with Outbox(tmp_path / "o.db", config, clock=clock) as outbox:
        for tag in range(4):
            outbox.put(readings(10, NOW - 2 * HOUR_MS, tag=tag))  # all too old already
        for tag in range(4):
            clock.now_ms += 1000
            outbox.put(readings(10, NOW, tag=tag))
        before = outbox.stats()
    assert before.dropped_readings_age > 0 and before.dropped_readings_overflow > 0
    with Outbox(tmp_path / "o.db", config, clock=clock) as outbox:
        assert outbox.stats() == before


def test_reopen_makes_unacked_leases_pending_and_never_reuses_ids(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        for tag in range(4):
            outbox.put(readings(5, tag=tag))
        acked = must_take(outbox, limit=5)
        outbox.ack(acked.lease_id)
        must_take(outbox, limit=5)
        must_take(outbox, "live")
        assert outbox.take("backfill", 100, NOW) is None
    with Outbox(tmp_path / "o.db") as outbox:
        stats = outbox.stats()
        assert (stats.readings, stats.in_flight_readings) == (15, 0)
        assert tags(must_take(outbox)) == [1, 2, 3]
        outbox.put(readings(5, tag=4))
        newest = must_take(outbox)
        assert newest.chunk_ids[0] > 4


def test_file_is_wal_with_the_chosen_sync(tmp_path: Path) -> None:
    for sync, level in (("full", 2), ("normal", 1), ("off", 0)):
        path = tmp_path / f"{sync}.db"
        with Outbox(path, OutboxConfig(sync=sync)) as outbox:  # type: ignore[arg-type]
            outbox.put(readings(1))
            assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == level
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()


# -- bad input and a full disk ------------------------------------------------------------


def test_values_json_cannot_carry_are_refused_clearly(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        with pytest.raises(ValueError, match="quality 'b'"):
            outbox.put([Reading("p", "s", NOW, float("nan"))])
        outbox.put([])  # nothing to store: no chunk
        assert outbox.stats().chunks == 0


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError):
        OutboxConfig(max_bytes=0)
    with pytest.raises(ValueError):
        OutboxConfig(sync="fast")  # type: ignore[arg-type]


def test_disk_full_raises_clearly_and_the_outbox_recovers(tmp_path: Path) -> None:
    rnd = random.Random(1)

    def noise(tag: int) -> list[Reading]:  # incompressible, so pages fill fast
        texts = ["".join(rnd.choices(string.ascii_letters, k=300)) for _ in range(10)]
        return [Reading("p", "s", NOW, text) for text in texts] + readings(1, tag=tag)

    path = tmp_path / "o.db"
    with Outbox(path, max_pages=24) as outbox:
        stored = 0
        with pytest.raises(OutboxDiskFull) as caught:
            for stored in range(1000):  # the number stored is read after the raise
                outbox.put(noise(stored))
        assert "disk full" in str(caught.value) and "11 readings were not stored" in str(
            caught.value
        )
        assert caught.value.readings == 11
        stats = outbox.stats()
        assert (stats.chunks, stats.disk_full_errors) == (stored, 1)
        with pytest.raises(OutboxDiskFull):
            outbox.put(noise(999))  # still full: no crash, same clear error
        assert outbox.stats().disk_full_errors == 2
        lease = must_take(outbox, limit=33)
        assert outbox.ack(lease.lease_id) == 33
        outbox.put(noise(1000))  # space freed: puts work again
        assert outbox.stats().chunks == stored - 3 + 1
    with Outbox(path, max_pages=24) as outbox:
        assert outbox.stats().disk_full_errors == 2  # recorded by the next write


# -- nothing silently lost, nothing delivered after its ack --------------------------------


class OutboxMachine(RuleBasedStateMachine):
    """Random put/take/ack/release/reopen/clock steps. Every reading (a unique value) is
    at all times stored, acked exactly once, or counted as dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "o.db"
        self.clock = Clock()
        self.next_value = 0
        self.put_total = 0
        self.acked: set[int] = set()
        self.leased: dict[int, set[int]] = {}
        self.old_leases: list[int] = []

    @initialize(
        overflow=st.sampled_from(["drop_oldest", "drop_newest"]),
        compress=st.booleans(),
        max_bytes=st.sampled_from([1500, 4000, 10**6]),
    )
    def open(self, overflow: str, compress: bool, max_bytes: int) -> None:
        self.config = OutboxConfig(
            max_bytes=max_bytes,
            max_age_s=3600,
            overflow=overflow,  # type: ignore[arg-type]
            compress=compress,
        )
        self.outbox = Outbox(self.path, self.config, clock=self.clock)

    @rule(n=st.integers(1, 25), age_s=st.sampled_from([0, 5, 60, 3000, 7200]))
    def put(self, n: int, age_s: int) -> None:
        ts = self.clock.now_ms - age_s * 1000
        batch = [Reading("a", "s", ts + i, self.next_value + i) for i in range(n)]
        self.outbox.put(batch)
        self.next_value += n
        self.put_total += n
        if not self.leased:  # nothing in flight: the byte bound holds exactly
            assert self.outbox.stats().bytes <= self.config.max_bytes

    @rule(live=st.booleans(), limit=st.integers(1, 60))
    def take(self, live: bool, limit: int) -> None:
        lease = self.outbox.take("live" if live else "backfill", limit, self.clock.now_ms)
        if lease is None:
            return
        values = [json.loads(row)[4] for row in lease.rows_json]
        assert len(values) == len(set(values)) == lease.count
        assert lease.count <= limit or len(lease.chunk_ids) == 1
        assert not set(values) & self.acked, "delivered after its ack"
        for other in self.leased.values():
            assert not set(values) & other, "leased twice"
        self.leased[lease.lease_id] = set(values)

    @precondition(lambda self: self.leased)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        lease_id = data.draw(st.sampled_from(sorted(self.leased)))
        values = self.leased.pop(lease_id)
        assert self.outbox.ack(lease_id) == len(values)
        self.acked |= values
        self.old_leases.append(lease_id)

    @precondition(lambda self: self.leased)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        lease_id = data.draw(st.sampled_from(sorted(self.leased)))
        del self.leased[lease_id]
        self.outbox.release(lease_id)
        self.old_leases.append(lease_id)

    @precondition(lambda self: self.old_leases)
    @rule(data=st.data())
    def late_ack(self, data: st.DataObject) -> None:
        assert self.outbox.ack(data.draw(st.sampled_from(self.old_leases))) == 0

    @rule()
    def release_all(self) -> None:
        self.outbox.release_all()
        self.old_leases.extend(self.leased)
        self.leased.clear()

    @rule(step_s=st.sampled_from([1, 30, 1800]))
    def advance_clock(self, step_s: int) -> None:
        self.clock.now_ms += step_s * 1000

    @rule()
    def reopen(self) -> None:  # a crash or restart: leases are gone
        self.outbox.close()
        self.outbox = Outbox(self.path, self.config, clock=self.clock)
        self.old_leases.extend(self.leased)
        self.leased.clear()

    @invariant()
    def conserved(self) -> None:
        stats = self.outbox.stats()
        dropped = stats.dropped_readings_overflow + stats.dropped_readings_age
        assert self.put_total == stats.readings + len(self.acked) + dropped
        assert stats.in_flight_readings == sum(len(v) for v in self.leased.values())

    def teardown(self) -> None:
        if hasattr(self, "outbox"):
            self.outbox.release_all()
            lease = self.outbox.take("backfill", 10**9, self.clock.now_ms)
            stored = {json.loads(r)[4] for r in lease.rows_json} if lease else set()
            assert not stored & self.acked
            assert stored | self.acked <= set(range(self.next_value))
            self.outbox.close()
        self.dir.cleanup()


OutboxMachine.TestCase.settings = settings(max_examples=250, stateful_step_count=40, deadline=None)
test_outbox_state_machine = OutboxMachine.TestCase
