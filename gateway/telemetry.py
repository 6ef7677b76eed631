"""The gateway's own health, reported as 'h' readings of its `gateway` asset."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from facility.wire import Reading

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_MB


@dataclass
class Counters:
    """Monotonic counts the daemon bumps as it works."""

    readings_in: int = 0
    readings_suppressed: int = 0
    readings_lost_disk_full: int = 0
    task_restarts: int = 0


@dataclass
class RateMeter:
    """Turns monotonic counters into per-second rates between two reports."""

    _last: dict[str, tuple[float, int]] = field(default_factory=dict)

    def rate(self, name: str, total: int, now: float) -> float:
        before = self._last.get(name)
        self._last[name] = (now, total)
        if before is None or now <= before[0]:
            return 0.0
        return (total - before[1]) / (now - before[0])


@dataclass
class CpuMeter:
    _last: tuple[float, float] = field(
        default_factory=lambda: (time.monotonic(), time.process_time())
    )

    def percent(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        busy = (cpu - self._last[1]) / max(1e-9, wall - self._last[0])
        self._last = (wall, cpu)
        return 100.0 * busy


def health_readings(
    asset: str, ts_ms: int, values: Mapping[str, float | int | bool | str]
) -> list[Reading]:
    return [Reading(asset, name, ts_ms, value, "g", "h") for name, value in values.items()]
