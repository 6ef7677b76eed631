"""The stretch of time a report covers, in the site's local time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_HANDOVERS = (time(8, 0), time(20, 0))


@dataclass(frozen=True)
class Period:
    """[start_ms, end_ms) in UTC ms; `as_of_ms` is the instant the report describes
    (the end, or earlier for a shift still running)."""

    start_ms: int
    end_ms: int
    tz: ZoneInfo
    title: str
    as_of_ms: int

    @property
    def hours(self) -> float:
        return (self.end_ms - self.start_ms) / 3_600_000

    def local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.tz)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def shift_period(at: datetime, tz: ZoneInfo, handovers: tuple[time, ...]) -> Period:
    """The shift that `at` falls in. A handover instant belongs to the shift it ends, so
    a report run at 08:00 (or by the outgoing person at 07:50) covers 20:00 → 08:00."""
    if not handovers:
        raise ValueError("at least one handover time is needed")
    local = at.astimezone(tz)
    changes = sorted(
        datetime.combine(local.date() + timedelta(days=d), h, tz)
        for d in (-2, -1, 0, 1)
        for h in handovers
    )
    end = next(c for c in changes if c >= local)
    start = max(c for c in changes if c < end)
    as_of = min(local, end)
    title = f"Shift {_fmt(start)} → {end.strftime('%H:%M')}"
    if end.date() != start.date():
        title = f"Shift {_fmt(start)} → {_fmt(end)}"
    return Period(_ms(start), _ms(end), tz, title, _ms(as_of))


def day_period(day: date, tz: ZoneInfo) -> Period:
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return Period(_ms(start), _ms(end), tz, f"Day {day.isoformat()}", _ms(end))


def month_period(year: int, month: int, tz: ZoneInfo) -> Period:
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    start = datetime.combine(first, time(0), tz)
    end = datetime.combine(following, time(0), tz)
    return Period(_ms(start), _ms(end), tz, f"Month {first.strftime('%Y-%m')}", _ms(end))


def days_of(period: Period) -> list[Period]:
    """The calendar days of a period (local midnights, so a DST day has 23 or 25 h)."""
    day = period.local(period.start_ms).date()
    out: list[Period] = []
    while True:
        p = day_period(day, period.tz)
        if p.start_ms >= period.end_ms:
            return out
        out.append(p)
        day += timedelta(days=1)


def parse_handover(text: str) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time of day (HH:MM): {text!r}") from None
