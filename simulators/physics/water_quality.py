"""Chlorine-dioxide dosing and the outlet analyser.

The generator doses in proportion to flow; the residual measured after the contact
tank approaches (dose - chlorine demand) while water flows, and decays slowly in the
clear-water tank while the station is idle. Limits: GB 5749-2022.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulators.physics.common import Value, first_order, hour_of_day

CHLORINE_DEMAND_MG_L = 0.15  # ASSUMPTION: raw-water oxidant demand
SOLUTION_G_PER_L = 2.0  # ClO2 solution strength from the generator: ASSUMPTION
TAU_FLOWING_S = 600.0
TAU_IDLE_S = 48 * 3600.0
TAU_FAILED_S = 1800.0


@dataclass
class WaterQualityModel:
    rng: random.Random
    utc_offset_h: float
    dose_setpoint_mg_l: float = 0.6
    residual_mg_l: float = 0.45
    flow_m3h: float = 0.0
    dosing_failed: bool = False  # fault: generator stopped
    overdose_factor: float = 1.0  # fault: dosing pump runs away
    turbidity_ntu: float = 0.25
    water_temp_c: float = 16.0

    @property
    def dosing(self) -> bool:
        return self.flow_m3h > 0.5 and not self.dosing_failed

    @property
    def dose_mg_l(self) -> float:
        return self.dose_setpoint_mg_l * self.overdose_factor if self.dosing else 0.0

    def advance(self, dt_s: float, t_ms: int) -> None:
        if self.dosing_failed:  # no fresh dose: the residual is consumed in the sample loop
            self.residual_mg_l = first_order(self.residual_mg_l, 0.0, dt_s, TAU_FAILED_S)
        elif self.flow_m3h > 0.5:
            target = max(0.0, self.dose_mg_l - CHLORINE_DEMAND_MG_L)
            self.residual_mg_l = first_order(self.residual_mg_l, target, dt_s, TAU_FLOWING_S)
        else:
            self.residual_mg_l = first_order(self.residual_mg_l, 0.0, dt_s, TAU_IDLE_S)
        h = hour_of_day(t_ms, self.utc_offset_h)
        self.water_temp_c = 16.0 + 1.5 * math.sin(2 * math.pi * (h - 10) / 24)

    def values(self) -> dict[str, Value]:
        rng = self.rng
        dosing_l_h = self.flow_m3h * self.dose_mg_l / SOLUTION_G_PER_L if self.dosing else 0.0
        return {
            "clo2_residual_mg_l": max(0.0, self.residual_mg_l + rng.gauss(0, 0.005)),
            "turbidity_ntu": max(0.0, self.turbidity_ntu + rng.gauss(0, 0.02)),
            "ph": 7.3 + 0.05 * math.sin(self.water_temp_c) + rng.gauss(0, 0.01),
            "water_temp_c": self.water_temp_c,
            "dosing_rate_l_h": dosing_l_h,
            "treated_flow_m3h": self.flow_m3h,
            "dosing_running": self.dosing,
            "generator_fault": self.dosing_failed,
            "analyser_fault": False,
            "dose_setpoint_mg_l": self.dose_setpoint_mg_l,
        }
