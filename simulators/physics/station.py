"""A pump station: level control, parallel-pump hydraulics, and the equipment it feeds.

Control is what rural stations do: start the duty pump(s) when any tank it feeds falls to
the start level, stop when every tank has reached the stop level (or shut its altitude
valve). The run request holds in between, so a duty pump that trips is replaced by the
next available one at once. Out-of-service pumps are
never started; a standby station (drought mode only) never runs on its own.

Hydraulics: running pumps in parallel against the system curve H = H_static + r·Q²,
where r makes one lead pump at 50 Hz meet its rated point. The common head is found by
bisection, so pumps of different sizes share flow as their curves say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from simulators.physics.pump import PumpModel
from simulators.physics.tank import TankModel
from simulators.physics.transformer import TransformerModel
from simulators.physics.water_quality import WaterQualityModel


@dataclass
class StationModel:
    pumps: dict[str, PumpModel]
    pump_order: list[str]
    tanks: dict[str, TankModel]
    static_head_m: float
    drive_hz: float = 50.0
    start_fraction: float = 0.4
    stop_fraction: float = 0.88
    duty_pumps: int = 1
    standby: bool = False
    transformer: TransformerModel | None = None
    water_quality: WaterQualityModel | None = None
    controller_stuck_on: bool = False  # fault: pumps never stop, valves never shut
    calling: bool = False  # the controller's run request: from the start level to the stop
    flow_m3h: float = 0.0
    head_m: float = 0.0
    pumped_total_m3: float = 0.0
    _resistance: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        lead = self.pumps[self.pump_order[0]] if self.pump_order else None
        if lead is not None:
            rated = lead.curve
            lift = max(rated.rated_head_m - self.static_head_m, 0.1 * rated.rated_head_m)
            self._resistance = lift / rated.rated_flow_m3h**2
        for pump in self.pumps.values():
            pump.setpoint_hz = self.drive_hz

    @property
    def running(self) -> list[PumpModel]:
        return [self.pumps[p] for p in self.pump_order if self.pumps[p].running]

    def control(self) -> None:
        for tank in self.tanks.values():
            if self.controller_stuck_on:
                tank.valve_open = True
            else:
                tank.update_valve(self.stop_fraction)
        if self.standby or not self.tanks:
            return
        fractions = [t.level_m / t.height_m for t in self.tanks.values()]
        need = any(f <= self.start_fraction for f in fractions)
        satisfied = all(
            f >= self.stop_fraction or not t.valve_open
            for f, t in zip(fractions, self.tanks.values(), strict=True)
        )
        if satisfied and not self.controller_stuck_on:
            self.calling = False
            for pump in self.running:
                if not pump.hand:
                    pump.stop()
            return
        # The request holds until the stop level, not while a pump happens to run: a
        # duty pump that trips mid-cycle is replaced at once by the next available one.
        self.calling = self.calling or need or bool(self.running) or self.controller_stuck_on
        if self.calling:
            self._keep_duty_running()

    def _keep_duty_running(self) -> None:
        for name in self.pump_order:
            if len(self.running) >= self.duty_pumps:
                return
            pump = self.pumps[name]
            if pump.can_run and not pump.running:
                pump.start()

    def solve_hydraulics(self) -> None:
        spinning = [p for p in self.pumps.values() if p.frequency_hz > 0.1]
        pumping = [p for p in spinning if not p.dry_run]
        open_tanks = [t for t in self.tanks.values() if t.valve_open]
        head = self.static_head_m
        if pumping and open_tanks:
            head = self._common_head(pumping)
        elif pumping:  # every valve shut: pumps churn at shut-off head
            head = max(p.curve.shutoff_head_m * p.speed_ratio**2 for p in pumping)
        # Membership by identity: `in` on the lists compared the models as dataclasses,
        # field by field, for every other pump and tank of the station, every step; two
        # models are never equal anyway (each has its own random stream).
        turning, delivering = {id(p) for p in spinning}, {id(p) for p in pumping}
        filling = {id(t) for t in open_tanks}
        total = 0.0
        for pump in self.pumps.values():
            flow = pump.curve.flow_at_head(head, pump.speed_ratio) if open_tanks else 0.0
            flow = flow if id(pump) in delivering else 0.0
            pump.set_operating_point(flow, head if id(pump) in turning else self.static_head_m)
            total += pump.flow_m3h if id(pump) in delivering else 0.0
        self.flow_m3h, self.head_m = total, head
        share = sum(t.capacity_m3 for t in open_tanks)
        for tank in self.tanks.values():
            tank.inflow_m3h = total * tank.capacity_m3 / share if id(tank) in filling else 0.0

    def _common_head(self, pumps: list[PumpModel]) -> float:
        lo = self.static_head_m
        hi = max(p.curve.shutoff_head_m * p.speed_ratio**2 for p in pumps)
        if hi <= lo:
            return lo
        # each pump's curve at its speed, looked up once for the 40 halvings: the same
        # arithmetic as `PumpCurve.flow_at_head`, so the same head to the last bit
        curves = [(p.curve.shutoff_head_m * p.speed_ratio**2, p.curve.k) for p in pumps]
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            supplied = _supplied(curves, mid)
            wanted = math.sqrt((mid - self.static_head_m) / self._resistance)
            lo, hi = (mid, hi) if supplied > wanted else (lo, mid)
        return 0.5 * (lo + hi)

    def advance(self, dt_s: float, t_ms: int, ambient_c: float) -> None:
        self.control()
        for pump in self.pumps.values():
            pump.ramp(dt_s)
        self.solve_hydraulics()
        for pump in self.pumps.values():
            pump.advance(dt_s, ambient_c)
        for tank in self.tanks.values():
            tank.advance(dt_s)
        self.pumped_total_m3 += self.flow_m3h * dt_s / 3600.0
        if self.transformer is not None:
            self.transformer.set_load(sum(p.power_kw for p in self.pumps.values()))
            self.transformer.advance(dt_s, ambient_c)
        if self.water_quality is not None:
            self.water_quality.flow_m3h = self.flow_m3h
            self.water_quality.advance(dt_s, t_ms)


def _supplied(curves: list[tuple[float, float]], head_m: float) -> float:
    """What pumps with these (shut-off head at speed, k) deliver together against a head;
    one pump (most stations) without `sum`, which adds its one flow to 0: the same."""
    if len(curves) == 1:
        top, k = curves[0]
        return math.sqrt((top - head_m) / k) if top - head_m > 0 else 0.0
    return sum(math.sqrt((top - head_m) / k) if top - head_m > 0 else 0.0 for top, k in curves)
