"""A car park: regular vehicles and visitors arrive and leave through barrier gates.

Regular (resident and staff) vehicles leave in the morning and come back in the evening;
visitors arrive as a Poisson process whose rate follows the hour of day and stay for a
log-normal time. Occupancy only changes through gate passages, so the counter always
equals entries minus exits and never leaves [0, capacity]: a car that finds the lot
full is turned away (counted) and does not enter. A gate whose controller reports a
fault lets nobody through; its traffic takes the other gates of its direction.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from simulators.physics.common import hour_of_day

BARRIER_OPEN_S = 8.0
REPORT_EVERY_S = 60.0
PLATE_LETTERS = "ABCDEFGHJKLMN"


@dataclass
class DeviceMessage:
    """One JSON message a device publishes: which asset, which topic of its profile."""

    t_ms: int
    asset: str
    topic: str
    payload: dict[str, Any]


@dataclass
class GateModel:
    id: str
    lanes: list[str]
    closed_hours: tuple[int, int] | None = None
    barrier_open: bool = False
    close_at_ms: int | None = None
    count_in: int = 0
    count_out: int = 0
    fault: bool = False  # fault: the controller reports `fault_code`, its lanes are shut
    fault_code: int = 0
    stuck_open: bool = False  # fault: the arm does not come down
    started_ms: int = 0
    report_now: bool = False  # a state change the controller publishes at once

    def break_down(self, fault_code: int) -> None:
        """An arm motor or loop detector fault: the controller drops the arm and lets no
        vehicle through until it is repaired; cars use the other gates."""
        self.fault, self.fault_code = True, fault_code
        self.barrier_open, self.close_at_ms = False, None
        self.report_now = True

    def repair(self) -> None:
        self.fault, self.fault_code = False, 0
        self.report_now = True

    def is_closed_at(self, h: float) -> bool:
        if self.closed_hours is None:
            return False
        start, end = self.closed_hours
        return (start <= h or h < end) if start > end else (start <= h < end)

    def state(self, t_ms: int) -> DeviceMessage:
        return DeviceMessage(
            t_ms,
            self.id,
            "state",
            {
                "ts": t_ms,
                "barrier": "open" if self.barrier_open else "closed",
                "fault": self.fault,
                "fault_code": self.fault_code,
                "count_in": self.count_in,
                "count_out": self.count_out,
            },
        )


@dataclass
class Regular:
    leave_h: float
    return_h: float
    travels: bool
    present: bool


@dataclass
class ParkingLotModel:
    lot_id: str
    capacity: int
    regulars: int
    visitor_peak_per_h: float
    gates: dict[str, GateModel]
    rng: random.Random
    utc_offset_h: float
    surge_factor: float = 1.0  # fault: an event nearby floods the lot with visitors
    occupied: int = 0
    turned_away: int = 0
    _regs: list[Regular] = field(default_factory=list)
    # the travelling regulars' (leave hour, index) and (return hour, index), sorted
    _leaving: list[tuple[float, int]] = field(default_factory=list)
    _returning: list[tuple[float, int]] = field(default_factory=list)
    _visitor_exits: list[int] = field(default_factory=list)  # heap of departure times
    _day: int = -1
    _last_report_ms: int = -(10**15)
    _last_occupancy: int = -1

    def start(self, t_ms: int) -> None:
        self._plan_day(t_ms)
        h = hour_of_day(t_ms, self.utc_offset_h)
        for r in self._regs:
            r.present = not (r.travels and r.leave_h <= h < r.return_h)
        self.occupied = min(self.capacity, sum(r.present for r in self._regs))
        for gate in self.gates.values():
            gate.started_ms = t_ms

    def _plan_day(self, t_ms: int) -> None:
        self._day = int((t_ms / 3_600_000 + self.utc_offset_h) // 24)
        rng = self.rng
        old = self._regs or [Regular(0, 0, False, True) for _ in range(self.regulars)]
        self._regs = [
            Regular(
                leave_h=min(11.0, max(5.5, rng.gauss(7.8, 1.0))),
                return_h=min(23.5, max(15.0, rng.gauss(18.5, 1.5))),
                travels=rng.random() < 0.8,
                present=r.present,
            )
            for r in old
        ]
        travelling = [(i, r) for i, r in enumerate(self._regs) if r.travels]
        self._leaving = sorted((r.leave_h, i) for i, r in travelling)
        self._returning = sorted((r.return_h, i) for i, r in travelling)

    def visitor_rate_per_h(self, h: float) -> float:
        # shops and visits: low at night, a broad daytime plateau, an evening peak
        shape = (
            0.08 + 0.6 * math.exp(-(((h - 12.5) / 3.0) ** 2)) + math.exp(-(((h - 19) / 2.0) ** 2))
        )
        return self.visitor_peak_per_h * shape * self.surge_factor

    def advance(self, t_ms: int, dt_s: float) -> list[DeviceMessage]:
        if int((t_ms / 3_600_000 + self.utc_offset_h) // 24) != self._day:
            self._plan_day(t_ms)
        passages = self._passages(t_ms, dt_s)
        messages: list[DeviceMessage] = []
        for when, direction in sorted(passages):
            messages.extend(self._pass(when, direction))
        end_ms = t_ms + int(dt_s * 1000)
        for gate in self.gates.values():
            if gate.report_now:
                gate.report_now = False
                messages.append(gate.state(t_ms))
            closes = gate.close_at_ms
            if closes is not None and closes < end_ms and not gate.stuck_open:
                gate.barrier_open, gate.close_at_ms = False, None
                # an arm held up by a fault comes down when it is freed, not in the past
                messages.append(gate.state(max(closes, t_ms)))
        messages.extend(self._periodic(t_ms))
        return sorted(messages, key=lambda m: m.t_ms)

    def _passages(self, t_ms: int, dt_s: float) -> list[tuple[int, str]]:
        rng = self.rng
        h0 = hour_of_day(t_ms, self.utc_offset_h)
        h1 = h0 + dt_s / 3600.0
        out: list[tuple[int, str]] = []

        def at() -> int:
            return t_ms + int(rng.random() * dt_s * 1000)

        for i in self._due(h0, h1):
            r = self._regs[i]
            if r.present and h0 <= r.leave_h < h1:
                out.append((at(), "out"))
                r.present = False
            elif not r.present and h0 <= r.return_h < h1:
                out.append((at(), "in"))
                r.present = True
        for _ in range(_poisson(rng, self.visitor_rate_per_h(h0) * dt_s / 3600.0)):
            when = at()
            out.append((when, "in"))
            stay_h = rng.lognormvariate(math.log(1.2), 0.7)
            heapq.heappush(self._visitor_exits, when + int(stay_h * 3_600_000))
        end = t_ms + int(dt_s * 1000)
        while self._visitor_exits and self._visitor_exits[0] < end:
            out.append((max(t_ms, heapq.heappop(self._visitor_exits)), "out"))
        return out

    def _due(self, h0: float, h1: float) -> list[int]:
        """The travelling regulars leaving or returning in [h0, h1), in their order: a
        step is seconds, a day's regulars hundreds, so most steps have none."""
        due: set[int] = set()
        for hours in (self._leaving, self._returning):
            lo, hi = bisect_left(hours, (h0,)), bisect_left(hours, (h1,))
            due.update(i for _, i in hours[lo:hi])
        return sorted(due)

    def _pass(self, when: int, direction: str) -> list[DeviceMessage]:
        if direction == "in" and self.occupied >= self.capacity:
            self.turned_away += 1
            return []
        if direction == "out" and self.occupied <= 0:
            return []
        h = hour_of_day(when, self.utc_offset_h)
        lanes = [
            g
            for g in self.gates.values()
            if direction in g.lanes and not g.is_closed_at(h) and not g.fault
        ]
        if not lanes:
            return []
        gate = self.rng.choice(lanes)
        self.occupied += 1 if direction == "in" else -1
        if direction == "in":
            gate.count_in += 1
        else:
            gate.count_out += 1
        gate.barrier_open = True
        gate.close_at_ms = when + int(BARRIER_OPEN_S * 1000)
        plate = f"云{self.rng.choice(PLATE_LETTERS)}·{self.rng.randrange(10000, 99999)}"
        return [
            DeviceMessage(
                when, gate.id, "event", {"ts": when, "direction": direction, "plate": plate}
            ),
            gate.state(when),
            self._occupancy(when),
        ]

    def _occupancy(self, t_ms: int) -> DeviceMessage:
        self._last_occupancy = self.occupied
        return DeviceMessage(
            t_ms,
            self.lot_id,
            "occupancy",
            {
                "ts": t_ms,
                "occupied": self.occupied,
                "capacity": self.capacity,
                "free": self.capacity - self.occupied,
                "full": self.occupied >= self.capacity,
            },
        )

    def _periodic(self, t_ms: int) -> list[DeviceMessage]:
        if t_ms - self._last_report_ms < REPORT_EVERY_S * 1000:
            return []
        self._last_report_ms = t_ms
        out = [self._occupancy(t_ms)]
        for gate in self.gates.values():
            out.append(gate.state(t_ms))
            out.append(
                DeviceMessage(
                    t_ms,
                    gate.id,
                    "heartbeat",
                    {"ts": t_ms, "uptime_s": (t_ms - gate.started_ms) // 1000},
                )
            )
        return out


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: fine for the small means of one simulation step."""
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
