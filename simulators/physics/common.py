"""Shared helpers for the physical models."""

from __future__ import annotations

import hashlib
import math
import random

RHO_G = 9.81  # kN/m³ for water: P[kW] = ρg·Q[m³/s]·H[m]
SECONDS_PER_HOUR = 3600.0

Value = bool | int | float | str


def seeded_rng(seed: int, *names: str) -> random.Random:
    """An independent, reproducible random stream per (seed, asset)."""
    digest = hashlib.sha256(":".join([str(seed), *names]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def first_order(value: float, target: float, dt_s: float, tau_s: float) -> float:
    """Exact step of dx/dt = (target - x)/tau over dt."""
    return target + (value - target) * math.exp(-dt_s / tau_s)


def hour_of_day(t_ms: int, utc_offset_h: float) -> float:
    return ((t_ms / 1000.0 / SECONDS_PER_HOUR) + utc_offset_h) % 24.0


def ambient_temp_c(t_ms: int, utc_offset_h: float, mean: float = 17.0, swing: float = 6.0) -> float:
    """Diurnal air temperature: coldest near 05:00, warmest near 15:00 (Yunnan upland)."""
    h = hour_of_day(t_ms, utc_offset_h)
    return mean + swing * math.sin(2 * math.pi * (h - 9.0) / 24.0)


def _raw_demand(h: float) -> float:
    # Rural domestic use: a morning peak near 07:30 and an evening one near 19:00.
    morning = 0.9 * math.exp(-(((h - 7.5) / 1.4) ** 2))
    evening = 1.0 * math.exp(-(((h - 19.0) / 1.8) ** 2))
    midday = 0.35 * math.exp(-(((h - 12.5) / 2.0) ** 2))
    return 0.35 + morning + evening + midday


_DEMAND_MEAN = sum(_raw_demand(i / 60.0) for i in range(24 * 60)) / (24 * 60)


def diurnal_demand_factor(h: float) -> float:
    """Demand relative to the daily mean (its mean over a day is 1)."""
    return _raw_demand(h) / _DEMAND_MEAN
