"""Report by exception: send a value when it moved past its deadband, or when it has
been silent for too long, so a quiet signal still proves it is alive."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from facility.wire import Reading, Value


@dataclass
class ReportByException:
    enabled: bool
    max_silence_ms: int
    deadbands: dict[tuple[str, str], float] = field(default_factory=dict)
    suppressed: int = 0
    _last: dict[tuple[str, str], tuple[Value, int]] = field(default_factory=dict)

    def filter(self, readings: Iterable[Reading]) -> list[Reading]:
        if not self.enabled:
            return list(readings)
        out = []
        for reading in readings:
            if reading.kind != "v" or self._report(reading):
                out.append(reading)
            else:
                self.suppressed += 1
        return out

    def _report(self, reading: Reading) -> bool:
        key = (reading.asset, reading.signal)
        last = self._last.get(key)
        if (
            last is None
            or reading.ts_ms - last[1] >= self.max_silence_ms
            or self._moved(key, last[0], reading.value)
        ):
            self._last[key] = (reading.value, reading.ts_ms)
            return True
        return False

    def _moved(self, key: tuple[str, str], before: Value, now: Value) -> bool:
        band = self.deadbands.get(key)
        numeric = isinstance(before, int | float) and isinstance(now, int | float)
        if band is None or not numeric or isinstance(now, bool) or isinstance(before, bool):
            return before != now
        assert isinstance(before, int | float) and isinstance(now, int | float)
        return abs(now - before) > band
