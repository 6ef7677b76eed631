"""The ISA-18.2 lifecycle of one alarm: states, events, transitions. Pure: no I/O, no clock.

The alarm book (ingest/alarms/book.py) loads an alarm, asks this module what an event
makes of it, and stores the result with its transition (ingest/alarms/book_store.py).

States and what moves them (`latched` comes with the condition change):

    state        condition active   condition inactive         acknowledge        reset
    NORMAL       UNACKED (raised)   -                          error              error
    UNACKED      -                  RTN_UNACKED (cleared)      ACKED              error
    ACKED        -                  NORMAL, latched: LATCHED   error              error
    RTN_UNACKED  UNACKED (raised)   -                          NORMAL, latched:   error
                                                               LATCHED
    LATCHED      UNACKED (raised)   -                          error              NORMAL

The condition is active exactly in UNACKED and ACKED. A latched alarm reaches NORMAL
only through a reset, which needs the condition inactive (it is, in LATCHED).

Out of the crew's view: a shelved alarm, or any alarm of an asset out of service. Its
condition changes still move the state machine (so the book always knows the process
state), but they are recorded with `suppressed=True` and never notified; a raise is
recorded under its own event name, SUPPRESSED, so history and Grafana show plainly that
nobody was told. Acknowledge and reset are refused while hidden (nobody can see it).
When the alarm comes back into view (unshelved, shelf expired, asset returned to
service, and not still hidden for the other reason) it starts afresh from its
condition, as ISA-18.2 has it: active -> UNACKED (the crew hears of it again), inactive
-> NORMAL (whatever came and went while hidden, or was latched, is let go).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from facility.wire import Value
from ingest.alarms.model import AlarmKey, AlarmState, ConditionChange, Priority

ACTIVE_STATES = frozenset({AlarmState.UNACKED, AlarmState.ACKED})


class AlarmEvent(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    RESET = "reset"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    SHELVE_EXPIRED = "shelve_expired"
    OUT_OF_SERVICE = "out_of_service"
    RETURNED_TO_SERVICE = "returned_to_service"
    SUPPRESSED = "suppressed"  # a raise while the alarm was out of view: recorded, not told
    LATE = "late"  # a condition that began and ended before it could be told: history


# What each transition says to a person (the console's history, the reports, the log):
# `{message}` is the alarm's own words (its clear words for CLEARED), `{by}` who did it
# and why.
EVENT_WORDS: dict[AlarmEvent, str] = {
    AlarmEvent.RAISED: "Raised: {message}",
    AlarmEvent.CLEARED: "Back to normal: {message}",
    AlarmEvent.ACKNOWLEDGED: "Acknowledged{by}: {message}",
    AlarmEvent.RESET: "Reset{by}, back to normal: {message}",
    AlarmEvent.SHELVED: "Shelved{by}: {message}",
    AlarmEvent.UNSHELVED: "Unshelved{by}, back in view: {message}",
    AlarmEvent.SHELVE_EXPIRED: "Shelf ran out, back in view: {message}",
    AlarmEvent.OUT_OF_SERVICE: "Asset out of service{by}: {message}",
    AlarmEvent.RETURNED_TO_SERVICE: "Asset back in service{by}: {message}",
    AlarmEvent.SUPPRESSED: "Raised out of view, nobody told: {message}",
    AlarmEvent.LATE: "Late, nobody told: {message}",
}


# Events that take an alarm out of view or bring it back.
_VIEW_EVENTS = frozenset(
    {
        AlarmEvent.SHELVED,
        AlarmEvent.UNSHELVED,
        AlarmEvent.SHELVE_EXPIRED,
        AlarmEvent.OUT_OF_SERVICE,
        AlarmEvent.RETURNED_TO_SERVICE,
    }
)

# The state tables (see the module docstring). A result of NORMAL becomes LATCHED for a
# latched alarm on a clear or an acknowledgement: see settle.
ON_RAISE = {
    AlarmState.NORMAL: AlarmState.UNACKED,
    AlarmState.RTN_UNACKED: AlarmState.UNACKED,
    AlarmState.LATCHED: AlarmState.UNACKED,
}
ON_CLEAR = {AlarmState.UNACKED: AlarmState.RTN_UNACKED, AlarmState.ACKED: AlarmState.NORMAL}
ON_ACK = {AlarmState.UNACKED: AlarmState.ACKED, AlarmState.RTN_UNACKED: AlarmState.NORMAL}
ON_RESET = {AlarmState.LATCHED: AlarmState.NORMAL}


class AlarmActionError(ValueError):
    """An operator action the alarm's state does not allow; the text is for the operator."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of an alarm, as stored. `at_ms` is the event time for a condition
    change, the wall time of an operator action, the shelf's end for an expiry;
    `recorded_ms` is always the wall time it was stored. `suppressed`: it happened while
    the alarm was out of the crew's view and stayed so (shelved, out of service)."""

    id: int
    key: AlarmKey
    event: AlarmEvent
    from_state: AlarmState
    to_state: AlarmState
    at_ms: int
    recorded_ms: int
    user: str
    comment: str
    priority: Priority
    message: str
    value: Value
    suppressed: bool = False
    since_ms: int | None = None  # LATE: when the condition began (at_ms: when it ended)

    @property
    def active(self) -> bool:
        """Whether the condition was active after this transition."""
        return self.to_state in ACTIVE_STATES

    @property
    def text(self) -> str:
        """The transition in a sentence for a person (EVENT_WORDS)."""
        by = f" by {self.user}" if self.user else ""
        if self.comment:
            by += f" ({self.comment})"
        return EVENT_WORDS[self.event].format(by=by, message=self.message)

    @property
    def notify(self) -> bool:
        """Whether the crew should hear of it. Hiding or showing an alarm is news only if
        it is something the crew deals with (not NORMAL): an alarm put out of view while
        they work on it, or one back in view still active."""
        if self.suppressed or self.event in (AlarmEvent.SUPPRESSED, AlarmEvent.LATE):
            return False
        if self.event in _VIEW_EVENTS:
            return self.to_state is not AlarmState.NORMAL
        return True


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm's row. `last_change_ms` is the event time of the newest condition
    change seen; `raised_ms` the event time of the latest raise; `acked_*` belong to the
    latest raise; `out_of_service` is its asset's."""

    key: AlarmKey
    state: AlarmState
    active: bool
    priority: Priority
    message: str
    value: Value
    latched: bool
    raised_ms: int | None
    last_change_ms: int
    updated_ms: int
    acked_ms: int | None = None
    acked_by: str | None = None
    shelved_until_ms: int | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None
    out_of_service: bool = False

    @property
    def shelved(self) -> bool:
        return self.shelved_until_ms is not None

    @property
    def hidden(self) -> bool:
        """Out of the crew's view: shelved or its asset out of service."""
        return self.shelved or self.out_of_service


# -- the state machine ----------------------------------------------------------------


def settle(state: AlarmState, latched: bool) -> AlarmState:
    """A latched alarm never returns to NORMAL by itself: it waits, LATCHED, for a reset."""
    return AlarmState.LATCHED if latched and state is AlarmState.NORMAL else state


def condition_flipped(alarm: Alarm, active: bool, at_ms: int) -> Alarm:
    if active:
        return replace(
            alarm,
            state=ON_RAISE[alarm.state],
            active=True,
            raised_ms=at_ms,
            acked_ms=None,
            acked_by=None,
        )
    return replace(alarm, state=settle(ON_CLEAR[alarm.state], alarm.latched), active=False)


def into_view(alarm: Alarm) -> Alarm:
    """Back in view (if neither shelved nor out of service any more): the alarm starts
    afresh from its condition, so the crew hears again of what is still wrong."""
    if alarm.hidden:
        return alarm
    if alarm.active:
        return replace(alarm, state=AlarmState.UNACKED, acked_ms=None, acked_by=None)
    return replace(alarm, state=AlarmState.NORMAL)


def unshelved(alarm: Alarm, now: int) -> Alarm:
    return replace(
        alarm, shelved_until_ms=None, shelved_by=None, shelve_reason=None, updated_ms=now
    )


def why_no_ack(alarm: Alarm) -> str:
    if alarm.state is AlarmState.NORMAL:
        return f"nothing to acknowledge: {alarm.key} is normal"
    by = f" by {alarm.acked_by}" if alarm.acked_by else ""
    at = f" at {iso_time(alarm.acked_ms)}" if alarm.acked_ms is not None else ""
    waiting = ", waiting for a reset" if alarm.state is AlarmState.LATCHED else ""
    return f"{alarm.key} is already acknowledged{by}{at}{waiting}"


def why_no_reset(alarm: Alarm) -> str:
    if alarm.active:
        return f"cannot reset {alarm.key}: its condition is still active"
    if alarm.state is AlarmState.RTN_UNACKED:
        return f"cannot reset {alarm.key}: acknowledge it first"
    return f"nothing to reset: {alarm.key} is normal"


def require(text: str, what: str) -> None:
    if not text.strip():
        raise AlarmActionError(f"{what} is required")


def parse_asset_path(asset_path: str) -> tuple[str, str, str]:
    parts = asset_path.split("/")
    if len(parts) != 3 or not all(parts):
        raise AlarmActionError(f"not SITE/STATION/ASSET: {asset_path!r}")
    return parts[0], parts[1], parts[2]


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration_words(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


def new_alarm(change: ConditionChange, now: int, out_of_service: bool) -> Alarm:
    return Alarm(
        key=change.key,
        state=AlarmState.NORMAL,
        active=False,
        priority=change.priority,
        message=change.message,
        value=change.value,
        latched=change.latched,
        raised_ms=None,
        last_change_ms=change.at_ms,
        updated_ms=now,
        out_of_service=out_of_service,
    )


def check_in_view(alarm: Alarm, verb: str) -> None:
    """Acknowledge and reset are refused while the crew cannot see the alarm."""
    key = alarm.key
    if alarm.shelved_until_ms is not None:
        raise AlarmActionError(
            f"cannot {verb} {key}: it is shelved until {iso_time(alarm.shelved_until_ms)} "
            f"(by {alarm.shelved_by}); unshelve it first"
        )
    if alarm.out_of_service:
        raise AlarmActionError(f"cannot {verb} {key}: {key.asset_path} is out of service")


def is_stale(before: Alarm | None, change: ConditionChange) -> bool:
    """Stale news: the gateway resent a batch, or a backlog from an outage arrived after
    newer readings. The book already holds what the condition was at a later instant, so
    an older change would undo newer knowledge (and re-raise what was cleared,
    re-notifying the crew). The same time is not stale: a repeat is then a no-op by
    `active`, and a real flip at the instant of the last one (never from the engine's
    delays) is not lost."""
    return before is not None and change.at_ms < before.last_change_ms


@dataclass(frozen=True, slots=True)
class Flip:
    """A condition change that moves the state: the alarm after it, the event it is
    recorded as, and the transition's own words and value (a clear's), if any."""

    after: Alarm
    event: AlarmEvent
    words: tuple[str, Value] | None


def after_condition(before: Alarm, change: ConditionChange, now: int) -> tuple[Alarm, Flip | None]:
    """The alarm with the change's priority and words, and the flip if its condition
    changed (None: a repeat, stored without a transition)."""
    # The alarm keeps the words it was raised with (what an acknowledgement or a reset
    # is about); its return to normal has its own, on the transition.
    news = replace(
        before,
        priority=change.priority,
        message=change.message if change.active else before.message,
        value=change.value if change.active else before.value,
        latched=change.latched,
        last_change_ms=change.at_ms,
        updated_ms=now,
    )
    if before.active == change.active:
        return news, None
    after = condition_flipped(news, change.active, change.at_ms)
    event = AlarmEvent.RAISED if change.active else AlarmEvent.CLEARED
    if change.active and before.hidden:
        event = AlarmEvent.SUPPRESSED
    words = None if change.active else (change.message, change.value)
    return news, Flip(after, event, words)


def after_acknowledge(alarm: Alarm, user: str, now: int) -> Alarm:
    check_in_view(alarm, "acknowledge")
    if alarm.state not in ON_ACK:
        raise AlarmActionError(why_no_ack(alarm))
    state = settle(ON_ACK[alarm.state], alarm.latched)
    return replace(alarm, state=state, acked_ms=now, acked_by=user, updated_ms=now)


def after_reset(alarm: Alarm, now: int) -> Alarm:
    check_in_view(alarm, "reset")
    if alarm.state not in ON_RESET:
        raise AlarmActionError(why_no_reset(alarm))
    return replace(alarm, state=ON_RESET[alarm.state], updated_ms=now)


def after_shelve(alarm: Alarm, user: str, reason: str, until_ms: int, now: int) -> Alarm:
    """Shelving a shelved alarm sets a new end."""
    return replace(
        alarm, shelved_until_ms=until_ms, shelved_by=user, shelve_reason=reason, updated_ms=now
    )


def after_unshelve(alarm: Alarm, now: int) -> Alarm:
    if not alarm.shelved:
        raise AlarmActionError(f"{alarm.key} is not shelved")
    return into_view(unshelved(alarm, now))
