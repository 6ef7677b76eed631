"""Alarm-system KPIs as EEMUA 191 and ISA-18.2 measure them, from the alarm book.

An operator position here is a site: each site's alarms go to one crew, the unit the
alarm rate is about. Figures over a window (default the last 24 h):

- alarms per 10 minutes per position: average and peak (EEMUA: average ≤ 1 "very
  likely acceptable", ≤ 2 "manageable"; peak < 10);
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
from dataclasses import asdict, dataclass
from typing import Any

from ingest.alarms.book import AlarmBook, AlarmEvent, Transition
from ingest.alarms.model import AlarmKey, Priority
from ingest.lineproto import encode_point

TEN_MIN_MS = 600_000
FLOOD_ALARMS = 10  # more than this in 10 minutes is a flood
CHATTER_RAISES, CHATTER_WINDOW_MS = 3, 60_000
STALE_MS = 24 * 3_600_000
HISTORY_LIMIT = 1_000_000
PER_ALARM_LIMIT = 500  # an active alarm's latest raise is among its newest transitions


@dataclass
class PositionKpis:
    position: str
    alarms: int = 0
    per_10min_average: float = 0.0
    per_10min_peak: int = 0
    flood_periods: int = 0
    time_in_flood_pct: float = 0.0


@dataclass
class AlarmKpis:
    since_ms: int
    until_ms: int
    alarms: int
    positions: list[PositionKpis]
    priorities: dict[str, int]
    priority_pct: dict[str, float]
    chattering: list[str]
    stale: list[str]
    acknowledged: int
    ack_median_s: float | None
    ack_p90_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute(book: AlarmBook, until_ms: int, window_ms: int = 24 * 3_600_000) -> AlarmKpis:
    since = until_ms - window_ms
    history = book.history(since_ms=since, until_ms=until_ms, limit=1_000_000)
    raises = [t for t in history if t.event is AlarmEvent.RAISED]
    ack_s = _ack_times(history)
    priorities = Counter(t.priority.value for t in raises)
    total = len(raises)
    return AlarmKpis(
        since_ms=since,
        until_ms=until_ms,
        alarms=total,
        positions=_positions(raises, since, until_ms),
        priorities={p.value: priorities.get(p.value, 0) for p in Priority},
        priority_pct={p.value: _pct(priorities.get(p.value, 0), total) for p in Priority},
        chattering=sorted(_chattering(raises)),
        stale=_stale_at(book, until_ms),
        acknowledged=len(ack_s),
        ack_median_s=statistics.median(ack_s) if ack_s else None,
        ack_p90_s=_percentile(ack_s, 0.9),
    )


def _positions(raises: list[Transition], since: int, until: int) -> list[PositionKpis]:
    intervals = max(1, (until - since) // TEN_MIN_MS)
    by_site: dict[str, Counter[int]] = defaultdict(Counter)
    for t in raises:
        by_site[t.key.site][(t.at_ms - since) // TEN_MIN_MS] += 1
    out = []
    for site, buckets in sorted(by_site.items()):
        floods = sum(1 for n in buckets.values() if n > FLOOD_ALARMS)
        out.append(
            PositionKpis(
                position=site,
                alarms=sum(buckets.values()),
                per_10min_average=round(sum(buckets.values()) / intervals, 3),
                per_10min_peak=max(buckets.values()),
                flood_periods=floods,
                time_in_flood_pct=_pct(floods, intervals),
            )
        )
    return out


def _chattering(raises: list[Transition]) -> set[str]:
    by_key: dict[AlarmKey, list[int]] = defaultdict(list)
    for t in raises:
        by_key[t.key].append(t.at_ms)
    found = set()
    for key, times in by_key.items():
        times.sort()
        for i in range(len(times) - CHATTER_RAISES + 1):
            if times[i + CHATTER_RAISES - 1] - times[i] <= CHATTER_WINDOW_MS:
                found.add(str(key))
                break
    return found


def _ack_times(history: list[Transition]) -> list[float]:
    raised_at: dict[AlarmKey, int] = {}
    out = []
    for t in history:
        if t.event is AlarmEvent.RAISED:
            raised_at[t.key] = t.at_ms
        elif t.event is AlarmEvent.ACKNOWLEDGED and t.key in raised_at:
            out.append(max(0, t.at_ms - raised_at.pop(t.key)) / 1000)
    return out


def _stale_at(book: AlarmBook, at_ms: int) -> list[str]:
    """Alarms whose condition was active at `at_ms` and had been for over STALE_MS, as
    of then (a report on last month lists last month's stale alarms, not today's). One
    active then is active now or has changed since, so only those histories are read."""
    keys = {a.key for a in book.active()}
    keys |= {t.key for t in book.history(since_ms=at_ms + 1, limit=HISTORY_LIMIT)}
    stale = []
    for key in keys:
        # at_ms included, like the report's `standing_at`: newest first is enough here.
        history = book.history(key=key, until_ms=at_ms + 1, limit=PER_ALARM_LIMIT)
        if history and history[-1].active and _stale(_raised_ms(history), at_ms):
            stale.append(str(key))
    return sorted(stale)


def _raised_ms(history: list[Transition]) -> int | None:
    """When the latest raise (shown or suppressed) happened: the alarm's `raised_ms`."""
    for t in reversed(history):
        if t.event in (AlarmEvent.RAISED, AlarmEvent.SUPPRESSED):
            return t.at_ms
    return None


def _stale(raised_ms: int | None, now_ms: int) -> bool:
    return raised_ms is not None and now_ms - raised_ms > STALE_MS


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def kpi_lines(kpis: AlarmKpis) -> list[str]:
    """`alarm_kpi` points, one per position, stamped with the window's end."""
    lines = []
    for p in kpis.positions:
        fields: dict[str, float | int] = {
            "alarms": p.alarms,
            "per_10min_average": float(p.per_10min_average),
            "per_10min_peak": p.per_10min_peak,
            "flood_periods": p.flood_periods,
            "time_in_flood_pct": float(p.time_in_flood_pct),
            "chattering": sum(1 for c in kpis.chattering if c.startswith(p.position + "/")),
            "stale": sum(1 for s in kpis.stale if s.startswith(p.position + "/")),
        }
        lines.append(encode_point("alarm_kpi", {"site": p.position}, fields, kpis.until_ms))
    return lines
