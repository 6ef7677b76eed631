"""The alarm lifecycle on its own, without a file: the state table of the module
docstring, the refusals, and hidden alarms, as pure functions of an Alarm."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ingest.alarms.lifecycle import (
    Alarm,
    AlarmActionError,
    AlarmEvent,
    after_acknowledge,
    after_condition,
    after_reset,
    after_shelve,
    after_unshelve,
    is_stale,
    new_alarm,
)
from ingest.alarms.model import AlarmKey, AlarmState, ConditionChange, Priority

KEY = AlarmKey("fengshou", "xiba", "pump_1", "trip")
N, U, A = AlarmState.NORMAL, AlarmState.UNACKED, AlarmState.ACKED
R, L = AlarmState.RTN_UNACKED, AlarmState.LATCHED


def change(active: bool, at_ms: int, latched: bool = False) -> ConditionChange:
    return ConditionChange(KEY, active, at_ms, Priority.HIGH, "Pump 1 tripped", 7, latched)


def alarm_in(state: AlarmState, latched: bool = False) -> Alarm:
    alarm = new_alarm(change(False, 10, latched), 10, out_of_service=False)
    return replace(alarm, state=state, active=state in (U, A))


# state before, latched -> state after (None: refused), from the module docstring
CONDITION_ACTIVE = {N: U, U: None, A: None, R: U, L: U}
CONDITION_INACTIVE = {N: None, U: R, A: N, R: None, L: None}
ACKNOWLEDGE = {N: None, U: A, A: None, R: N, L: None}
RESET = {N: None, U: None, A: None, R: None, L: N}


@pytest.mark.parametrize("state", list(AlarmState))
@pytest.mark.parametrize("active", [True, False])
def test_a_condition_change_follows_the_table(state: AlarmState, active: bool) -> None:
    before = alarm_in(state)
    news, flip = after_condition(before, change(active, 20), 20)
    expected = (CONDITION_ACTIVE if active else CONDITION_INACTIVE)[state]
    if expected is None:  # no change of condition: the row is refreshed, no transition
        assert flip is None and news.state is state and news.last_change_ms == 20
        return
    assert flip is not None and flip.after.state is expected
    assert flip.event is (AlarmEvent.RAISED if active else AlarmEvent.CLEARED)
    assert flip.words == (None if active else ("Pump 1 tripped", 7))


@pytest.mark.parametrize("state", list(AlarmState))
def test_acknowledge_and_reset_follow_the_table(state: AlarmState) -> None:
    def acknowledge(alarm: Alarm) -> Alarm:
        return after_acknowledge(alarm, "wang", 30)

    def reset(alarm: Alarm) -> Alarm:
        return after_reset(alarm, 30)

    for act, table in ((acknowledge, ACKNOWLEDGE), (reset, RESET)):
        expected = table[state]
        if expected is None:
            with pytest.raises(AlarmActionError):
                act(alarm_in(state))
        else:
            assert act(alarm_in(state)).state is expected


def test_a_latched_alarm_waits_for_a_reset() -> None:
    acked = after_acknowledge(alarm_in(U, latched=True), "wang", 30)
    _, flip = after_condition(acked, change(False, 40, latched=True), 40)
    assert flip is not None and flip.after.state is L
    assert after_reset(flip.after, 50).state is N


def test_a_hidden_alarm_refuses_acknowledge_and_reset_and_comes_back_afresh() -> None:
    shelved = after_shelve(alarm_in(U), "wang", "noisy", until_ms=90_000, now=30)
    with pytest.raises(AlarmActionError, match="shelved until"):
        after_acknowledge(shelved, "wang", 40)
    _, flip = after_condition(shelved, change(False, 50), 50)
    assert flip is not None and flip.after.state is R
    _, flip = after_condition(flip.after, change(True, 60), 60)
    assert flip is not None and flip.event is AlarmEvent.SUPPRESSED
    assert after_unshelve(flip.after, 70).state is U  # still active: the crew hears again
    with pytest.raises(AlarmActionError, match="not shelved"):
        after_unshelve(alarm_in(N), 70)
    out = replace(alarm_in(L), out_of_service=True)
    with pytest.raises(AlarmActionError, match="out of service"):
        after_reset(out, 80)


def test_older_news_is_stale_and_the_same_instant_is_not() -> None:
    seen = replace(alarm_in(U), last_change_ms=100)
    assert is_stale(seen, change(False, 99))
    assert not is_stale(seen, change(False, 100))
    assert not is_stale(None, change(False, 1))
