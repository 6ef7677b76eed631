"""Who is on duty: 24-hour shifts rotating through a crew, handed over at a local time.

A shift starts at the handover time (e.g. 08:00) in the roster's time zone and lasts
until the next day's handover. Shift number n (counted in local days from the roster's
start date) goes to rotation[n mod len(rotation)]; an override for a day replaces that
day's people (sick leave, a swap). Handovers are instants computed in the roster's zone,
so a shift is 23 or 25 hours long across a daylight-saving change, and a handover time
that does not exist on such a day (02:30 when clocks jump from 02:00 to 03:00) is taken
with the offset before the jump, as zoneinfo does (see `_handover`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ingest.alarms.notify.config import Crew, Roster


@dataclass(frozen=True)
class Shift:
    crew: str
    day: date  # the local date the shift started on
    people: tuple[str, ...]
    starts: datetime  # aware, in the roster's zone
    ends: datetime  # the next handover

    @property
    def hours(self) -> float:
        """23, 24 or 25. (Subtracting two datetimes of one zone would ignore the jump.)"""
        return (self.ends.timestamp() - self.starts.timestamp()) / 3600


def on_duty(crew: Crew, at: datetime) -> Shift:
    """The shift of `crew` at the aware instant `at`."""
    roster = crew.roster
    day = shift_day(roster, at)
    return Shift(
        crew=crew.id,
        day=day,
        people=people_on(roster, day),
        starts=_handover(roster, day),
        ends=_handover(roster, day + timedelta(days=1)),
    )


def next_handover(crew: Crew, at: datetime) -> datetime:
    return on_duty(crew, at).ends


def on_duty_ms(crew: Crew, at_ms: int) -> Shift:
    return on_duty(crew, datetime.fromtimestamp(at_ms / 1000, UTC))


def shift_day(roster: Roster, at: datetime) -> date:
    """The local date whose handover began the shift holding `at`. Compared as instants,
    never as wall-clock times, so days with a daylight-saving jump stay consistent."""
    if at.tzinfo is None:
        raise ValueError("on_duty needs an aware datetime (a time zone), not a naive one")
    day = at.astimezone(roster.tz).date()
    # .timestamp(): aware datetimes sharing a tzinfo compare by wall clock, not instant
    started = at.timestamp() >= _handover(roster, day).timestamp()
    return day if started else day - timedelta(days=1)


def people_on(roster: Roster, day: date) -> tuple[str, ...]:
    if day in roster.overrides:
        return roster.overrides[day]
    if not roster.rotation:
        return ()
    n = (day - roster.start).days  # negative before the start: the rotation runs backwards
    return roster.rotation[n % len(roster.rotation)]


def _handover(roster: Roster, day: date) -> datetime:
    # fold=0: an ambiguous time (clocks going back) is its first occurrence, a
    # non-existent one (clocks going forward) takes the offset from before the jump.
    return datetime.combine(day, roster.handover, tzinfo=roster.tz)
