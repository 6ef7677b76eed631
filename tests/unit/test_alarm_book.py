"""The alarm book on real SQLite files: the ISA-18.2 state table, latching, shelving,
out of service, idempotence, stale news, durability, and random operation sequences
against a small reference model."""

from __future__ import annotations

import math
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import ingest.alarms.book_store as book_store
from facility.wire import Value
from ingest.alarms.book import (
    SCHEMA_VERSION,
    AlarmActionError,
    AlarmBook,
    AlarmEvent,
    Transition,
    alarm_event_line,
)
from ingest.alarms.model import AlarmKey, AlarmState, ConditionChange, Priority

NOW = 1_780_264_860_000
N = AlarmState.NORMAL
U = AlarmState.UNACKED
A = AlarmState.ACKED
R = AlarmState.RTN_UNACKED
L = AlarmState.LATCHED

TRIP = AlarmKey("fengshou", "xiba", "pump_1", "trip")
HOT = AlarmKey("fengshou", "xiba", "pump_1", "overtemp")
OTHER = AlarmKey("fengshou", "xiba", "pump_2", "trip")


class Clock:
    def __init__(self, now_ms: int = NOW) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(tmp_path: Path, clock: Clock) -> Iterator[AlarmBook]:
    with AlarmBook(tmp_path / "alarms.db", now_ms=clock, max_shelve_s=3600) as opened:
        yield opened


def change(
    key: AlarmKey,
    active: bool,
    at_ms: int,
    latched: bool = False,
    priority: Priority = Priority.HIGH,
    value: Value = None,
) -> ConditionChange:
    return ConditionChange(
        key, active, at_ms, priority, f"{key.rule} on {key.asset}", value, latched
    )


def reach(book: AlarmBook, key: AlarmKey, state: AlarmState, latched: bool) -> None:
    """Drive `key` to `state` through the public API, with event times 1..3."""
    steps: dict[AlarmState, list[str]] = {
        N: ["off"],
        U: ["on"],
        A: ["on", "ack"],
        R: ["on", "off"],
        L: ["on", "ack", "off"],
    }
    for at_ms, step in enumerate(steps[state], start=1):
        if step == "ack":
            book.acknowledge(key, "op")
        else:
            book.apply(change(key, step == "on", at_ms, latched))
    assert state_of(book, key) is state


def state_of(book: AlarmBook, key: AlarmKey) -> AlarmState:
    alarm = book.get(key)
    assert alarm is not None
    return alarm.state


def summary(transitions: list[Transition]) -> list[tuple[AlarmEvent, AlarmState, AlarmState, bool]]:
    return [(t.event, t.from_state, t.to_state, t.notify) for t in transitions]


# -- the state table --------------------------------------------------------------------

CONDITION_TABLE = [
    # from, latched, condition active, expected event (None: no transition), to
    (N, False, True, AlarmEvent.RAISED, U),
    (N, True, True, AlarmEvent.RAISED, U),
    (N, False, False, None, N),
    (U, False, False, AlarmEvent.CLEARED, R),
    (U, True, False, AlarmEvent.CLEARED, R),
    (U, False, True, None, U),
    (A, False, False, AlarmEvent.CLEARED, N),
    (A, True, False, AlarmEvent.CLEARED, L),
    (A, False, True, None, A),
    (R, False, True, AlarmEvent.RAISED, U),
    (R, True, True, AlarmEvent.RAISED, U),
    (R, False, False, None, R),
    (L, True, True, AlarmEvent.RAISED, U),
    (L, True, False, None, L),
]


@pytest.mark.parametrize(("start", "latched", "active", "event", "end"), CONDITION_TABLE)
def test_condition_change_moves_the_state_as_the_table_says(
    book: AlarmBook,
    start: AlarmState,
    latched: bool,
    active: bool,
    event: AlarmEvent | None,
    end: AlarmState,
) -> None:
    reach(book, TRIP, start, latched)
    done = book.apply(change(TRIP, active, 100, latched))
    expected = [] if event is None else [(event, start, end, True)]
    assert summary(done) == expected
    alarm = book.get(TRIP)
    assert alarm is not None
    assert (alarm.state, alarm.active, alarm.last_change_ms) == (end, active, 100)


ACTION_TABLE = [
    # from, latched, action, to
    (U, False, "acknowledge", A),
    (U, True, "acknowledge", A),
    (R, False, "acknowledge", N),
    (R, True, "acknowledge", L),
    (L, True, "reset", N),
]


@pytest.mark.parametrize(("start", "latched", "action", "end"), ACTION_TABLE)
def test_operator_action_moves_the_state_as_the_table_says(
    book: AlarmBook, clock: Clock, start: AlarmState, latched: bool, action: str, end: AlarmState
) -> None:
    reach(book, TRIP, start, latched)
    clock.now_ms += 5000
    t = (
        book.acknowledge(TRIP, "wang", "on it")
        if action == "acknowledge"
        else book.reset(TRIP, "wang", "on it")
    )
    event = AlarmEvent.ACKNOWLEDGED if action == "acknowledge" else AlarmEvent.RESET
    assert (t.event, t.from_state, t.to_state, t.notify) == (event, start, end, True)
    assert (t.user, t.comment, t.at_ms, t.recorded_ms) == (
        "wang",
        "on it",
        clock.now_ms,
        clock.now_ms,
    )
    assert state_of(book, TRIP) is end
    assert book.history(TRIP)[-1] == t


ERROR_TABLE = [
    # from, latched, action, words the operator must see
    (N, False, "acknowledge", "nothing to acknowledge"),
    (A, False, "acknowledge", "already acknowledged by op"),
    (L, True, "acknowledge", "waiting for a reset"),
    (N, False, "reset", "nothing to reset"),
    (U, True, "reset", "still active"),
    (A, True, "reset", "still active"),
    (A, False, "reset", "still active"),
    (R, True, "reset", "acknowledge it first"),
]


@pytest.mark.parametrize(("start", "latched", "action", "words"), ERROR_TABLE)
def test_refused_action_says_why_and_changes_nothing(
    book: AlarmBook, start: AlarmState, latched: bool, action: str, words: str
) -> None:
    reach(book, TRIP, start, latched)
    before = (book.get(TRIP), book.history())
    with pytest.raises(AlarmActionError, match=words):
        if action == "acknowledge":
            book.acknowledge(TRIP, "wang")
        else:
            book.reset(TRIP, "wang")
    assert (book.get(TRIP), book.history()) == before


def test_actions_on_an_unknown_alarm_or_without_a_user_are_refused(book: AlarmBook) -> None:
    with pytest.raises(AlarmActionError, match="no alarm fengshou/xiba/pump_1/trip"):
        book.acknowledge(TRIP, "wang")
    with pytest.raises(AlarmActionError, match="no alarm"):
        book.shelve(TRIP, "wang", "noisy", 60)
    book.apply(change(TRIP, True, 1))
    with pytest.raises(AlarmActionError, match="a user is required"):
        book.acknowledge(TRIP, "  ")
    assert state_of(book, TRIP) is U


def test_latched_alarm_waits_for_a_reset(book: AlarmBook) -> None:
    done = book.apply(change(HOT, True, 10, latched=True))
    done.append(book.acknowledge(HOT, "wang"))
    done += book.apply(change(HOT, False, 20, latched=True))
    assert state_of(book, HOT) is L
    assert [a.key for a in book.active()] == [HOT]  # still in the list until reset
    done.append(book.reset(HOT, "li", "pressure switch reset on site"))
    assert summary(done) == [
        (AlarmEvent.RAISED, N, U, True),
        (AlarmEvent.ACKNOWLEDGED, U, A, True),
        (AlarmEvent.CLEARED, A, L, True),
        (AlarmEvent.RESET, L, N, True),
    ]
    assert book.active() == []
    assert [t.id for t in book.history(HOT)] == [t.id for t in done]


def test_ack_is_kept_on_the_alarm_and_forgotten_on_the_next_raise(
    book: AlarmBook, clock: Clock
) -> None:
    book.apply(change(TRIP, True, 10, latched=True))
    book.acknowledge(TRIP, "wang")
    alarm = book.get(TRIP)
    assert alarm is not None
    assert (alarm.acked_by, alarm.acked_ms, alarm.raised_ms) == ("wang", NOW, 10)
    book.apply(change(TRIP, False, 20, latched=True))
    book.apply(change(TRIP, True, 30, latched=True))  # LATCHED -> UNACKED again
    alarm = book.get(TRIP)
    assert alarm is not None
    assert (alarm.state, alarm.acked_by, alarm.acked_ms, alarm.raised_ms) == (U, None, None, 30)


# -- shelving ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "reason", "for_s", "words"),
    [
        ("wang", "", 60, "a reason is required"),
        ("wang", "   ", 60, "a reason is required"),
        ("", "noisy", 60, "a user is required"),
        ("wang", "noisy", 0, "more than 0 s and at most 1 h"),
        ("wang", "noisy", -5, "more than 0 s"),
        ("wang", "noisy", 3600.5, "at most 1 h"),
        ("wang", "noisy", math.nan, "at most 1 h"),
        ("wang", "noisy", math.inf, "at most 1 h"),
    ],
)
def test_shelve_needs_a_reason_and_a_bounded_time(
    book: AlarmBook, user: str, reason: str, for_s: float, words: str
) -> None:
    book.apply(change(TRIP, True, 1))
    with pytest.raises(AlarmActionError, match=words):
        book.shelve(TRIP, user, reason, for_s)
    alarm = book.get(TRIP)
    assert alarm is not None and not alarm.shelved


def test_shelve_for_the_maximum_is_allowed(book: AlarmBook, clock: Clock) -> None:
    book.apply(change(TRIP, True, 1))
    t = book.shelve(TRIP, "wang", "chattering level switch", 3600)
    assert (t.event, t.from_state, t.to_state, t.notify) == (AlarmEvent.SHELVED, U, U, True)
    assert t.comment == "chattering level switch"
    alarm = book.get(TRIP)
    assert alarm is not None
    assert (alarm.shelved_until_ms, alarm.shelved_by, alarm.shelve_reason) == (
        NOW + 3_600_000,
        "wang",
        "chattering level switch",
    )
    assert alarm.hidden


def test_changes_while_shelved_are_recorded_but_not_notified(book: AlarmBook, clock: Clock) -> None:
    book.apply(change(TRIP, False, 1))
    shelved = book.shelve(TRIP, "wang", "sensor being replaced", 600)
    assert not shelved.notify  # a NORMAL alarm hidden: nothing the crew deals with
    quiet = book.apply(change(TRIP, True, 10))
    quiet += book.apply(change(TRIP, False, 20))
    quiet += book.apply(change(TRIP, True, 30))
    assert summary(quiet) == [
        (AlarmEvent.SUPPRESSED, N, U, False),
        (AlarmEvent.CLEARED, U, R, False),
        (AlarmEvent.SUPPRESSED, R, U, False),
    ]
    assert all(t.suppressed for t in quiet)
    with pytest.raises(AlarmActionError, match=r"shelved until .* unshelve it first"):
        book.acknowledge(TRIP, "li")
    clock.now_ms += 599_999
    assert book.expire_shelves() == []
    clock.now_ms += 1
    (expired,) = book.expire_shelves()
    # Back in view with the condition active: the crew hears of it now.
    assert (expired.event, expired.from_state, expired.to_state, expired.notify) == (
        AlarmEvent.SHELVE_EXPIRED,
        U,
        U,
        True,
    )
    assert (expired.at_ms, expired.user) == (NOW + 600_000, "")
    alarm = book.get(TRIP)
    assert alarm is not None and not alarm.shelved
    assert book.expire_shelves() == []  # told once


def test_shelf_ending_with_the_condition_gone_returns_to_normal_quietly(
    book: AlarmBook, clock: Clock
) -> None:
    book.apply(change(TRIP, True, 1))
    book.acknowledge(TRIP, "wang")
    book.shelve(TRIP, "wang", "known fault", 60)
    book.apply(change(TRIP, False, 5, latched=True))
    assert state_of(book, TRIP) is L
    clock.now_ms += 60_000
    (expired,) = book.expire_shelves()
    assert summary([expired]) == [(AlarmEvent.SHELVE_EXPIRED, L, N, False)]


def test_unshelve_of_an_acked_active_alarm_announces_it_again(book: AlarmBook) -> None:
    book.apply(change(TRIP, True, 1))
    book.acknowledge(TRIP, "wang")
    book.shelve(TRIP, "wang", "noisy", 60)
    t = book.unshelve(TRIP, "li")
    assert summary([t]) == [(AlarmEvent.UNSHELVED, A, U, True)]
    assert t.user == "li"
    alarm = book.get(TRIP)
    assert alarm is not None and (alarm.acked_by, alarm.shelved) == (None, False)
    with pytest.raises(AlarmActionError, match="is not shelved"):
        book.unshelve(TRIP, "li")


def test_shelving_again_moves_the_end_and_is_not_news(book: AlarmBook, clock: Clock) -> None:
    book.apply(change(TRIP, True, 1))
    assert book.shelve(TRIP, "wang", "noisy", 60).notify
    clock.now_ms += 30_000
    again = book.shelve(TRIP, "wang", "still noisy", 60)
    assert (again.suppressed, again.notify) == (True, False)
    alarm = book.get(TRIP)
    assert alarm is not None and alarm.shelved_until_ms == NOW + 90_000


# -- out of service ---------------------------------------------------------------------


def test_out_of_service_hides_every_alarm_of_the_asset(book: AlarmBook, clock: Clock) -> None:
    book.apply(change(TRIP, True, 1))
    book.apply(change(HOT, False, 1))
    book.apply(change(OTHER, True, 1))
    taken = book.set_out_of_service("fengshou/xiba/pump_1", "wang", "bearing change")
    assert [(t.key, t.event, t.to_state, t.notify, t.comment) for t in taken] == [
        (HOT, AlarmEvent.OUT_OF_SERVICE, N, False, "bearing change"),
        (TRIP, AlarmEvent.OUT_OF_SERVICE, U, True, "bearing change"),
    ]
    assert book.is_out_of_service("fengshou/xiba/pump_1")
    assert not book.is_out_of_service("fengshou/xiba/pump_2")
    new_rule = AlarmKey("fengshou", "xiba", "pump_1", "dry_run")
    quiet = book.apply(change(new_rule, True, 5)) + book.apply(change(HOT, True, 5))
    assert summary(quiet) == [
        (AlarmEvent.SUPPRESSED, N, U, False),
        (AlarmEvent.SUPPRESSED, N, U, False),
    ]
    assert summary(book.apply(change(OTHER, False, 5))) == [(AlarmEvent.CLEARED, U, R, True)]
    with pytest.raises(AlarmActionError, match="pump_1 is out of service"):
        book.acknowledge(TRIP, "li")
    alarm = book.get(new_rule)
    assert alarm is not None and alarm.out_of_service and alarm.hidden

    book.apply(change(TRIP, False, 6))
    clock.now_ms += 1000
    back = book.return_to_service("fengshou/xiba/pump_1", "li", "bearing replaced")
    assert [(t.key, t.event, t.from_state, t.to_state, t.notify) for t in back] == [
        (new_rule, AlarmEvent.RETURNED_TO_SERVICE, U, U, True),
        (HOT, AlarmEvent.RETURNED_TO_SERVICE, U, U, True),
        (TRIP, AlarmEvent.RETURNED_TO_SERVICE, R, N, False),
    ]
    assert {t.at_ms for t in back} == {NOW + 1000}
    assert not book.is_out_of_service("fengshou/xiba/pump_1")


def test_out_of_service_twice_or_back_twice_is_refused(book: AlarmBook) -> None:
    assert book.set_out_of_service("fengshou/xiba/pump_1", "wang", "overhaul") == []
    since = r"since 2026-05-31 22:01:00 UTC \(by wang\)"
    with pytest.raises(AlarmActionError, match=f"already out of service {since}"):
        book.set_out_of_service("fengshou/xiba/pump_1", "li", "again")
    book.return_to_service("fengshou/xiba/pump_1", "wang")
    with pytest.raises(AlarmActionError, match="is not out of service"):
        book.return_to_service("fengshou/xiba/pump_1", "wang")
    with pytest.raises(AlarmActionError, match="a reason is required"):
        book.set_out_of_service("fengshou/xiba/pump_1", "wang", "")
    for bad in ("fengshou/xiba", "fengshou//pump_1", "a/b/c/d"):
        with pytest.raises(AlarmActionError, match="not SITE/STATION/ASSET"):
            book.is_out_of_service(bad)


def test_shelf_expiring_while_out_of_service_stays_hidden(book: AlarmBook, clock: Clock) -> None:
    book.apply(change(TRIP, True, 1))
    book.shelve(TRIP, "wang", "noisy", 60)
    (taken,) = book.set_out_of_service("fengshou/xiba/pump_1", "wang", "overhaul")
    assert not taken.notify  # already out of view
    clock.now_ms += 60_000
    (expired,) = book.expire_shelves()
    assert (expired.to_state, expired.suppressed, expired.notify) == (U, True, False)
    (back,) = book.return_to_service("fengshou/xiba/pump_1", "wang")
    assert (back.to_state, back.notify) == (U, True)


# -- idempotence and event time ---------------------------------------------------------


def test_the_same_change_twice_is_one_transition(book: AlarmBook) -> None:
    assert len(book.apply(change(TRIP, True, 10))) == 1
    assert book.apply(change(TRIP, True, 10)) == []
    assert len(book.history()) == 1


def test_a_resent_batch_tells_nothing_again(book: AlarmBook) -> None:
    batch = [change(TRIP, True, 10), change(TRIP, False, 20), change(TRIP, True, 30)]
    first = [t for c in batch for t in book.apply(c)]
    assert [t.event for t in first] == [AlarmEvent.RAISED, AlarmEvent.CLEARED, AlarmEvent.RAISED]
    assert [t for c in batch for t in book.apply(c)] == []
    assert len(book.history()) == 3


def test_a_change_older_than_the_last_is_ignored(book: AlarmBook) -> None:
    book.apply(change(TRIP, True, 100))
    assert book.apply(change(TRIP, False, 99)) == []  # stale: it was active at 100
    alarm = book.get(TRIP)
    assert alarm is not None
    assert (alarm.state, alarm.active, alarm.last_change_ms) == (U, True, 100)
    assert [t.event for t in book.apply(change(TRIP, False, 101))] == [AlarmEvent.CLEARED]


def test_a_repeat_of_the_condition_moves_last_change_and_keeps_newest_text(
    book: AlarmBook,
) -> None:
    book.apply(change(TRIP, True, 100, priority=Priority.HIGH, value=3))
    assert book.apply(change(TRIP, True, 200, priority=Priority.CRITICAL, value=4.5)) == []
    assert book.apply(change(TRIP, False, 150)) == []  # older than the repeat at 200
    alarm = book.get(TRIP)
    assert alarm is not None
    assert (alarm.last_change_ms, alarm.priority, alarm.value, alarm.raised_ms) == (
        200,
        Priority.CRITICAL,
        4.5,
        100,
    )


@pytest.mark.parametrize("value", [None, True, 7, 7.0, -0.25, "E042 overcurrent"])
def test_value_keeps_its_type(book: AlarmBook, value: Value) -> None:
    (t,) = book.apply(change(TRIP, True, 1, value=value))
    stored = book.get(TRIP)
    (recorded,) = book.history()
    assert stored is not None
    for got in (t.value, stored.value, recorded.value):
        assert got == value and type(got) is type(value)


def test_state_and_transition_are_stored_together_or_not_at_all(
    book: AlarmBook, monkeypatch: pytest.MonkeyPatch
) -> None:
    book.apply(change(TRIP, True, 1))

    def crash(*_: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(book_store, "save", crash)
    with pytest.raises(sqlite3.OperationalError):
        book.acknowledge(TRIP, "wang")
    monkeypatch.undo()
    assert state_of(book, TRIP) is U
    assert [t.event for t in book.history()] == [AlarmEvent.RAISED]
    assert book.acknowledge(TRIP, "wang").to_state is A


# -- reading ----------------------------------------------------------------------------


def test_active_lists_the_most_urgent_first_then_the_oldest(book: AlarmBook) -> None:
    keys = [AlarmKey("fengshou", "xiba", f"pump_{i}", "trip") for i in range(4)]
    book.apply(change(keys[0], True, 30, priority=Priority.LOW))
    book.apply(change(keys[1], True, 20, priority=Priority.CRITICAL))
    book.apply(change(keys[2], True, 10, priority=Priority.CRITICAL))
    book.apply(change(keys[3], True, 5, priority=Priority.MEDIUM))
    book.apply(change(keys[3], False, 6, priority=Priority.MEDIUM))  # RTN_UNACKED: listed
    book.apply(change(TRIP, False, 1))  # NORMAL: not listed
    assert [a.key for a in book.active()] == [keys[2], keys[1], keys[3], keys[0]]
    assert book.active_conditions() == [keys[0], keys[1], keys[2]]


def test_history_filters_by_key_and_event_time_and_keeps_the_newest(book: AlarmBook) -> None:
    for at_ms in (10, 20, 30, 40):
        book.apply(change(TRIP, at_ms in (10, 30), at_ms))
    book.apply(change(OTHER, True, 25))
    assert [t.at_ms for t in book.history()] == [10, 20, 30, 40, 25]  # in recording order
    assert [t.at_ms for t in book.history(TRIP)] == [10, 20, 30, 40]
    assert [t.at_ms for t in book.history(since_ms=20, until_ms=30)] == [20, 25]
    assert [t.at_ms for t in book.history(TRIP, limit=2)] == [30, 40]
    assert book.history(AlarmKey("x", "y", "z", "w")) == []


# -- durability -------------------------------------------------------------------------


def test_reopened_book_has_the_same_states_and_history(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "alarms.db"
    with AlarmBook(path, now_ms=clock) as first:
        told = first.apply(change(TRIP, True, 10))
        told += first.apply(change(HOT, True, 10, latched=True))
        told.append(first.acknowledge(HOT, "wang", "crew sent"))
        told += first.apply(change(HOT, False, 20, latched=True))
        told += first.apply(change(OTHER, True, 15))
        told += first.set_out_of_service("fengshou/xiba/pump_2", "wang", "dismantled")
        told.append(first.shelve(TRIP, "wang", "noisy", 60))
        states = {k: first.get(k) for k in (TRIP, HOT, OTHER)}
    with AlarmBook(path, now_ms=clock) as second:
        assert {k: second.get(k) for k in (TRIP, HOT, OTHER)} == states
        assert second.history() == told
        assert second.is_out_of_service("fengshou/xiba/pump_2")
        # The engine, restarted, reports what it already did: nothing is told again.
        assert second.apply(change(TRIP, True, 10)) == []
        assert second.apply(change(HOT, False, 20, latched=True)) == []
        assert second.reset(HOT, "li").to_state is N
        assert second.history()[-1].id > told[-1].id
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    AlarmBook(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this software"):
        AlarmBook(path)


def test_a_closed_book_says_so(tmp_path: Path) -> None:
    opened = AlarmBook(tmp_path / "alarms.db")
    opened.close()
    opened.close()  # twice is fine
    with pytest.raises(RuntimeError, match="is closed"):
        opened.get(TRIP)


# -- line protocol ----------------------------------------------------------------------


def transition(**overrides: object) -> Transition:
    fields: dict[str, object] = {
        "id": 1,
        "key": AlarmKey("fengshou", "xiba", "pump 1", "dry_run"),
        "event": AlarmEvent.ACKNOWLEDGED,
        "from_state": U,
        "to_state": A,
        "at_ms": 1_780_264_860_123,
        "recorded_ms": 1_780_264_860_456,
        "user": "wang li",
        "comment": 'see "log" c:\\tmp',
        "priority": Priority.CRITICAL,
        "message": "dry run, level 0.2 m",
        "value": 0.2,
    }
    fields.update(overrides)
    return Transition(**fields)  # type: ignore[arg-type]


def test_alarm_event_line_carries_tags_fields_and_event_time() -> None:
    assert alarm_event_line(transition()) == (
        r"alarm_event,asset=pump\ 1,priority=critical,rule=dry_run,site=fengshou,station=xiba "
        r'event="acknowledged",state="active_acknowledged",active=true,user="wang li",'
        r'comment="see \"log\" c:\\tmp",message="dry run, level 0.2 m" 1780264860123'
    )


def test_alarm_event_line_leaves_out_empty_strings() -> None:
    line = alarm_event_line(
        transition(event=AlarmEvent.CLEARED, to_state=R, user="", comment="", message="")
    )
    assert line.endswith(
        ' event="cleared",state="returned_unacknowledged",active=false 1780264860123'
    )


# -- random sequences against a reference model -----------------------------------------

MAX_SHELVE_S = 60.0
LATCHED_RULES = {"overtemp"}
ASSETS = ["fengshou/xiba/pump_1", "fengshou/xiba/pump_2"]
KEYS = [TRIP, HOT, OTHER]
Outcome = list[tuple[AlarmEvent, AlarmState, AlarmState, bool]] | str  # "refused"


@dataclass
class RefAlarm:
    latched: bool
    last_ms: int
    state: AlarmState = N
    active: bool = False
    shelved_until: int | None = None


class Reference:
    """ISA-18.2 as the module docstring of the book states it, written out plainly."""

    def __init__(self) -> None:
        self.alarms: dict[AlarmKey, RefAlarm] = {}
        self.out_of_service: set[str] = set()

    def hidden(self, key: AlarmKey) -> bool:
        a = self.alarms[key]
        return a.shelved_until is not None or key.asset_path in self.out_of_service

    def change(self, key: AlarmKey, active: bool, at_ms: int) -> Outcome:
        a = self.alarms.setdefault(key, RefAlarm(key.rule in LATCHED_RULES, at_ms))
        if at_ms < a.last_ms:
            return []
        a.last_ms = at_ms
        if a.active == active:
            return []
        before, hidden = a.state, self.hidden(key)
        if active:
            a.state = U
            event = AlarmEvent.SUPPRESSED if hidden else AlarmEvent.RAISED
        else:
            a.state = R if before is U else (L if a.latched else N)
            event = AlarmEvent.CLEARED
        a.active = active
        return [(event, before, a.state, not hidden)]

    def acknowledge(self, key: AlarmKey) -> Outcome:
        a = self.alarms.get(key)
        if a is None or self.hidden(key) or a.state not in (U, R):
            return "refused"
        before = a.state
        a.state = A if before is U else (L if a.latched else N)
        return [(AlarmEvent.ACKNOWLEDGED, before, a.state, True)]

    def reset(self, key: AlarmKey) -> Outcome:
        a = self.alarms.get(key)
        if a is None or self.hidden(key) or a.state is not L:
            return "refused"
        a.state = N
        return [(AlarmEvent.RESET, L, N, True)]

    def shelve(self, key: AlarmKey, for_s: float, now: int) -> Outcome:
        a = self.alarms.get(key)
        if a is None or not 0 < for_s <= MAX_SHELVE_S:
            return "refused"
        was_hidden = self.hidden(key)
        a.shelved_until = now + math.ceil(for_s * 1000)
        return [(AlarmEvent.SHELVED, a.state, a.state, not was_hidden and a.state is not N)]

    def unshelve(self, key: AlarmKey) -> Outcome:
        a = self.alarms.get(key)
        if a is None or a.shelved_until is None:
            return "refused"
        a.shelved_until = None
        return [self._into_view(key, AlarmEvent.UNSHELVED)]

    def expire(self, now: int) -> Outcome:
        due = sorted(
            (a.shelved_until, k)
            for k, a in self.alarms.items()
            if a.shelved_until is not None and a.shelved_until <= now
        )
        for _, key in due:
            self.alarms[key].shelved_until = None
        return [self._into_view(key, AlarmEvent.SHELVE_EXPIRED) for _, key in due]

    def set_out_of_service(self, asset_path: str) -> Outcome:
        if asset_path in self.out_of_service:
            return "refused"
        done = []
        for key in self._keys_of(asset_path):
            a = self.alarms[key]
            notify = a.shelved_until is None and a.state is not N
            done.append((AlarmEvent.OUT_OF_SERVICE, a.state, a.state, notify))
        self.out_of_service.add(asset_path)
        return done

    def return_to_service(self, asset_path: str) -> Outcome:
        if asset_path not in self.out_of_service:
            return "refused"
        self.out_of_service.remove(asset_path)
        event = AlarmEvent.RETURNED_TO_SERVICE
        return [self._into_view(key, event) for key in self._keys_of(asset_path)]

    def _into_view(
        self, key: AlarmKey, event: AlarmEvent
    ) -> tuple[AlarmEvent, AlarmState, AlarmState, bool]:
        a = self.alarms[key]
        before = a.state
        if self.hidden(key):
            return (event, before, before, False)
        a.state = U if a.active else N
        return (event, before, a.state, a.state is not N)

    def _keys_of(self, asset_path: str) -> list[AlarmKey]:
        return sorted(k for k in self.alarms if k.asset_path == asset_path)


class AlarmBookMachine(RuleBasedStateMachine):
    """Random condition changes (repeats and stale ones included), acknowledgements,
    resets, shelves, expiries, out of service and restarts: the book agrees with the
    reference, and every transition is returned exactly once, in the order stored."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="alarm-book-"))
        self.clock = Clock()
        self.book = self._open()
        self.ref = Reference()
        self.event_ms = 0
        self.told: list[Transition] = []

    def _open(self) -> AlarmBook:
        return AlarmBook(self.dir / "alarms.db", now_ms=self.clock, max_shelve_s=MAX_SHELVE_S)

    def teardown(self) -> None:
        self.book.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _check(self, call: object, expected: Outcome) -> None:
        assert callable(call)
        try:
            result = call()
        except AlarmActionError:
            assert expected == "refused"
            return
        done = result if isinstance(result, list) else [result]
        assert summary(done) == expected
        self.told += done

    @rule(key=st.sampled_from(KEYS), active=st.booleans(), step=st.integers(-3, 5))
    def condition(self, key: AlarmKey, active: bool, step: int) -> None:
        at_ms = max(0, self.event_ms + step)
        self.event_ms = max(self.event_ms, at_ms)
        latched = key.rule in LATCHED_RULES
        self._check(
            lambda: self.book.apply(change(key, active, at_ms, latched)),
            self.ref.change(key, active, at_ms),
        )

    @rule(key=st.sampled_from(KEYS))
    def acknowledge(self, key: AlarmKey) -> None:
        self._check(lambda: self.book.acknowledge(key, "op"), self.ref.acknowledge(key))

    @rule(key=st.sampled_from(KEYS))
    def reset(self, key: AlarmKey) -> None:
        self._check(lambda: self.book.reset(key, "op"), self.ref.reset(key))

    @rule(key=st.sampled_from(KEYS), for_s=st.sampled_from([-1, 0, 0.5, 2, 30, 60, 61]))
    def shelve(self, key: AlarmKey, for_s: float) -> None:
        expected = self.ref.shelve(key, for_s, self.clock.now_ms)
        self._check(lambda: self.book.shelve(key, "op", "test", for_s), expected)

    @rule(key=st.sampled_from(KEYS))
    def unshelve(self, key: AlarmKey) -> None:
        self._check(lambda: self.book.unshelve(key, "op"), self.ref.unshelve(key))

    @rule(dt_ms=st.sampled_from([0, 500, 2000, 30_000, 61_000]))
    def time_passes(self, dt_ms: int) -> None:
        self.clock.now_ms += dt_ms
        self._check(self.book.expire_shelves, self.ref.expire(self.clock.now_ms))

    @rule(asset=st.sampled_from(ASSETS))
    def out_of_service(self, asset: str) -> None:
        expected = self.ref.set_out_of_service(asset)
        self._check(lambda: self.book.set_out_of_service(asset, "op", "work"), expected)

    @rule(asset=st.sampled_from(ASSETS))
    def back_in_service(self, asset: str) -> None:
        expected = self.ref.return_to_service(asset)
        self._check(lambda: self.book.return_to_service(asset, "op"), expected)

    @rule()
    def restart(self) -> None:
        self.book.close()
        self.book = self._open()

    @invariant()
    def states_agree(self) -> None:
        for key in KEYS:
            alarm, expected = self.book.get(key), self.ref.alarms.get(key)
            if expected is None:
                assert alarm is None
                continue
            assert alarm is not None
            assert (alarm.state, alarm.active) == (expected.state, expected.active)
            assert alarm.active == (alarm.state in (U, A))
            assert alarm.hidden == self.ref.hidden(key)
        not_normal = {k for k, a in self.ref.alarms.items() if a.state is not N}
        assert {a.key for a in self.book.active()} == not_normal

    @invariant()
    def every_transition_is_told_exactly_once(self) -> None:
        assert self.book.history(limit=10**6) == self.told
        last: dict[AlarmKey, Transition] = {}
        last_told: dict[AlarmKey, Transition] = {}
        for t in self.told:
            if t.key in last:  # the chain of states has no gaps
                assert t.from_state is last[t.key].to_state
            last[t.key] = t
            if not t.notify:
                continue
            if t.key in last_told:  # the crew never hears the same news twice in a row
                previous = last_told[t.key]
                assert (t.event, t.to_state) != (previous.event, previous.to_state)
            last_told[t.key] = t


AlarmBookMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_alarm_book_state_machine = AlarmBookMachine.TestCase


# -- words and late conditions ----------------------------------------------------------


def test_every_transition_reads_as_a_sentence_and_a_clear_keeps_the_raise_words(
    book: AlarmBook,
) -> None:
    raised = ConditionChange(TRIP, True, 100, Priority.HIGH, "Pump 1: tripped (fault 6)", 6, True)
    cleared = ConditionChange(TRIP, False, 200, Priority.HIGH, "Pump 1: no longer tripped", 0, True)
    [t_raise] = book.apply(raised)
    ack = book.acknowledge(TRIP, "li.wei", "on my way")
    [t_clear] = book.apply(cleared)
    reset = book.reset(TRIP, "li.wei")
    assert [t.text for t in (t_raise, ack, t_clear, reset)] == [
        "Raised: Pump 1: tripped (fault 6)",
        "Acknowledged by li.wei (on my way): Pump 1: tripped (fault 6)",
        "Back to normal: Pump 1: no longer tripped",
        "Reset by li.wei, back to normal: Pump 1: tripped (fault 6)",
    ]
    assert (t_clear.value, reset.value) == (0, 6)
    alarm = book.get(TRIP)
    assert alarm is not None and alarm.message == "Pump 1: tripped (fault 6)"
    assert [t.message for t in book.history()] == [
        t.message for t in (t_raise, ack, t_clear, reset)
    ]


def test_a_late_condition_is_journal_only_once_and_changes_no_state(book: AlarmBook) -> None:
    late = ConditionChange(
        HOT,
        False,
        500,
        Priority.HIGH,
        "Pump 1: bearing hot (over before it arrived)",
        91.0,
        late_since_ms=300,
    )
    [t] = book.apply(late)
    assert (t.event, t.from_state, t.to_state, t.since_ms, t.at_ms, t.notify) == (
        AlarmEvent.LATE,
        N,
        N,
        300,
        500,
        False,
    )
    assert t.text == "Late, nobody told: Pump 1: bearing hot (over before it arrived)"
    assert book.apply(late) == []  # a backlog sent again
    assert book.active() == []
    # an alarm standing meanwhile keeps its state; a late change is no stale news to it
    book.apply(change(TRIP, True, 1000))
    [t2] = book.apply(replace(late, key=TRIP, at_ms=800, late_since_ms=700))
    assert (t2.from_state, t2.to_state) == (U, U)
    assert state_of(book, TRIP) is U
    [back] = book.history(key=HOT)
    assert back.since_ms == 300 and back.event is AlarmEvent.LATE


def test_a_book_of_the_first_schema_gains_the_late_column(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    db = sqlite3.connect(path)
    for statement in book_store.MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO transition (site, station, asset, rule, event, from_state, to_state, "
        "at_ms, recorded_ms, user, comment, priority, message, value, suppressed) VALUES "
        "('fengshou', 'xiba', 'pump_1', 'trip', 'raised', 'normal', "
        "'active_unacknowledged', 1, 1, '', '', 'high', 'old words', 'null', 0)"
    )
    db.commit()
    db.close()
    with AlarmBook(path) as opened:
        [old] = opened.history()
        assert (old.message, old.since_ms) == ("old words", None)
