"""The outbox survives kill -9: a child process writes it and is killed at random moments.

After each kill the file must pass integrity_check, hold every chunk the child reported
stored (unless it also reported it acked), never give back an acked chunk, keep commit
order in its ids, and never reuse an id. Power loss cannot be simulated here: with
sync="full" the same holds after power loss (SQLite's guarantee), with "normal" the last
commits may roll back.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.outbox import Outbox
from tests.integration._outbox_writer import CHUNK, chunk

WRITER = Path(__file__).with_name("_outbox_writer.py")
KILLS = 4


@dataclass
class Report:
    """What the child said before it died."""

    stored: set[int] = field(default_factory=set)
    maybe_acked: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)

    def read(self, text: str) -> None:
        complete = text.split("\n")[:-1]  # a line cut by the kill is not a report
        for line in complete:
            self.lines.append(line)
            tag, *ks = line.split()
            numbers = {int(k) for k in ks}
            if tag == "P":
                self.stored |= numbers
            elif tag == "T":
                self.maybe_acked |= numbers
            elif tag == "A":
                self.acked |= numbers


def start(path: Path, sync: str, first: int, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(path), sync, str(first), mode],
        stdout=subprocess.PIPE,
        text=True,
    )


def kill_after_first_line(child: subprocess.Popen[str], delay_s: float) -> str:
    assert child.stdout is not None
    first = child.stdout.readline()  # the child is running and writing
    time.sleep(delay_s)
    child.send_signal(signal.SIGKILL)
    # Not communicate(): it reads the pipe itself, past what readline() already buffered.
    rest = child.stdout.read()
    assert child.wait(timeout=10) == -signal.SIGKILL, first + rest
    return first + rest


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def chunks_present(outbox: Outbox) -> list[tuple[int, int]]:
    """(chunk id, k) of every chunk, in id order, leased and released again."""
    lease = outbox.take("backfill", 10**9, 0)
    if lease is None:
        return []
    ks = [json.loads(row)[4] for row in lease.rows_json]
    per_chunk = [ks[i] for i in range(0, len(ks), CHUNK)]
    assert all(ks[i] == ks[i - i % CHUNK] for i in range(len(ks))), "a chunk came back torn"
    outbox.release(lease.lease_id)
    return list(zip(lease.chunk_ids, per_chunk, strict=True))


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_kill_9_loses_no_committed_chunk(tmp_path: Path, sync: str) -> None:
    path = tmp_path / "outbox.db"
    rnd = random.Random(sync)
    report = Report()
    next_k, max_id = 0, 0
    for _ in range(KILLS):
        output = kill_after_first_line(start(path, sync, next_k, "loop"), rnd.uniform(0.05, 0.4))
        report.read(output)
        assert integrity(path) == "ok"
        with Outbox(path) as outbox:
            present = chunks_present(outbox)
            stats = outbox.stats()
        ids = [cid for cid, _ in present]
        ks = [k for _, k in present]
        assert ids == sorted(set(ids)) and ks == sorted(set(ks)), "commit order lost"
        new_ids = [cid for cid, k in present if k >= next_k]
        assert all(cid > max_id for cid in new_ids), "a chunk id was reused"
        missing = report.stored - report.acked - report.maybe_acked - set(ks)
        assert not missing, f"stored chunks lost: {sorted(missing)}"
        assert not report.acked & set(ks), "an acked chunk came back"
        # The one chunk the child may have stored but not yet reported is the next one.
        this_round = {k for k in report.stored if k >= next_k}
        unreported = {k for k in ks if k >= next_k} - this_round
        assert unreported <= {max(this_round, default=next_k - 1) + 1}, unreported
        assert (stats.chunks, stats.readings) == (len(present), CHUNK * len(present))
        assert stats.in_flight_readings == 0
        assert stats.dropped_chunks == 0 and stats.disk_full_errors == 0
        next_k = max(report.stored | set(ks) | {next_k}) + 2  # +2: k may be unreported
        max_id = max([max_id, *ids])
    assert len(report.stored) > KILLS, "the child never got going"
    assert report.acked, "the child never acked"


def test_acked_chunks_never_come_back_after_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    child = start(path, "normal", 0, "ack-all")
    assert child.stdout is not None
    lines = []
    while (line := child.stdout.readline()) and line != "ACKED\n":
        lines.append(line)
    assert line == "ACKED\n", "".join(lines)
    child.send_signal(signal.SIGKILL)
    child.stdout.read()
    child.wait(timeout=10)
    assert integrity(path) == "ok"
    with Outbox(path) as outbox:
        assert outbox.stats().readings == 0
        assert outbox.take("backfill", 10**9, 0) is None
        outbox.put(chunk(1))
        lease = outbox.take("backfill", 10**9, 0)
    assert lease is not None and lease.chunk_ids[0] > 50, "an acked chunk's id was reused"
