"""A supply tank: level integrates inflow minus demand, with an inlet altitude valve.

Every cubic metre is accounted for (inflow, demand served, overflow, shortfall) so the
mass balance can be checked exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulators.physics.common import SECONDS_PER_HOUR, Value

VALVE_CLOSE_FRACTION = 0.93  # the altitude valve shuts above this share of height


@dataclass
class TankModel:
    capacity_m3: float
    height_m: float
    rng: random.Random
    level_m: float = 0.0
    inflow_m3h: float = 0.0
    demand_m3h: float = 0.0
    inflow_total_m3: float = 0.0
    served_total_m3: float = 0.0
    overflow_total_m3: float = 0.0
    shortfall_total_m3: float = 0.0
    valve_open: bool = True
    sensor_fault: bool = False

    @property
    def area_m2(self) -> float:
        return self.capacity_m3 / self.height_m

    @property
    def volume_m3(self) -> float:
        return self.level_m * self.area_m2

    def update_valve(self, stop_fraction: float) -> None:
        """Altitude valve: shuts near the top, reopens below the station's stop level."""
        fraction = self.level_m / self.height_m
        if fraction >= VALVE_CLOSE_FRACTION:
            self.valve_open = False
        elif fraction < stop_fraction:
            self.valve_open = True

    def advance(self, dt_s: float) -> None:
        inflow = self.inflow_m3h * dt_s / SECONDS_PER_HOUR
        wanted = self.demand_m3h * dt_s / SECONDS_PER_HOUR
        volume = self.volume_m3 + inflow
        served = min(wanted, volume)
        volume -= served
        overflow = max(0.0, volume - self.capacity_m3)
        volume -= overflow
        self.level_m = volume / self.area_m2
        self.inflow_total_m3 += inflow
        self.served_total_m3 += served
        self.overflow_total_m3 += overflow
        self.shortfall_total_m3 += wanted - served

    def values(self) -> dict[str, Value]:
        level = max(0.0, self.level_m + self.rng.gauss(0, 0.002))
        return {
            "level_m": level,
            "volume_m3": level * self.area_m2,
            "level_pct": 100.0 * level / self.height_m,
            "inlet_valve_open": self.valve_open,
            "sensor_fault": self.sensor_fault,
        }
