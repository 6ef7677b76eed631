"""Grafana's expansion of InfluxQL text, for running the boards' queries outside Grafana.

Mirrors what Grafana 10 does before a raw InfluxQL query leaves for InfluxDB:
`$timeFilter` becomes `time >= <from>ms and time <= <to>ms`; `$__interval` comes from
the range divided by the panel's max data points, rounded the way Grafana rounds
(`rangeutil.roundInterval`), and is never below the panel's min interval; template
variables are replaced, multi-value and "All" ones in the InfluxQL regex form `(a|b)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Grafana's roundInterval: (upper bound exclusive, rounded value), both in ms.
_ROUNDING: tuple[tuple[int, int], ...] = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000),
    (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000),
    (45_000, 30_000), (90_000, 60_000), (150_000, 120_000), (210_000, 180_000),
    (450_000, 300_000), (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000),
    (2_700_000, 1_800_000), (5_400_000, 3_600_000), (9_000_000, 7_200_000),
    (16_200_000, 10_800_000), (32_400_000, 21_600_000), (86_400_000, 43_200_000),
    (604_800_000, 86_400_000), (1_814_400_000, 604_800_000), (3_628_800_000, 2_592_000_000),
)  # fmt: skip
_YEAR_MS = 31_536_000_000
_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_HMS = (("y", _YEAR_MS), ("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000),
        ("m", 60_000), ("s", 1_000))  # fmt: skip


def round_interval(ms: float) -> int:
    for bound, rounded in _ROUNDING:
        if ms < bound:
            return rounded
    return _YEAR_MS


def interval_to_ms(text: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip())
    if match is None:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return int(match[1]) * _UNITS_MS[match[2]]


def ms_to_text(ms: int) -> str:
    """Grafana's secondsToHms for whole intervals: 60000 -> 1m, 500 -> 500ms."""
    for unit, size in _HMS:
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def calculate_interval_ms(from_ms: int, to_ms: int, max_data_points: int, min_interval: str) -> int:
    interval = round_interval((to_ms - from_ms) / max_data_points)
    return max(interval, interval_to_ms(min_interval)) if min_interval else interval


@dataclass(frozen=True)
class Variable:
    """A template variable's current selection."""

    values: Sequence[str]
    multi: bool = False  # multi-value or "All": Grafana formats it as a regex group

    def format(self) -> str:
        if not self.multi:
            return self.values[0]
        escaped = [re.sub(r"([\\^$*+?.()|{}\[\]/])", r"\\\1", v) for v in self.values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(
    query: str,
    variables: Mapping[str, Variable],
    from_ms: int,
    to_ms: int,
    interval_ms: int,
) -> str:
    """The query as Grafana would send it; an unknown `$name` is an error here, where
    Grafana would send it as typed and InfluxDB would refuse it."""
    builtins = {
        "timeFilter": f"time >= {from_ms}ms and time <= {to_ms}ms",
        "__interval": ms_to_text(interval_ms),
        "__interval_ms": str(interval_ms),
        "__from": str(from_ms),
        "__to": str(to_ms),
        "__range_s": str((to_ms - from_ms) // 1000),
        "__range_ms": str(to_ms - from_ms),
    }

    def one(match: re.Match[str]) -> str:
        name = match["a"] or match["b"] or match["c"]
        if name in builtins:
            return builtins[name]
        if name not in variables:
            raise KeyError(f"unknown variable ${name} in {query!r}")
        return variables[name].format()

    pattern = r"\$\{(?P<a>\w+)\}|\[\[(?P<b>\w+)\]\]|\$(?P<c>\w+)"
    return re.sub(pattern, one, query)
