"""The wall clock in the platform's unit: whole milliseconds since the Unix epoch (UTC).

Every timestamp on the wire, in the stores and in InfluxDB is one of these. A module
that reads the clock imports `now_ms` by name, so a test can monkeypatch that module's
`now_ms`; code that must run on simulated time takes a `Callable[[], int]` instead.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Now, in whole ms since the epoch (integer arithmetic: no float rounding)."""
    return time.time_ns() // 1_000_000
