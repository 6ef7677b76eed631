"""A reservoir: storage above dead level drifts with drawdown and catchment inflow."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulators.physics.common import SECONDS_PER_HOUR, Value, hour_of_day


@dataclass
class ReservoirModel:
    capacity_m3: float
    area_m2: float
    rng: random.Random
    utc_offset_h: float
    volume_m3: float = 0.0
    inflow_m3h: float = 0.0  # catchment inflow (dry season baseflow): ASSUMPTION
    drawdown_m3h: float = 0.0  # set by the intake stations each step
    battery_v: float = 12.8

    @property
    def level_m(self) -> float:
        return self.volume_m3 / self.area_m2

    def advance(self, dt_s: float, t_ms: int) -> None:
        change = (self.inflow_m3h - self.drawdown_m3h) * dt_s / SECONDS_PER_HOUR
        self.volume_m3 = min(self.capacity_m3, max(0.0, self.volume_m3 + change))
        sun = max(0.0, math.sin(math.pi * (hour_of_day(t_ms, self.utc_offset_h) - 6.5) / 12.5))
        self.battery_v = 12.4 + 1.4 * sun

    def values(self) -> dict[str, Value]:
        level = self.level_m + self.rng.gauss(0, 0.003)
        return {
            "water_level_m": level,
            "storage_pct": 100.0 * self.volume_m3 / self.capacity_m3,
            "volume_m3": self.volume_m3,
            "battery_v": self.battery_v + self.rng.gauss(0, 0.01),
        }
