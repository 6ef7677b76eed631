"""The alarm book's story for a report: what stood at an instant, what happened in a
period, who was told, and the EEMUA figures (ingest/alarms/kpi.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from ingest.alarms.readout import (
    AlarmBook,
    AlarmEvent,
    AlarmKey,
    AlarmKpis,
    AlarmState,
    NotifyStore,
    Positions,
    Priority,
    Transition,
    alarm_kpis,
    people_told,
)

HISTORY_LIMIT = 1_000_000
PER_ALARM_LIMIT = 500  # transitions read back per alarm to find its state at an instant


@dataclass(frozen=True)
class Raise:
    """One raise of one alarm and what followed it (within what was read)."""

    key: AlarmKey
    priority: Priority
    message: str
    raise_id: int
    raised_ms: int
    suppressed: bool  # raised while shelved or out of service: nobody was told
    acked_ms: int | None = None
    acked_by: str = ""
    cleared_ms: int | None = None
    reset_ms: int | None = None
    notified: tuple[str, ...] = ()

    @property
    def ack_s(self) -> float | None:
        return None if self.acked_ms is None else max(0, self.acked_ms - self.raised_ms) / 1000


@dataclass(frozen=True)
class Standing:
    """An alarm not NORMAL at an instant, or hidden from the crew then."""

    key: AlarmKey
    state: AlarmState
    priority: Priority
    message: str
    since_ms: int | None  # the raise it belongs to
    acked_by: str = ""
    acked_ms: int | None = None
    shelved_by: str = ""
    shelve_reason: str = ""
    shelved_ms: int | None = None
    out_of_service_by: str = ""
    out_of_service_reason: str = ""
    raise_id: int | None = None
    notified: tuple[str, ...] = ()

    @property
    def unacknowledged(self) -> bool:
        return self.state in (AlarmState.UNACKED, AlarmState.RTN_UNACKED)

    @property
    def hidden(self) -> bool:
        return bool(self.shelved_by or self.out_of_service_by)


def _apply(s: Standing, t: Transition) -> Standing:
    if t.event is AlarmEvent.LATE:
        return s  # history beside the alarm: its state and words stand
    s = replace(s, state=t.to_state, priority=t.priority, message=t.message)
    if t.event in (AlarmEvent.RAISED, AlarmEvent.SUPPRESSED):
        return replace(s, since_ms=t.at_ms, raise_id=t.id, acked_by="", acked_ms=None)
    if t.event is AlarmEvent.ACKNOWLEDGED:
        return replace(s, acked_by=t.user, acked_ms=t.at_ms)
    if t.event is AlarmEvent.SHELVED:
        return replace(s, shelved_by=t.user, shelve_reason=t.comment, shelved_ms=t.at_ms)
    if t.event in (AlarmEvent.UNSHELVED, AlarmEvent.SHELVE_EXPIRED):
        return replace(s, shelved_by="", shelve_reason="", shelved_ms=None)
    if t.event is AlarmEvent.OUT_OF_SERVICE:
        return replace(s, out_of_service_by=t.user, out_of_service_reason=t.comment)
    if t.event is AlarmEvent.RETURNED_TO_SERVICE:
        return replace(s, out_of_service_by="", out_of_service_reason="")
    return s


def standing_at(book: AlarmBook, at_ms: int, since_ms: int) -> list[Standing]:
    """Alarms not normal, or hidden, at `at_ms`: replayed from each one's history. An
    alarm abnormal then is abnormal now or changed since `since_ms` (pass the period's
    start less the longest shelf), so only those alarms' histories are read."""
    keys = {a.key for a in book.active()}
    keys |= {t.key for t in book.history(since_ms=since_ms, limit=HISTORY_LIMIT)}
    out = []
    for key in sorted(keys):
        history = book.history(key=key, until_ms=at_ms + 1, limit=PER_ALARM_LIMIT)
        if not history:
            continue
        first = history[0]
        state = Standing(key, first.from_state, first.priority, first.message, None)
        for t in history:
            state = _apply(state, t)
        if state.state is not AlarmState.NORMAL or state.hidden:
            out.append(state)
    return sorted(out, key=lambda s: (s.priority.rank, s.since_ms or 0, s.key))


def raises_in(book: AlarmBook, start_ms: int, end_ms: int) -> list[Raise]:
    """Every raise in [start, end) with its acknowledgement, clear and reset (as far as
    they happened before `end_ms`)."""
    open_: dict[AlarmKey, Raise] = {}
    done: list[Raise] = []
    for t in book.history(since_ms=start_ms, until_ms=end_ms, limit=HISTORY_LIMIT):
        if t.event in (AlarmEvent.RAISED, AlarmEvent.SUPPRESSED):
            if t.key in open_:
                done.append(open_.pop(t.key))
            open_[t.key] = Raise(
                t.key, t.priority, t.message, t.id, t.at_ms, t.event is AlarmEvent.SUPPRESSED
            )
        elif t.key in open_:
            open_[t.key] = _follow(open_[t.key], t)
    return sorted([*done, *open_.values()], key=lambda r: (r.raised_ms, r.key))


def _follow(r: Raise, t: Transition) -> Raise:
    if t.event is AlarmEvent.ACKNOWLEDGED:
        return replace(r, acked_ms=t.at_ms, acked_by=t.user)
    if t.event is AlarmEvent.CLEARED:
        return replace(r, cleared_ms=t.at_ms)
    if t.event is AlarmEvent.RESET:
        return replace(r, reset_ms=t.at_ms)
    return r


def cleared_in(book: AlarmBook, start_ms: int, end_ms: int) -> list[Transition]:
    """Clears in the period (of raises in it or before it)."""
    history = book.history(since_ms=start_ms, until_ms=end_ms, limit=HISTORY_LIMIT)
    return [t for t in history if t.event is AlarmEvent.CLEARED]


def late_in(book: AlarmBook, start_ms: int, end_ms: int) -> list[Transition]:
    """Late conditions that ended in the period: began and ended before their data
    arrived (a gateway's outage), so nobody was told; history for the crew."""
    history = book.history(since_ms=start_ms, until_ms=end_ms, limit=HISTORY_LIMIT)
    late = [t for t in history if t.event is AlarmEvent.LATE]
    return sorted(late, key=lambda t: (t.since_ms or t.at_ms, t.key))


def who_was_told(store: NotifyStore | None, key: AlarmKey, raise_id: int | None) -> tuple[str, ...]:
    """The people the notifier told of this raise (crew on duty, then escalation tiers),
    from its store; () when there is no store or no record."""
    if store is None or raise_id is None:
        return ()
    return people_told(store, key, raise_id)


def with_notified_raises(store: NotifyStore | None, raises: list[Raise]) -> list[Raise]:
    return [replace(r, notified=who_was_told(store, r.key, r.raise_id)) for r in raises]


def with_notified_standing(store: NotifyStore | None, standing: list[Standing]) -> list[Standing]:
    return [replace(s, notified=who_was_told(store, s.key, s.raise_id)) for s in standing]


@dataclass
class AlarmSummary:
    """The alarm figures of an operations report."""

    raises: list[Raise]
    kpis: AlarmKpis
    by_priority: dict[str, int] = field(default_factory=dict)
    by_rule: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    late: list[Transition] = field(default_factory=list)  # late conditions (late_in)

    @property
    def ack_mean_s(self) -> float | None:
        times = [r.ack_s for r in self.raises if r.ack_s is not None]
        return sum(times) / len(times) if times else None


def summarise(
    book: AlarmBook, start_ms: int, end_ms: int, positions: Positions | None = None
) -> AlarmSummary:
    """`positions`: EEMUA's operator positions (`ingest.alarms.kpi.positions_for`);
    None: the sites, so the report's rates are per site only."""
    raises = raises_in(book, start_ms, end_ms)
    told = [r for r in raises if not r.suppressed]
    by_priority = Counter(r.priority.value for r in told)
    return AlarmSummary(
        raises=raises,
        kpis=alarm_kpis(book, until_ms=end_ms, window_ms=end_ms - start_ms, positions=positions),
        by_priority={p.value: by_priority.get(p.value, 0) for p in Priority},
        by_rule=dict(sorted(Counter(r.key.rule for r in told).items())),
        suppressed=len(raises) - len(told),
        late=late_in(book, start_ms, end_ms),
    )
