"""Polled readings reach the outbox in one transaction per short window, not per poll.

At 100 ms polls of a hundred devices, a commit per device poll (one SQLite transaction,
one chunk row, one live-lane entry each) cost more than the polling itself. Readings
polled within `window_s` are stored together as one chunk in one transaction.

Durability: nothing is acknowledged to anyone before the commit (the uplink only sends
what the outbox holds), so a crash can lose at most the last window of polled readings,
which is what a crash between two polls loses anyway: registers can be read again. MQTT
device messages, which cannot be read again, do not come this way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from facility.wire import Reading

WINDOW_S = 0.05
MAX_READINGS = 20_000  # a window holding more is stored at once


class WriteBehind:
    """Collects readings and hands them to `store` at most `window_s` after the first."""

    def __init__(
        self,
        store: Callable[[list[Reading]], object],
        window_s: float = WINDOW_S,
        max_readings: int = MAX_READINGS,
    ) -> None:
        self._store = store
        self.window_s = window_s
        self.max_readings = max_readings
        self._pending: list[Reading] = []
        self._timer: asyncio.TimerHandle | None = None
        self.flushes = 0

    def add(self, readings: list[Reading]) -> None:
        self._pending.extend(readings)
        if len(self._pending) >= self.max_readings:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self.flush)

    def flush(self) -> None:
        """Store whatever waits now (also at shutdown, before the outbox closes)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        readings, self._pending = self._pending, []
        self.flushes += 1
        self._store(readings)

    @property
    def pending(self) -> int:
        return len(self._pending)
