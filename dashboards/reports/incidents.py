"""Notable events found in the data itself, not in the alarm book: a report must show
what happened on the plant even where no alarm rule was configured, or it was shelved.

Each kind is a condition on one field, evaluated per minute:
- "any" minutes: the condition was seen at least once in the minute (a trip, a device
  not answering, a full lot, a gateway's uplink down);
- "all" minutes: every reading in the minute met it (a barrier open through the whole
  minute, not just for a car; a transformer above its rating through the minute).
Consecutive minutes make one incident; "all" kinds need `min_minutes` in a row, and
stretches closer together than `gap_minutes` are one incident (a lot full, a car out,
full again: the rule's off-delay keeps its alarm on through that too). The limits (an
overload's %, how long a gate or an overload must last, the off-delay) are the alarm
rules' (`incident_kinds`), per asset, so the report and the alarms agree on what an
incident is; without a rule the demo rules' numbers hold (120 %, 100 % for 15 min,
5 min, a lot full again within 10 min).
A station's gateway health missing for `GATEWAY_SILENCE_MIN` minutes is an outage too.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, replace

from dashboards.reports.data import AssetPath, Influx, Window
from dashboards.reports.periods import Period
from ingest.alarms.readout import Bound, ConditionRule, RuleSet, ThresholdRule

MINUTE_MS = 60_000
GATEWAY_SILENCE_MIN = 5
SILENCE_LOOKBACK_MS = 24 * 3_600_000


@dataclass(frozen=True)
class IncidentKind:
    kind: str
    title: str
    measurement: str
    field: str
    condition: str  # InfluxQL on the field
    whole_minute: bool = False
    min_minutes: int = 1
    gap_minutes: int = 0  # shorter gaps between stretches are bridged (a rule's off-delay)
    chart_fields: tuple[str, ...] = ()  # what the incident's chart plots (default: the field)
    rule: str = ""  # the alarm rule whose limits these mirror (fallbacks without it)
    threshold: float | None = None  # the number in `condition`, for a rule to replace
    only: frozenset[AssetPath] | None = None  # None: every asset not in `besides`
    besides: frozenset[AssetPath] = frozenset()

    def covers(self, path: AssetPath) -> bool:
        return path in self.only if self.only is not None else path not in self.besides


INCIDENT_KINDS: tuple[IncidentKind, ...] = (
    IncidentKind(
        "pump_trip",
        "Pump trip",
        "pump",
        "tripped",
        '"tripped" = true',
        chart_fields=("tripped", "running"),
    ),
    IncidentKind(
        "device_not_responding",
        "Device not responding",
        "device_status",
        "comm_ok",
        '"comm_ok" = false',
    ),
    IncidentKind(
        "gateway_outage",
        "Gateway uplink down",
        "gateway_health",
        "uplink_connected",
        '"uplink_connected" = false',
        chart_fields=("outbox_readings",),
    ),
    # The limits below are fallbacks: `incident_kinds` takes them from the alarm rules.
    IncidentKind(
        "lot_full",
        "Lot full",
        "parking_lot",
        "full",
        '"full" = true',
        gap_minutes=10,
        chart_fields=("occupied",),
        rule="lot_full",
    ),
    IncidentKind(
        "gate_stuck_open",
        "Gate stuck open",
        "barrier_gate",
        "barrier_open",
        '"barrier_open" = true',
        whole_minute=True,
        min_minutes=5,
        rule="gate_stuck_open",
    ),
    IncidentKind(
        "transformer_overload",
        "Transformer overload",
        "transformer",
        "load_pct",
        '"load_pct" > 120',
        rule="transformer_overload",
        threshold=120.0,
    ),
    IncidentKind(
        "transformer_overload",
        "Transformer overload",
        "transformer",
        "load_pct",
        '"load_pct" > 100',
        whole_minute=True,
        min_minutes=15,
        rule="transformer_overload_sustained",
        threshold=100.0,
    ),
)
GATEWAY_SILENT = IncidentKind(
    "gateway_silent",
    "Gateway silent (no health reports)",
    "gateway_health",
    "rss_mb",
    "",
    min_minutes=GATEWAY_SILENCE_MIN,
    chart_fields=("outbox_readings",),
)
TITLES = {k.kind: k.title for k in (*INCIDENT_KINDS, GATEWAY_SILENT)}


@dataclass(frozen=True)
class Incident:
    kind: str
    path: AssetPath
    start_ms: int  # the first minute it was seen
    end_ms: int  # the end of the last minute it was seen
    ongoing: bool  # still so in the report's last minute

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    @property
    def minutes(self) -> int:
        return (self.end_ms - self.start_ms) // MINUTE_MS

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        return self.start_ms < end_ms and start_ms < self.end_ms


def runs(minutes: list[int]) -> list[tuple[int, int]]:
    """Consecutive minute starts merged into [start, end) stretches."""
    out: list[tuple[int, int]] = []
    for t in sorted(set(minutes)):
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], t + MINUTE_MS)
        else:
            out.append((t, t + MINUTE_MS))
    return out


def _minutes(influx: Influx, kind: IncidentKind, window: Window) -> dict[AssetPath, list[int]]:
    count = f'count("{kind.field}")'
    seen = influx.per_asset(kind.measurement, count, window, MINUTE_MS, kind.condition)
    if not kind.whole_minute:
        return {path: [t for t, _ in s] for path, s in seen.items() if kind.covers(path)}
    every = influx.per_asset(kind.measurement, count, window, MINUTE_MS)
    out = {}
    for path, samples in seen.items():
        if not kind.covers(path):
            continue
        totals = dict(every.get(path, []))
        out[path] = [t for t, n in samples if totals.get(t) == n]
    return out


def _silent_minutes(influx: Influx, window: Window) -> dict[AssetPath, list[int]]:
    """Minutes without a single health report, per gateway, from its first report (up to
    a day before the window: a gateway silent since before the shift is an outage, one
    not yet commissioned is not)."""
    since = Window(window.start_ms - SILENCE_LOOKBACK_MS, window.end_ms)
    reported = influx.per_asset("gateway_health", 'count("rss_mb")', since, MINUTE_MS)
    out = {}
    for path, samples in reported.items():
        seen = {t for t, _ in samples}
        first = max(min(seen), window.start_ms - window.start_ms % MINUTE_MS)
        out[path] = [t for t in range(first, window.end_ms, MINUTE_MS) if t not in seen]
    return out


def find_incidents(
    influx: Influx,
    period: Period,
    now_ms: int,
    kinds: tuple[IncidentKind, ...] = INCIDENT_KINDS,
) -> list[Incident]:
    """Every incident overlapping the period up to its `as_of` instant (and not past
    `now_ms`: minutes still to come are not silent gateways)."""
    window = Window(period.start_ms, min(period.as_of_ms, now_ms) - 1)
    found: dict[tuple[str, AssetPath], list[tuple[int, int]]] = {}
    gaps: dict[tuple[str, AssetPath], int] = {}
    for kind in kinds:
        for path, minutes in _minutes(influx, kind, window).items():
            stretches = [r for r in runs(minutes) if (r[1] - r[0]) // MINUTE_MS >= kind.min_minutes]
            found.setdefault((kind.kind, path), []).extend(stretches)
            gaps[(kind.kind, path)] = max(gaps.get((kind.kind, path), 0), kind.gap_minutes)
    for path, minutes in _silent_minutes(influx, window).items():
        stretches = [r for r in runs(minutes) if (r[1] - r[0]) // MINUTE_MS >= GATEWAY_SILENCE_MIN]
        found.setdefault((GATEWAY_SILENT.kind, path), []).extend(stretches)
    last_minute = window.end_ms - window.end_ms % MINUTE_MS
    out = [
        Incident(kind, path, start, end, ongoing=end > last_minute)
        for (kind, path), stretches in found.items()
        for start, end in _merged(stretches, gaps.get((kind, path), 0) * MINUTE_MS)
    ]
    return sorted(out, key=lambda i: (i.start_ms, i.kind, i.path))


def _merged(stretches: list[tuple[int, int]], gap_ms: int = 0) -> list[tuple[int, int]]:
    """Two rules of one kind (overload above 120 % at once, above 100 % for 15 min) may
    find overlapping stretches: one incident each time, not two. Stretches less than
    `gap_ms` apart are one incident too."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(stretches):
        if out and start < out[-1][1] + max(gap_ms, 1):
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def chart_fields(kind: str) -> tuple[str, tuple[str, ...]]:
    """(measurement, fields) an incident's small chart plots."""
    for k in (*INCIDENT_KINDS, GATEWAY_SILENT):
        if k.kind == kind:
            return k.measurement, k.chart_fields or (k.field,)
    raise KeyError(kind)


# -- limits from the alarm rules ---------------------------------------------------------


def incident_kinds(rules: RuleSet | None) -> tuple[IncidentKind, ...]:
    """INCIDENT_KINDS with each rule-backed kind's limits taken from the rule as bound to
    each asset (overrides included). Assets with the same limits share one query; assets
    the rule is not bound to keep the fallback numbers."""
    if rules is None:
        return INCIDENT_KINDS
    out: list[IncidentKind] = []
    for kind in INCIDENT_KINDS:
        out.extend(_from_rule(kind, [b for b in rules.bound if b.id == kind.rule]))
    return tuple(out)


def _from_rule(kind: IncidentKind, bound: list[Bound]) -> list[IncidentKind]:
    if not kind.rule or not bound:
        return [kind]
    groups: dict[tuple[float | None, int, int], set[AssetPath]] = {}
    for b in bound:
        limits = _limits(kind, b)
        if limits is not None:
            groups.setdefault(limits, set()).add((b.site, b.station, b.asset.id))
    out = [
        _with_limits(kind, threshold, minutes, gap, frozenset(paths))
        for (threshold, minutes, gap), paths in sorted(groups.items(), key=str)
    ]
    claimed = frozenset(p for paths in groups.values() for p in paths)
    return [*out, replace(kind, besides=claimed)]  # assets without the rule: fallbacks


def _limits(kind: IncidentKind, b: Bound) -> tuple[float | None, int, int] | None:
    """(threshold, minutes, gap minutes) the rule sets for this asset; None if the rule
    is not of a shape the report can mirror (then the asset keeps the fallbacks)."""
    threshold = kind.threshold
    if kind.threshold is not None:
        threshold = _rule_threshold(kind.field, b)
        if threshold is None:
            return None
    # The rule's on-delay is how long the condition must hold: whole minutes, at least 1;
    # its off-delay how long it must be gone to end (the alarm stays on through less).
    return threshold, max(1, math.ceil(b.rule.on_delay / 60)), math.ceil(b.rule.off_delay / 60)


def _rule_threshold(signal: str, b: Bound) -> float | None:
    """The number of `signal > N` (a condition) or `above: N` (a threshold rule)."""
    rule = b.rule
    if isinstance(rule, ThresholdRule):
        ok = rule.signal == signal and rule.above is not None
        return b.level if ok else None
    if not isinstance(rule, ConditionRule):
        return None
    when = b.when.value if isinstance(b.when, ast.Expr) else b.when
    if not (isinstance(when, ast.Compare) and len(when.ops) == 1):
        return None
    left, op, right = when.left, when.ops[0], when.comparators[0]
    if not (isinstance(left, ast.Name) and left.id == signal and isinstance(op, ast.Gt)):
        return None
    number = right.value if isinstance(right, ast.Constant) else None
    return float(number) if isinstance(number, int | float) else None


def _with_limits(
    kind: IncidentKind,
    threshold: float | None,
    minutes: int,
    gap: int,
    paths: frozenset[AssetPath],
) -> IncidentKind:
    condition = kind.condition
    if threshold is not None:
        condition = f'"{kind.field}" > {threshold!r}'
    return replace(
        kind,
        condition=condition,
        min_minutes=minutes,
        gap_minutes=gap,
        threshold=threshold,
        only=paths,
    )
