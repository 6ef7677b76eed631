"""Asset kinds, described as data: what a kind of equipment is to the platform.

One YAML file per kind (`facility/kinds/`, and a site folder's own `kinds/`, which may
add kinds or replace built-in ones by id). A kind names the InfluxDB measurement its
assets' readings go to (its id), the ratings an asset of the kind must carry, and the
role each of its usual signals plays: the boards, reports and rules find a flow, an
energy counter or a run state by role, whatever the signal is called. A profile may
give a signal its role itself (`role:` on the signal); that wins over the kind's.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from facility.site import Ratings

KIND_PATTERN = r"^[a-z][a-z0-9_]*$"


class Role(StrEnum):
    """What a signal means to the rest of the platform (docs/site-model.md, Kinds)."""

    LEVEL = "level"  # a liquid level (m)
    VOLUME = "volume"  # water held (m3)
    FLOW = "flow"  # a rate of flow (m3/h, L/s, …): integrated into water delivered
    PRESSURE = "pressure"
    POWER = "power"  # active power (kW, W, MW): integrated into energy when no counter
    ENERGY_COUNTER = "energy_counter"  # a cumulative energy register (kWh, Wh, MWh)
    VOLUME_COUNTER = "volume_counter"  # a cumulative volume totaliser (m3, L)
    RUNNING = "running"  # true while the equipment runs: run hours
    FAULT = "fault"  # true (or a non-zero code) while the equipment is faulted
    COMM = "comm"  # the device's own communication state
    TEMPERATURE = "temperature"
    CURRENT = "current"
    VOLTAGE = "voltage"
    FREQUENCY = "frequency"
    LOAD = "load"  # a percentage of a rating
    CONCENTRATION = "concentration"  # an analyte (chlorine, turbidity, …)
    POSITION = "position"  # how open (valves, gates): % or open/closed
    OCCUPANCY = "occupancy"
    COUNTER = "counter"  # any other cumulative count (starts, vehicles)


# Units a role's figures are computed in, and the factor from each unit a profile may
# give (unit → multiply by this to get the report unit).
REPORT_UNITS: dict[Role, tuple[str, dict[str, float]]] = {
    Role.FLOW: ("m3/h", {"m3/h": 1.0, "m³/h": 1.0, "L/s": 3.6, "l/s": 3.6, "m3/s": 3600.0,
                         "L/min": 0.06, "l/min": 0.06}),
    Role.VOLUME_COUNTER: ("m3", {"m3": 1.0, "m³": 1.0, "L": 0.001, "l": 0.001}),
    Role.POWER: ("kW", {"kW": 1.0, "W": 0.001, "MW": 1000.0}),
    Role.ENERGY_COUNTER: ("kWh", {"kWh": 1.0, "Wh": 0.001, "MWh": 1000.0}),
}  # fmt: skip

# Measurements the platform writes itself: no kind may take their name.
RESERVED_MEASUREMENTS = frozenset(
    {
        "device_status",
        "gateway_health",
        "ingest_health",
        "alarm_event",
        "alarm_kpi",
        "alarm_kpi_position",
    }
)


class Kind(BaseModel):
    """One kind of asset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(pattern=KIND_PATTERN, max_length=64)  # also the measurement
    name: str = Field(min_length=1)  # how boards and reports call it
    description: str = ""
    ratings: list[str] = Field(default_factory=list)  # ratings every asset must carry
    roles: dict[str, Role] = Field(default_factory=dict)  # signal name → role
    polled: bool = True  # False: no device (a gateway), so no profile

    @field_validator("kind")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_MEASUREMENTS:
            raise ValueError(f"{value!r} is a measurement the platform writes itself")
        return value

    @field_validator("ratings")
    @classmethod
    def _known_ratings(cls, value: list[str]) -> list[str]:
        known = set(Ratings.model_fields)
        for name in value:
            if name not in known:
                raise ValueError(f"no rating {name!r} (known: {', '.join(sorted(known))})")
        return value


def report_factor(role: Role, unit: str) -> float | None:
    """Factor from `unit` to the unit the reports count `role` in (None: unknown unit;
    1.0 for roles the reports do not convert)."""
    if role not in REPORT_UNITS:
        return 1.0
    return REPORT_UNITS[role][1].get(unit)
