"""Who is on duty: 24 h shifts handed over at a local time, in a zone without daylight
saving (Asia/Shanghai) and one with it (Europe/Berlin), where a shift is 23 or 25 hours
long and instants, not wall-clock times, decide the handover."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.alarms.notify.config import Crew, Roster
from ingest.alarms.notify.roster import next_handover, on_duty, on_duty_ms

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
START = date(2026, 6, 1)


def crew(
    tz: ZoneInfo = SHANGHAI,
    handover: time = time(8),
    rotation: tuple[tuple[str, ...], ...] = (("li_wei",), ("zhang_min",), ("wang_fang",)),
    overrides: dict[date, tuple[str, ...]] | None = None,
    start: date = START,
) -> Crew:
    members = tuple(dict.fromkeys(p for team in rotation for p in team))
    roster = Roster(start, handover, tz, rotation, overrides or {})
    return Crew("water", "Water crew", members, roster)


def local(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=tz)


def test_handover_at_0800_hands_the_shift_to_the_next_person() -> None:
    c = crew()
    before = on_duty(c, local(SHANGHAI, 2026, 6, 2, 7, 59, 59))
    after = on_duty(c, local(SHANGHAI, 2026, 6, 2, 8, 0, 0))
    assert before.people == ("li_wei",) and before.day == date(2026, 6, 1)
    assert after.people == ("zhang_min",) and after.day == date(2026, 6, 2)
    assert before.ends == after.starts == local(SHANGHAI, 2026, 6, 2, 8)
    assert next_handover(c, local(SHANGHAI, 2026, 6, 2, 7, 0)) == local(SHANGHAI, 2026, 6, 2, 8)


def test_midnight_is_no_handover_and_utc_input_is_read_in_the_roster_zone() -> None:
    c = crew()
    # 23:30 and 00:30 local belong to the shift that began at 08:00 the day before
    assert on_duty(c, local(SHANGHAI, 2026, 6, 1, 23, 30)).people == ("li_wei",)
    assert on_duty(c, local(SHANGHAI, 2026, 6, 2, 0, 30)).people == ("li_wei",)
    # the same instants written in UTC (15:30 and 16:30 on 1 June): same answer
    assert on_duty(c, datetime(2026, 6, 1, 16, 30, tzinfo=UTC)).people == ("li_wei",)
    # 00:30 UTC on 2 June is 08:30 in Shanghai: the next shift, though UTC says 'just
    # after midnight' and a UTC roster would still show Li Wei
    assert on_duty(c, datetime(2026, 6, 2, 0, 30, tzinfo=UTC)).people == ("zhang_min",)
    shift = on_duty_ms(c, int(datetime(2026, 6, 2, 0, 30, tzinfo=UTC).timestamp() * 1000))
    assert shift.people == ("zhang_min",) and shift.hours == 24


def test_rotation_cycles_and_runs_backwards_before_its_start() -> None:
    c = crew()
    days = [START + timedelta(days=n) for n in range(-2, 5)]
    people = [on_duty(c, datetime.combine(d, time(12), SHANGHAI)).people[0] for d in days]
    assert people == [
        "zhang_min",  # 30 May: two shifts before the start
        "wang_fang",  # 31 May
        "li_wei",  # 1 June: the start
        "zhang_min",
        "wang_fang",
        "li_wei",
        "zhang_min",
    ]


def test_teams_and_overrides() -> None:
    c = crew(
        rotation=(("yang_tao", "huang_li"), ("zhou_qiang", "wu_xia")),
        overrides={date(2026, 6, 2): ("wu_xia", "huang_li")},
    )
    assert on_duty(c, local(SHANGHAI, 2026, 6, 1, 9)).people == ("yang_tao", "huang_li")
    assert on_duty(c, local(SHANGHAI, 2026, 6, 2, 9)).people == ("wu_xia", "huang_li")
    assert on_duty(c, local(SHANGHAI, 2026, 6, 3, 7)).people == ("wu_xia", "huang_li")
    assert on_duty(c, local(SHANGHAI, 2026, 6, 3, 9)).people == ("yang_tao", "huang_li")


def test_spring_forward_makes_a_23_hour_shift_and_handover_stays_0800_local() -> None:
    c = crew(BERLIN, start=date(2026, 3, 1))
    # clocks jump 02:00 -> 03:00 on 29 March 2026; 08:00 CEST is 06:00 UTC
    saturday = on_duty(c, local(BERLIN, 2026, 3, 28, 12))
    assert saturday.hours == 23
    assert saturday.ends == local(BERLIN, 2026, 3, 29, 8)
    at_0730 = on_duty(c, datetime(2026, 3, 29, 5, 30, tzinfo=UTC))  # 07:30 CEST
    at_0830 = on_duty(c, datetime(2026, 3, 29, 6, 30, tzinfo=UTC))  # 08:30 CEST, 07:30 CET
    assert at_0730.day == date(2026, 3, 28)
    assert at_0830.day == date(2026, 3, 29)  # a fixed UTC+1 roster would say 28 March
    assert at_0730.people != at_0830.people


def test_fall_back_makes_a_25_hour_shift() -> None:
    c = crew(BERLIN, start=date(2026, 10, 1))
    # clocks go back 03:00 -> 02:00 on 25 October 2026; 08:00 CET is 07:00 UTC
    saturday = on_duty(c, local(BERLIN, 2026, 10, 24, 12))
    assert saturday.hours == 25
    assert on_duty(c, datetime(2026, 10, 25, 6, 30, tzinfo=UTC)).day == date(2026, 10, 24)
    assert on_duty(c, datetime(2026, 10, 25, 7, 0, tzinfo=UTC)).day == date(2026, 10, 25)


def test_handover_in_the_spring_gap_is_one_instant_for_start_and_lookup() -> None:
    c = crew(BERLIN, handover=time(2, 30), start=date(2026, 3, 1))
    # 02:30 does not exist on 29 March; zoneinfo reads it with the CET offset: 01:30 UTC
    shift = on_duty(c, datetime(2026, 3, 29, 1, 30, tzinfo=UTC))
    assert shift.day == date(2026, 3, 29)
    assert shift.starts.timestamp() == datetime(2026, 3, 29, 1, 30, tzinfo=UTC).timestamp()
    assert on_duty(c, datetime(2026, 3, 29, 1, 29, tzinfo=UTC)).day == date(2026, 3, 28)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        on_duty(crew(), datetime(2026, 6, 1, 9))


@given(
    instant=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from([SHANGHAI, BERLIN, ZoneInfo("America/New_York")]),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 59]),
)
def test_every_instant_lies_in_its_shift_and_the_shift_follows_the_rotation(
    instant: datetime, zone: ZoneInfo, hour: int, minute: int
) -> None:
    c = crew(zone, handover=time(hour, minute))
    shift = on_duty(c, instant)
    assert shift.starts.timestamp() <= instant.timestamp() < shift.ends.timestamp()
    assert 22 <= shift.hours <= 26
    n = (shift.day - START).days
    assert shift.people == c.roster.rotation[n % 3]
    assert on_duty(c, shift.ends).day == shift.day + timedelta(days=1)
