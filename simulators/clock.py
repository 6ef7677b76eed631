"""Simulated time: a clock that runs at N x real time from a chosen start."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

MS = 1000


@dataclass
class SimClock:
    """Maps wall time to simulated time. `speed` 60 turns a minute into an hour."""

    start_ms: int
    speed: float = 1.0
    _wall0: float = field(default_factory=time.monotonic)

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._wall0) * self.speed * MS)

    def wall_seconds_until(self, sim_ms: int) -> float:
        """Real seconds to wait until the simulated clock reaches `sim_ms`."""
        return max(0.0, (sim_ms - self.now_ms()) / MS / self.speed)


def parse_duration(text: str | int | float) -> float:
    """'90s', '15m', '6h', '2d' or a number of seconds -> seconds."""
    if isinstance(text, int | float):
        return float(text)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip()
    for suffix in ("ms", "s", "m", "h", "d", "w"):
        if text.endswith(suffix):
            number = text[: -len(suffix)].strip()
            try:
                return float(number) * units[suffix]
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 6h, 2d)") from None
