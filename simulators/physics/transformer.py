"""An oil-immersed distribution transformer (ONAN) with a top-oil thermal model.

Steady-state top-oil rise after IEC 60076-7 / IEEE C57.91:
Δθ_oil = Δθ_oil,rated · ((K²·R + 1)/(R + 1))^n, approached with time constant τ_oil;
hot spot = top oil + Δθ_hs, where the hot-spot gradient Δθ_hs approaches
Δθ_hs,rated · K^(2m) with τ_winding (IEC 60076-7's difference equations, without the
k21/k22 overshoot term, which dips the gradient below zero after a load drop).

The gradient over the oil is what lags, not the hot-spot temperature: the winding
sits in the oil, so it is never colder than the oil around it, whatever the oil does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulators.physics.common import SECONDS_PER_HOUR, Value, first_order

RATED_OIL_RISE_C = 55.0
RATED_HOTSPOT_GRADIENT_C = 23.0
LOSS_RATIO_R = 5.0
OIL_EXPONENT_N = 0.8
WINDING_EXPONENT_M = 0.8
TAU_OIL_S = 180 * 60.0
TAU_WINDING_S = 7 * 60.0
FAN_ON_C = 65.0
POWER_FACTOR = 0.86


@dataclass
class TransformerModel:
    kva: float
    voltage_v: float
    rng: random.Random
    aux_load_kw: float = 2.0  # lighting, controls, dosing: ASSUMPTION
    extra_load_kva: float = 0.0  # fault: overload injected by a scenario
    load_kva: float = 0.0
    load_kw: float = 0.0
    ambient_c: float = 17.0
    top_oil_c: float = 20.0
    hot_spot_gradient_c: float = 0.0  # hot spot over top oil; ≥ 0, lags the load
    energy_kwh: float = 0.0

    @property
    def hot_spot_c(self) -> float:
        return self.top_oil_c + self.hot_spot_gradient_c

    @property
    def load_factor(self) -> float:
        return self.load_kva / self.kva

    def set_load(self, pump_kw: float) -> None:
        self.load_kw = pump_kw + self.aux_load_kw + self.extra_load_kva * POWER_FACTOR
        self.load_kva = self.load_kw / POWER_FACTOR

    def advance(self, dt_s: float, ambient_c: float) -> None:
        k = self.load_factor
        self.ambient_c = ambient_c
        rise = (
            RATED_OIL_RISE_C * ((k * k * LOSS_RATIO_R + 1) / (LOSS_RATIO_R + 1)) ** OIL_EXPONENT_N
        )
        self.top_oil_c = first_order(self.top_oil_c, ambient_c + rise, dt_s, TAU_OIL_S)
        gradient = RATED_HOTSPOT_GRADIENT_C * k ** (2 * WINDING_EXPONENT_M)
        self.hot_spot_gradient_c = first_order(
            self.hot_spot_gradient_c, gradient, dt_s, TAU_WINDING_S
        )
        self.energy_kwh += self.load_kw * dt_s / SECONDS_PER_HOUR

    def values(self) -> dict[str, Value]:
        rng = self.rng
        voltage = self.voltage_v * (1.0 - 0.035 * self.load_factor) + rng.gauss(0, 0.6)
        amps = self.load_kva * 1000.0 / (math.sqrt(3) * voltage)
        return {
            "current_l1_a": max(0.0, amps * (1.0 + rng.gauss(0, 0.01))),
            "current_l2_a": max(0.0, amps * (1.0 + rng.gauss(0, 0.01))),
            "current_l3_a": max(0.0, amps * (1.0 + rng.gauss(0, 0.01))),
            "voltage_v": voltage,
            "load_pct": 100.0 * self.load_factor,
            "top_oil_temp_c": self.top_oil_c,
            "winding_temp_c": self.hot_spot_c,
            "ambient_temp_c": self.ambient_c,
            "active_power_kw": self.load_kw,
            "energy_kwh": self.energy_kwh,
            "fan_running": self.top_oil_c > FAN_ON_C,
            "overtemperature_trip": self.hot_spot_c > 140.0,
        }
