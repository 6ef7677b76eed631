"""Simulated time: a clock that runs at N x real time from a chosen start."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from facility import clock as wall_clock
from facility.durations import parse_duration

__all__ = ["SimClock", "parse_duration"]

MS = 1000


@dataclass
class SimClock:
    """Maps wall time to simulated time. `speed` 60 turns a minute into an hour."""

    start_ms: int
    speed: float = 1.0
    _wall0: float = field(default_factory=time.monotonic)
    _epoch0_ms: int = field(default_factory=wall_clock.now_ms)

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._wall0) * self.speed * MS)

    def real_ms(self, sim_ms: int) -> int:
        """The real time (epoch ms) at which the simulated clock shows (or showed) sim_ms."""
        return self._epoch0_ms + int((sim_ms - self.start_ms) / self.speed)

    def wall_seconds_until(self, sim_ms: int) -> float:
        """Real seconds to wait until the simulated clock reaches `sim_ms`."""
        return max(0.0, (sim_ms - self.now_ms()) / MS / self.speed)
