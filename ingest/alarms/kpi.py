"""Alarm-system KPIs as EEMUA 191 and ISA-18.2 measure them, from the alarm book.

EEMUA's alarm rate is per *operator position*: the people who must read and answer
the alarms. Here that is whoever the alarm goes to (`Positions`): an entry of
`alarms.kpi.positions` in the ingest config if one matches, else the crew the
notifier routes the alarm to, else (no notifier, or no route takes it) its site. The
same figures are also kept per site, for the site dashboards. Over a window (default
the last 24 h):

- alarms per 10 minutes: the average over the window's true length (3 alarms in 19
  minutes: 1.58), and the peak over fixed clock intervals (10:00-10:10, ...) so any
  two reports agree (EEMUA: average ≤ 1 "very likely acceptable", ≤ 2
  "manageable"; peak < 10);
- flood periods: 10-minute intervals with more than 10 alarms, and the share of time
  spent in flood (ISA-18.2: < 1 %);
- chattering alarms: raised 3 times or more within one minute;
- stale alarms: standing (active) for more than 24 hours at the window's end;
- priority distribution of raised alarms (EEMUA: about 5 % critical, 15 % high, 80 %
  the rest);
- time to acknowledge: median and 90th percentile.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ingest.alarms.book import AlarmBook, AlarmEvent, Transition
from ingest.alarms.model import AlarmKey, Priority
from ingest.alarms.notify.config import NotifyConfig
from ingest.alarms.notify.dispatch import route_for
from ingest.config import KpiSettings
from ingest.lineproto import FieldValue, encode_point

TEN_MIN_MS = 600_000
DAY_MS = 24 * 3_600_000
FLOOD_ALARMS = 10  # more than this in 10 minutes is a flood
CHATTER_RAISES, CHATTER_WINDOW_MS = 3, 60_000
STALE_MS = DAY_MS
HISTORY_LIMIT = 1_000_000
PER_ALARM_LIMIT = 500  # an active alarm's latest raise is among its newest transitions

SITE_MEASUREMENT = "alarm_kpi"  # tag site: what the dashboards read
POSITION_MEASUREMENT = "alarm_kpi_position"  # tag position: EEMUA's operator position

CrewOf = Callable[[AlarmKey, Priority], str | None]


@dataclass(frozen=True)
class PositionRule:
    """One entry of `alarms.kpi.positions`: alarms whose key matches the globs belong to
    `position`."""

    position: str
    site: tuple[str, ...] = ("*",)
    station: tuple[str, ...] = ("*",)
    asset: tuple[str, ...] = ("*",)
    rule: tuple[str, ...] = ("*",)

    def matches(self, key: AlarmKey) -> bool:
        return key.matches(self.site, self.station, self.asset, self.rule)


@dataclass(frozen=True)
class Positions:
    """Which operator position an alarm counts for: the first matching `rules` entry,
    else `crew_of` (the notifier's routing), else the alarm's site. `known` are the
    positions reported even when quiet, so a dashboard shows their zeros rather than
    an old figure."""

    rules: tuple[PositionRule, ...] = ()
    crew_of: CrewOf | None = None
    known: tuple[str, ...] = ()

    def __call__(self, key: AlarmKey, priority: Priority) -> str:
        for rule in self.rules:
            if rule.matches(key):
                return rule.position
        if self.crew_of is not None:
            crew = self.crew_of(key, priority)
            if crew is not None:
                return crew
        return key.site

    @property
    def basis(self) -> str:
        found = ["alarms.kpi.positions"] if self.rules else []
        if self.crew_of is not None:
            found.append("the crew the notifier routes to")
        return ", else ".join([*found, "the site"])


def positions_for(
    settings: KpiSettings, notify: NotifyConfig | None, site_ids: Sequence[str]
) -> Positions:
    """EEMUA's operator positions as the ingest service counts them (and the simulated
    history, so its boards show what a real one would): `alarms.kpi.positions` first,
    then the crew `notify` routes an alarm to, then the site. The known positions are
    the named ones and every routed crew, or the sites when nothing is routed."""
    rules = tuple(
        PositionRule(
            p.position,
            _globs(p.match.site),
            _globs(p.match.station),
            _globs(p.match.asset),
            _globs(p.match.rule),
        )
        for p in settings.positions
    )
    named = [r.position for r in rules]
    if notify is None:
        return Positions(rules, None, tuple(dict.fromkeys([*named, *site_ids])))
    routes = [*notify.routes, *([notify.default_route] if notify.default_route else [])]
    crews = [r.crew for r in routes]
    return Positions(rules, _crew_of(notify), tuple(dict.fromkeys([*named, *crews])))


def _globs(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _crew_of(notify: NotifyConfig) -> CrewOf:
    def crew_of(key: AlarmKey, priority: Priority) -> str | None:
        route = route_for(notify, key, priority)
        return route.crew if route is not None else None

    return crew_of


@dataclass
class PositionKpis:
    """The figures of one operator position (or of one site, in `AlarmKpis.sites`)."""

    position: str
    alarms: int = 0
    per_10min_average: float = 0.0
    per_10min_peak: int = 0
    flood_periods: int = 0
    time_in_flood_pct: float = 0.0
    chattering: int = 0
    stale: int = 0
    raised: dict[str, int] = field(default_factory=lambda: {p.value: 0 for p in Priority})
    acknowledged: int = 0
    ack_median_s: float | None = None
    ack_p90_s: float | None = None


@dataclass
class AlarmKpis:
    since_ms: int
    until_ms: int
    alarms: int
    position_basis: str
    positions: list[PositionKpis]
    sites: list[PositionKpis]
    priorities: dict[str, int]
    priority_pct: dict[str, float]
    chattering: list[str]
    stale: list[str]
    acknowledged: int
    ack_median_s: float | None
    ack_p90_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Facts:
    """What the figures are made of, each with the key and priority to group it by."""

    since_ms: int
    until_ms: int
    raises: list[Transition]
    acks: list[tuple[Transition, float]]  # (the raise, seconds until acknowledged)
    chattering: dict[AlarmKey, Priority]
    stale: dict[AlarmKey, Priority]


def compute(
    book: AlarmBook,
    until_ms: int,
    window_ms: int = DAY_MS,
    positions: Positions | None = None,
    sites: Sequence[str] = (),
) -> AlarmKpis:
    """The KPIs of the window ending at `until_ms`; `sites` are reported even when
    quiet (as `positions.known` are)."""
    if window_ms <= 0:
        raise ValueError(f"the window must be longer than 0 ms, not {window_ms}")
    position_of = positions or Positions()
    since = until_ms - window_ms
    history = book.history(since_ms=since, until_ms=until_ms, limit=HISTORY_LIMIT)
    raises = [t for t in history if t.event is AlarmEvent.RAISED]
    facts = _Facts(
        since, until_ms, raises, _ack_times(history), _chattering(raises), _stale_at(book, until_ms)
    )
    overall = _group("all", facts)
    return AlarmKpis(
        since_ms=since,
        until_ms=until_ms,
        alarms=overall.alarms,
        position_basis=position_of.basis,
        positions=_grouped(facts, position_of, position_of.known),
        sites=_grouped(facts, _site, sites),
        priorities=overall.raised,
        priority_pct={p: _pct(n, overall.alarms) for p, n in overall.raised.items()},
        chattering=sorted(str(k) for k in facts.chattering),
        stale=sorted(str(k) for k in facts.stale),
        acknowledged=overall.acknowledged,
        ack_median_s=overall.ack_median_s,
        ack_p90_s=overall.ack_p90_s,
    )


def _site(key: AlarmKey, priority: Priority) -> str:
    return key.site


def _grouped(
    facts: _Facts, group_of: Callable[[AlarmKey, Priority], str], always: Iterable[str]
) -> list[PositionKpis]:
    names = set(always)
    names |= {group_of(t.key, t.priority) for t in facts.raises}
    names |= {group_of(k, p) for k, p in (*facts.chattering.items(), *facts.stale.items())}
    return [_group(name, facts, group_of) for name in sorted(names)]


def _group(
    name: str, facts: _Facts, group_of: Callable[[AlarmKey, Priority], str] | None = None
) -> PositionKpis:
    def mine(key: AlarmKey, priority: Priority) -> bool:
        return group_of is None or group_of(key, priority) == name

    raises = [t for t in facts.raises if mine(t.key, t.priority)]
    acks = [s for t, s in facts.acks if mine(t.key, t.priority)]
    # The window's true length in 10-minute periods: its alarms are counted to the
    # millisecond, so whole periods alone would overstate a 19-minute window's rate.
    periods = (facts.until_ms - facts.since_ms) / TEN_MIN_MS
    # Fixed clock intervals (10:00-10:10, ...), not ones counted from the window's start:
    # the same alarms give the same peak and floods whenever the window is asked for.
    buckets = Counter(t.at_ms // TEN_MIN_MS for t in raises)
    floods = sum(1 for n in buckets.values() if n > FLOOD_ALARMS)
    priorities = Counter(t.priority.value for t in raises)
    return PositionKpis(
        position=name,
        alarms=len(raises),
        per_10min_average=round(len(raises) / periods, 3),
        per_10min_peak=max(buckets.values(), default=0),
        flood_periods=floods,
        time_in_flood_pct=min(100.0, _pct(floods, periods)),
        chattering=sum(1 for k, p in facts.chattering.items() if mine(k, p)),
        stale=sum(1 for k, p in facts.stale.items() if mine(k, p)),
        raised={p.value: priorities.get(p.value, 0) for p in Priority},
        acknowledged=len(acks),
        ack_median_s=float(statistics.median(acks)) if acks else None,
        ack_p90_s=_percentile(acks, 0.9),
    )


def _chattering(raises: list[Transition]) -> dict[AlarmKey, Priority]:
    by_key: dict[AlarmKey, list[Transition]] = defaultdict(list)
    for t in raises:
        by_key[t.key].append(t)
    found = {}
    for key, ts in by_key.items():
        times = sorted(t.at_ms for t in ts)
        for i in range(len(times) - CHATTER_RAISES + 1):
            if times[i + CHATTER_RAISES - 1] - times[i] <= CHATTER_WINDOW_MS:
                found[key] = ts[-1].priority
                break
    return found


def _ack_times(history: list[Transition]) -> list[tuple[Transition, float]]:
    raised: dict[AlarmKey, Transition] = {}
    out = []
    for t in history:
        if t.event is AlarmEvent.RAISED:
            raised[t.key] = t
        elif t.event is AlarmEvent.ACKNOWLEDGED and t.key in raised:
            start = raised.pop(t.key)
            out.append((start, max(0, t.at_ms - start.at_ms) / 1000))
    return out


def _stale_at(book: AlarmBook, at_ms: int) -> dict[AlarmKey, Priority]:
    """Alarms whose condition was active at `at_ms` and had been for over STALE_MS, as
    of then (a report on last month lists last month's stale alarms, not today's). One
    active then is active now or has changed since, so only those histories are read."""
    keys = {a.key for a in book.active()}
    keys |= {t.key for t in book.history(since_ms=at_ms + 1, limit=HISTORY_LIMIT)}
    stale = {}
    for key in keys:
        # at_ms included, like the report's `standing_at`: newest first is enough here.
        history = book.history(key=key, until_ms=at_ms + 1, limit=PER_ALARM_LIMIT)
        if history and history[-1].active and _stale(_raised_ms(history), at_ms):
            stale[key] = history[-1].priority
    return stale


def _raised_ms(history: list[Transition]) -> int | None:
    """When the latest raise (shown or suppressed) happened: the alarm's `raised_ms`."""
    for t in reversed(history):
        if t.event in (AlarmEvent.RAISED, AlarmEvent.SUPPRESSED):
            return t.at_ms
    return None


def _stale(raised_ms: int | None, now_ms: int) -> bool:
    return raised_ms is not None and now_ms - raised_ms > STALE_MS


def _pct(part: int, whole: float) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def kpi_lines(kpis: AlarmKpis) -> list[str]:
    """`alarm_kpi` points (tag site) and `alarm_kpi_position` points (tag position),
    stamped with the window's end. A field keeps one type for ever (InfluxDB refuses a
    float where it stored an int): counts are ints, rates and times floats, and a time
    to acknowledge with nothing acknowledged is left out rather than written as 0."""
    lines = [
        encode_point(SITE_MEASUREMENT, {"site": s.position}, _fields(s), kpis.until_ms)
        for s in kpis.sites
    ]
    lines += [
        encode_point(POSITION_MEASUREMENT, {"position": p.position}, _fields(p), kpis.until_ms)
        for p in kpis.positions
    ]
    return lines


def _fields(k: PositionKpis) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {
        "alarms": int(k.alarms),
        "per_10min_average": float(k.per_10min_average),
        "per_10min_peak": int(k.per_10min_peak),
        "flood_periods": int(k.flood_periods),
        "time_in_flood_pct": float(k.time_in_flood_pct),
        "chattering": int(k.chattering),
        "stale": int(k.stale),
        **{f"raised_{p.value}": int(k.raised.get(p.value, 0)) for p in Priority},
        "acknowledged": int(k.acknowledged),
    }
    if k.ack_median_s is not None:
        fields["ack_median_s"] = float(k.ack_median_s)
    if k.ack_p90_s is not None:
        fields["ack_p90_s"] = float(k.ack_p90_s)
    return fields
