"""One evaluator per rule kind, chosen once when the engine binds a rule.

The engine gives every bound rule its evaluator when it is built (`evaluator_for`), so a
reading costs one method call on the rule's own evaluator, never a ladder of type checks.
An evaluator knows three things about its kind: the raw condition on an asset's latest
values (`condition`), the kind's own words for a raise and a clear when the rule has no
message template or a value it names is missing (`raise_words`, `clear_words`), and a few
traits the engine schedules by (`reads_status`, `takes_backlog`, `deadman`). It keeps
what its kind remembers between readings (a rate's minute of readings, a flatline's value
and since when), one evaluator per rule on one asset.

Adding a rule kind is one model in `rules.py` (in the `Rule` union) and one subclass of
`Evaluator` here registered with `@evaluates(TheModel)`; docs/alarms.md ("Adding a rule
kind") says what else a kind may want.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from facility.wire import Value
from ingest.alarms.expressions import Test
from ingest.alarms.rules import (
    Bound,
    ConditionRule,
    DeviceRule,
    GatewayRule,
    RateRule,
    RuleBase,
    SilentRule,
    ThresholdRule,
    UnchangedRule,
)

RATE_WINDOW_MS = 60_000
NUMBER = (int, float)  # built once: `int | float` in an isinstance builds a union each call
LIMIT_WORDS = {
    "limit.high_high": "high-high limit",
    "limit.high": "high limit",
    "limit.low": "low limit",
    "limit.low_low": "low-low limit",
}

# The engine's expression compiler: (parsed expression, the rule) -> a test of the
# asset's values (its truth, or None while it cannot be told: a signal not seen yet).
Compile = Callable[[ast.AST, Bound], Test]


@dataclass
class AssetValues:
    """What the engine knows of one asset: its latest value of each signal and device
    status, each with its acquisition time."""

    values: dict[str, Value] = field(default_factory=dict)
    stamps: dict[str, int] = field(default_factory=dict)
    status: dict[str, Value] = field(default_factory=dict)
    status_stamps: dict[str, int] = field(default_factory=dict)
    newest: int | None = None  # the newest of all the stamps
    past: AssetValues | None = None  # what was known at the last reconnection, plus backlog


@dataclass(frozen=True)
class Context:
    """What an evaluator uses of its engine."""

    compile: Compile
    units: Mapping[tuple[str, str], str]  # (device profile, signal) -> unit


class Evaluator:
    """A rule kind's evaluation on one asset. The defaults suit a kind that tells its
    condition by an expression (`when`): its words are the expression's single name or
    the rule's description."""

    reads_status: ClassVar[bool] = False  # the device status, not values: a device rule
    takes_backlog: ClassVar[bool] = True  # also evaluated on readings older than the newest
    deadman: ClassVar[bool] = False  # run by the engine on silence, never on a reading

    def __init__(self, bound: Bound, context: Context) -> None:
        self.bound = bound
        self._units = context.units

    def condition(self, state: AssetValues, ts: int, active: bool) -> tuple[bool | None, Value]:
        """(raw condition or None when it cannot be told yet, the value it is about)."""
        return None, None

    def raise_words(self, state: AssetValues, ts: int) -> str:
        when = self.bound.when
        if isinstance(when, ast.Expr) and isinstance(when.value, ast.Name):
            return when.value.id.replace("_", " ")  # `when: tripped` says "tripped"
        return self.bound.rule.description.strip() or self.bound.id.replace("_", " ")

    def clear_words(self, state: AssetValues) -> str:
        return f"{self.bound.id.replace('_', ' ')}: back to normal"

    def _unit(self, signal: str) -> str:
        return self._units.get((self.bound.asset.profile or "", signal), "")

    def _spaced_unit(self, signal: str) -> str:
        unit = self._unit(signal)
        return f" {unit}" if unit else ""


EVALUATORS: dict[type[RuleBase], type[Evaluator]] = {}
E = TypeVar("E", bound=type[Evaluator])


def evaluates(model: type[RuleBase]) -> Callable[[E], E]:
    """Registers an evaluator class as the one for a rule model."""

    def register(cls: E) -> E:
        EVALUATORS[model] = cls
        return cls

    return register


def evaluator_for(bound: Bound, context: Context) -> Evaluator:
    kind = EVALUATORS.get(type(bound.rule))
    if kind is None:
        raise TypeError(f"rule {bound.id}: no evaluator for {type(bound.rule).__name__}")
    return kind(bound, context)


@evaluates(ThresholdRule)
class ThresholdEvaluator(Evaluator):
    def __init__(self, bound: Bound, context: Context) -> None:
        super().__init__(bound, context)
        assert isinstance(bound.rule, ThresholdRule)
        self.rule = bound.rule

    def condition(self, state: AssetValues, ts: int, active: bool) -> tuple[bool | None, Value]:
        rule = self.rule
        value = state.values.get(rule.signal)
        level = self.bound.level
        if not isinstance(value, NUMBER) or isinstance(value, bool) or level is None:
            return None, value
        margin = rule.deadband if active else 0.0
        if rule.above is not None:
            return value > level - margin, value
        return value < level + margin, value

    def raise_words(self, state: AssetValues, ts: int) -> str:
        rule, level = self.rule, self.bound.level
        value, unit = state.values.get(rule.signal), self._spaced_unit(rule.signal)
        side, limit = ("above", rule.above) if rule.above is not None else ("below", rule.below)
        return (
            f"{rule.signal} {number_words(value)}{unit}, {side} the "
            f"{LIMIT_WORDS.get(str(limit), 'limit')} {number_words(level)}{unit}"
        )

    def clear_words(self, state: AssetValues) -> str:
        rule, level = self.rule, self.bound.level
        value, unit = state.values.get(rule.signal), self._spaced_unit(rule.signal)
        back, limit = ("below", rule.above) if rule.above is not None else ("above", rule.below)
        return (
            f"{rule.signal} back to {number_words(value)}{unit}, {back} the "
            f"{LIMIT_WORDS.get(str(limit), 'limit')} {number_words(level)}{unit}"
        )


@evaluates(ConditionRule)
class ConditionEvaluator(Evaluator):
    def __init__(self, bound: Bound, context: Context) -> None:
        super().__init__(bound, context)
        assert bound.when is not None
        self.when = context.compile(bound.when, bound)
        self.clear = context.compile(bound.clear, bound) if bound.clear is not None else None

    def condition(self, state: AssetValues, ts: int, active: bool) -> tuple[bool | None, Value]:
        if active and self.clear is not None:
            cleared = self.clear(state.values)
            return (None if cleared is None else not cleared), None
        return self.when(state.values), None


@evaluates(DeviceRule)
class DeviceEvaluator(Evaluator):
    """On the gateway's device status: evaluated before the asset's value rules, which
    it inhibits while active (their values are stale), and its device deadman too."""

    reads_status = True

    def __init__(self, bound: Bound, context: Context) -> None:
        super().__init__(bound, context)
        assert bound.when is not None
        self.when = context.compile(bound.when, bound)

    def condition(self, state: AssetValues, ts: int, active: bool) -> tuple[bool | None, Value]:
        if not state.status:
            return None, None
        # Compiled, the expression costs a third of what remembering the last status
        # and comparing it did (when simpleeval walked it, that memo saved a fifth of a
        # scenario's CPU).
        return self.when(state.status), None


@evaluates(RateRule)
class RateEvaluator(Evaluator):
    """Change per minute between the signal's newest reading and its oldest within the
    last minute. Each reading counts once, at its own acquisition time: another signal
    of the asset arriving does not add a point, and a backlog adds none."""

    takes_backlog = False

    def __init__(self, bound: Bound, context: Context) -> None:
        super().__init__(bound, context)
        assert isinstance(bound.rule, RateRule)
        self.rule = bound.rule
        self.history: deque[tuple[int, float]] = deque()  # (ts, value)
        self.per_min = 0.0  # the last rate measured

    def condition(self, state: AssetValues, ts: int, active: bool) -> tuple[bool | None, Value]:
        rule = self.rule
        value = state.values.get(rule.signal)
        stamp = state.stamps.get(rule.signal)
        if not isinstance(value, NUMBER) or isinstance(value, bool) or stamp is None:
            return None, value
        history = self.history
        if not history or history[-1][0] < stamp:
            history.append((stamp, float(value)))
        while history and ts - history[0][0] > RATE_WINDOW_MS:
            history.popleft()
        if not history or history[-1][0] - history[0][0] < RATE_WINDOW_MS / 2:
            return None, value  # too short a stretch to call it a rate
        (t0, v0), (t1, v1) = history[0], history[-1]
        per_min = self.per_min = (v1 - v0) / ((t1 - t0) / 60_000)
        margin = rule.deadband if active else 0.0
        rise, fall = rule.max_rise_per_min, rule.max_fall_per_min
        rising = rise is not None and per_min > rise - margin
        falling = fall is not None and -per_min > fall - margin
        return rising or falling, value

    def raise_words(self, state: AssetValues, ts: int) -> str:
        return self._rate_words()

    def clear_words(self, state: AssetValues) -> str:
        return f"{self._rate_words()}: back within the limit"

    def _rate_words(self) -> str:
        rule, per_min = self.rule, self.per_min
        unit = self._unit(rule.signal)
        per = f"{unit}/min" if unit else "/min"
        direction, limit = (
            ("rising", rule.max_rise_per_min)
            if per_min >= 0
            else ("falling", rule.max_fall_per_min)
        )
        text = f"{rule.signal} {direction} {abs(per_min):.3g} {per}"
        return text + (f" (limit {limit:g} {per})" if limit is not None else "")


@evaluates(UnchangedRule)
class UnchangedEvaluator(Evaluator):
    """A flatline: the same value since `still_since`, in event time, in order only."""

    takes_backlog = False

    def __init__(self, bound: Bound, context: Context) -> None:
        super().__init__(bound, context)
        assert isinstance(bound.rule, UnchangedRule)
        self.rule = bound.rule
        self.still_since: tuple[Value, int] | None = None  # value, since

    def condition(self, state: AssetValues, ts: int, active: bool) -> tuple[bool | None, Value]:
        value = state.values.get(self.rule.signal)
        if value is None:
            return None, value
        if self.still_since is None or self.still_since[0] != value:
            self.still_since = (value, ts)
        return ts - self.still_since[1] >= self.rule.for_ * 1000, value

    def raise_words(self, state: AssetValues, ts: int) -> str:
        signal = self.rule.signal
        value, unit = state.values.get(signal), self._spaced_unit(signal)
        since = self.still_since[1] if self.still_since else ts
        return f"{signal} stuck at {number_words(value)}{unit} for {duration_words(ts - since)}"

    def clear_words(self, state: AssetValues) -> str:
        signal = self.rule.signal
        value, unit = state.values.get(signal), self._spaced_unit(signal)
        return f"{signal} moving again, now {number_words(value)}{unit}"


@evaluates(GatewayRule)
class GatewayDeadman(Evaluator):
    """Nothing from a gateway for a time, on the wall clock: the engine's `tick`."""

    deadman = True


@evaluates(SilentRule)
class DeviceDeadman(Evaluator):
    """Nothing from a device while its gateway delivers: the engine, per batch."""

    deadman = True


def number_words(value: Value | float | None) -> str:
    return (
        f"{value:g}"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else str(value)
    )


def duration_words(ms: int) -> str:
    """60 s, 5 min, 2 h 10 min: how long, for a person."""
    s = round(ms / 1000)
    if s < 120:
        return f"{s} s"
    if s < 600:
        m, s = divmod(s, 60)
        return f"{m} min {s} s" if s else f"{m} min"
    if s < 7200:
        return f"{round(s / 60)} min"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m} min" if m else f"{h} h"
