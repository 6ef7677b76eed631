"""How a simulated device without physics makes up its signals: generator specs as data.

A device type's profile may give each signal a `simulate:` block (its typical
behaviour), and an asset in a site file may override any of them (`simulate:` maps
signal names to blocks). The simulator (`simulators/generator.py`) runs them; this
module only says what may be written, so `facility check` can name file, line and field.

    simulate: {kind: constant, value: 0}
    simulate: {kind: sine, mean: 230, amplitude: 3, period: 24h, phase: 6h, noise: 0.3}
    simulate: {kind: random_walk, start: 4.2, min: 3.6, max: 4.8, step: 0.02}
    simulate: {kind: counter, rate_per_h: 12.5, start: 1000}
    simulate: {kind: counter, integral_of: power_kw, start: 18250}
    simulate: {kind: state, values: [false, true], mean_dwell: [30d, 5m]}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from facility.durations import parse_duration

GeneratedValue = bool | int | float | str


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _seconds(v: Any) -> float:
    return parse_duration(v)


class ConstantSpec(_Spec):
    """Always the same value (a setting, a model number, a status that never changes)."""

    kind: Literal["constant"]
    value: GeneratedValue


class SineSpec(_Spec):
    """mean + amplitude * sin(2 pi (t - phase) / period) + gaussian noise."""

    kind: Literal["sine"]
    mean: float
    amplitude: float
    period_s: float = Field(alias="period", gt=0)
    phase_s: float = Field(default=0.0, alias="phase")
    noise: float = Field(default=0.0, ge=0)  # standard deviation of each sample

    _duration = field_validator("period_s", "phase_s", mode="before")(_seconds)


class RandomWalkSpec(_Spec):
    """A value that wanders inside [min, max]: `step` is its standard deviation per minute."""

    kind: Literal["random_walk"]
    min: float
    max: float
    start: float | None = None  # default: the middle of the range
    step: float = Field(gt=0)

    @model_validator(mode="after")
    def _range(self) -> RandomWalkSpec:
        if self.min >= self.max:
            raise ValueError("min must be below max")
        if self.start is not None and not self.min <= self.start <= self.max:
            raise ValueError("start must lie within [min, max]")
        return self


class CounterSpec(_Spec):
    """A running total: `rate_per_h` a constant rate, or `integral_of` another signal of
    the device read as a rate per hour (kW -> kWh, m3/h -> m3). Never decreases."""

    kind: Literal["counter"]
    start: float = Field(default=0.0, ge=0)
    rate_per_h: float | None = Field(default=None, ge=0)
    integral_of: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CounterSpec:
        if (self.rate_per_h is None) == (self.integral_of is None):
            raise ValueError("a counter needs exactly one of rate_per_h and integral_of")
        return self


class StateSpec(_Spec):
    """A state that changes now and then: it stays in each of `values` for an
    exponentially distributed time with its `mean_dwell`, then moves to another."""

    kind: Literal["state"]
    values: list[GeneratedValue] = Field(min_length=1)
    mean_dwell_s: list[float] = Field(alias="mean_dwell")  # one, or one per value

    @field_validator("mean_dwell_s", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> list[float]:
        items = v if isinstance(v, list) else [v]
        return [parse_duration(x) for x in items]

    @model_validator(mode="after")
    def _dwell_per_value(self) -> StateSpec:
        if len(self.mean_dwell_s) not in (1, len(self.values)):
            raise ValueError("mean_dwell: one duration, or one per value")
        if any(d <= 0 for d in self.mean_dwell_s):
            raise ValueError("mean_dwell must be positive")
        return self

    def dwell_s(self, index: int) -> float:
        return self.mean_dwell_s[index if len(self.mean_dwell_s) > 1 else 0]


SignalSim = Annotated[
    ConstantSpec | SineSpec | RandomWalkSpec | CounterSpec | StateSpec,
    Field(discriminator="kind"),
]


def spec_problems(
    specs: dict[str, Any], signals: dict[str, str]
) -> list[tuple[list[str | int], str]]:
    """What is wrong with `specs` (signal -> spec) for a device whose `signals` map each
    name to its type; as (path below the specs, message) pairs for `facility check`."""
    problems: list[tuple[list[str | int], str]] = []
    numeric = {n for n, t in signals.items() if t not in ("bool", "bit", "string")}
    for name, spec in specs.items():
        if name not in signals:
            problems.append(([name], f"no signal {name!r} in the profile"))
            continue
        if isinstance(spec, CounterSpec | SineSpec | RandomWalkSpec) and name not in numeric:
            problems.append(([name, "kind"], f"a {spec.kind} needs a numeric signal"))
        wrong = [v for v in _given_values(spec) if not _fits(v, signals[name])]
        if wrong:
            problems.append(([name], f"{wrong[0]!r} is not a {signals[name]} value"))
        source = spec.integral_of if isinstance(spec, CounterSpec) else None
        if source is not None and (source not in numeric or source == name):
            problems.append(([name, "integral_of"], f"{source!r} is not another numeric signal"))
    return problems


def _given_values(spec: Any) -> list[GeneratedValue]:
    if isinstance(spec, ConstantSpec):
        return [spec.value]
    if isinstance(spec, StateSpec):
        return list(spec.values)
    return []


def _fits(value: GeneratedValue, data_type: str) -> bool:
    """Whether a constant or a state suits the signal's type (bool for switches, text
    for strings, numbers for the rest)."""
    if data_type in ("bool", "bit"):
        return isinstance(value, bool)
    if data_type == "string":
        return isinstance(value, str)
    return isinstance(value, int | float) and not isinstance(value, bool)
