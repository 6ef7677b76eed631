"""Child process for test_outbox_crash: writes an outbox until it is killed with SIGKILL.

    python _outbox_writer.py PATH SYNC FIRST loop      put chunks forever, now and then ack
    python _outbox_writer.py PATH SYNC FIRST ack-all   put 50 chunks, ack them all, wait

Every chunk holds CHUNK readings whose value is the chunk's number k. Lines on stdout,
each written only after the call it reports has returned (so it is committed):

    P k            chunk k is stored
    T k1 k2 ...    about to ack a lease holding these chunks (the ack may or may not land)
    A k1 k2 ...    the ack returned: these chunks are gone for good
    ACKED          (ack-all) everything was acked
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Literal, cast

from facility.wire import Reading
from gateway.outbox import Outbox, OutboxConfig

CHUNK = 20
BASE_TS = 1_780_264_800_000


def chunk(k: int) -> list[Reading]:
    return [Reading("crash", f"s{i}", BASE_TS + k, k) for i in range(CHUNK)]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ack_some(outbox: Outbox, max_readings: int) -> None:
    lease = outbox.take("backfill", max_readings, BASE_TS)
    if lease is None:
        return
    ks = sorted({json.loads(row)[4] for row in lease.rows_json})
    say("T " + " ".join(map(str, ks)))
    outbox.ack(lease.lease_id)
    say("A " + " ".join(map(str, ks)))


def loop(outbox: Outbox, first: int) -> None:
    k = first
    while True:
        outbox.put(chunk(k))
        say(f"P {k}")
        if k % 7 == 0:
            ack_some(outbox, 3 * CHUNK)
        k += 1


def ack_all(outbox: Outbox, first: int) -> None:
    for k in range(first, first + 50):
        outbox.put(chunk(k))
    while outbox.stats().readings:
        ack_some(outbox, 10 * CHUNK)
    say("ACKED")
    time.sleep(60)  # killed here, before any clean close or checkpoint


def main() -> None:
    path, sync, first, mode = sys.argv[1:5]
    sync_mode = cast(Literal["full", "normal", "off"], sync)
    # The clock is pinned to the readings' time so the age bound never interferes.
    outbox = Outbox(Path(path), OutboxConfig(sync=sync_mode), clock=lambda: BASE_TS)
    (loop if mode == "loop" else ack_all)(outbox, int(first))


if __name__ == "__main__":
    main()
