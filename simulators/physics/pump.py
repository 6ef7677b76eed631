"""A centrifugal pump set on a VFD: pump curve, affinity laws, motor, bearings, counters.

Pump curve at 50 Hz: H(Q) = H0 - k·Q², with the shut-off head H0 = 1.25·H_rated and k
set so the curve passes through the rated point. At speed ratio s = f/50 the affinity
laws give H(Q) = H0·s² - k·Q². Wire-to-water efficiency peaks at the rated point.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from simulators.physics.common import RHO_G, SECONDS_PER_HOUR, Value, first_order

SHUTOFF_HEAD_RATIO = 1.25
PEAK_EFFICIENCY = 0.72  # wire-to-water, matches the rated flows in the demo site files
POWER_FACTOR = 0.86
BEARING_TAU_S = 1200.0
BEARING_RISE_AT_RATED_C = 28.0
DRY_RUN_POWER_FRACTION = 0.3
VFD_RAMP_HZ_PER_S = 2.0


@dataclass
class PumpCurve:
    rated_flow_m3h: float
    rated_head_m: float

    @property
    def shutoff_head_m(self) -> float:
        return SHUTOFF_HEAD_RATIO * self.rated_head_m

    @property
    def k(self) -> float:
        return (self.shutoff_head_m - self.rated_head_m) / self.rated_flow_m3h**2

    def flow_at_head(self, head_m: float, speed_ratio: float) -> float:
        """Flow this pump delivers against `head_m` at speed ratio s (0 if it cannot)."""
        lift = self.shutoff_head_m * speed_ratio**2 - head_m
        return math.sqrt(lift / self.k) if lift > 0 else 0.0

    def efficiency(self, flow_m3h: float, speed_ratio: float) -> float:
        best = self.rated_flow_m3h * max(speed_ratio, 0.05)
        return max(0.2, PEAK_EFFICIENCY * (1.0 - 0.6 * (flow_m3h / best - 1.0) ** 2))


@dataclass
class PumpModel:
    """One pump set. The station decides when it runs; the pump computes the rest."""

    curve: PumpCurve
    motor_kw: float
    voltage_v: float
    rng: random.Random
    model_name: str = "VFD-PUMP-1"
    available: bool = True  # False when out of service
    hand: bool = False  # started by hand at the panel: level control leaves it alone
    running: bool = False
    tripped: bool = False
    fault_code: int = 0
    frequency_hz: float = 0.0
    setpoint_hz: float = 50.0
    flow_m3h: float = 0.0
    head_m: float = 0.0
    power_kw: float = 0.0
    bearing_temp_c: float = 20.0
    run_hours: float = field(default=0.0)
    starts: int = 0
    dry_run: bool = False  # fault: suction lost, pump spins in air
    bearing_fault_rise_c: float = 0.0  # fault: extra bearing heating
    vibration_extra: float = 0.0

    @property
    def can_run(self) -> bool:
        return self.available and not self.tripped

    def start(self) -> None:
        if self.can_run and not self.running:
            self.running = True
            self.starts += 1

    def stop(self) -> None:
        self.running = False

    def trip(self, fault_code: int) -> None:
        self.tripped = True
        self.running = False
        self.fault_code = fault_code

    def reset(self) -> None:
        self.tripped = False
        self.fault_code = 0

    @property
    def speed_ratio(self) -> float:
        return self.frequency_hz / 50.0

    def ramp(self, dt_s: float) -> None:
        target = self.setpoint_hz if self.running else 0.0
        step = VFD_RAMP_HZ_PER_S * dt_s
        self.frequency_hz += max(-step, min(step, target - self.frequency_hz))

    def set_operating_point(self, flow_m3h: float, head_m: float) -> None:
        """Called by the station's hydraulic solution each step."""
        if self.dry_run and self.running:
            flow_m3h, head_m = 0.02 * self.curve.rated_flow_m3h, 2.0
        self.flow_m3h, self.head_m = flow_m3h, head_m
        if self.frequency_hz <= 0.1:
            self.power_kw = 0.0
        elif self.dry_run:
            self.power_kw = DRY_RUN_POWER_FRACTION * self.motor_kw * self.speed_ratio**3
        else:
            eta = self.curve.efficiency(flow_m3h, self.speed_ratio)
            hydraulic = RHO_G * flow_m3h / SECONDS_PER_HOUR * head_m
            # below the curve's flow range the pump still churns: no-load losses
            self.power_kw = max(hydraulic / eta, 0.15 * self.motor_kw * self.speed_ratio**3)

    def advance(self, dt_s: float, ambient_c: float) -> None:
        load = self.power_kw / self.motor_kw
        fault_heat = self.bearing_fault_rise_c if self.frequency_hz > 0.1 else 0.0
        target = ambient_c + BEARING_RISE_AT_RATED_C * load + fault_heat
        self.bearing_temp_c = first_order(self.bearing_temp_c, target, dt_s, BEARING_TAU_S)
        if self.frequency_hz > 0.1:
            self.run_hours += dt_s / SECONDS_PER_HOUR

    @property
    def current_a(self) -> float:
        return self.power_kw * 1000.0 / (math.sqrt(3) * self.voltage_v * POWER_FACTOR)

    def values(self) -> dict[str, Value]:
        rng = self.rng
        on = self.frequency_hz > 0.1
        vibration = (
            1.6 * self.speed_ratio**2 + self.vibration_extra + rng.gauss(0, 0.05)
            if on
            else abs(rng.gauss(0.03, 0.01))
        )
        pressure_bar = self.head_m * RHO_G / 100.0
        return {
            "running": self.running,
            "tripped": self.tripped,
            "remote": True,
            "ready": self.can_run,
            "frequency_hz": round(self.frequency_hz, 2),
            "current_a": max(0.0, self.current_a * (1 + rng.gauss(0, 0.005))) if on else 0.0,
            "power_kw": self.power_kw,
            "flow_m3h": max(0.0, self.flow_m3h * (1 + rng.gauss(0, 0.004))) if on else 0.0,
            "discharge_pressure_bar": max(0.0, pressure_bar + rng.gauss(0, 0.01)),
            "bearing_temp_c": self.bearing_temp_c + rng.gauss(0, 0.1),
            "vibration_mm_s": max(0.0, vibration),
            "run_hours": self.run_hours,
            "starts": self.starts,
            "fault_code": self.fault_code,
            "alarm_overcurrent": self.fault_code == 1,
            "alarm_overtemperature": self.bearing_temp_c > 85.0,
            "alarm_dry_run": self.dry_run and self.running,
            "frequency_setpoint_hz": self.setpoint_hz,
            "drive_model": self.model_name[:16],
        }
