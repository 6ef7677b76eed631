"""Readings in, condition changes out: the alarm rules evaluated on event time.

Each asset keeps its latest value per signal. Readings are applied in acquisition-time
order; on-delay and off-delay are measured in event time between readings, so a
backlog replayed fast or a simulated clock gives the same alarms as real time. Only the
gateway deadman runs on the wall clock (`tick`): silence is what it detects. A device's
deadman (`silent`) compares the asset's newest reading with its gateway's newest.

When a gateway that was offline is heard again, its outage is placed in event time: its
last reading before the silence plus the wall time the silence lasted. Readings from
inside the outage (the gateway's backlog) are evaluated like any other and can end an
alarm, but raise none: a condition that began and ended while the gateway was away is
history, recorded as a late condition (for the journal, never notified). One still
true when live data arrives raises then. The device deadman counts from the gateway's
return, so devices whose backlog was lost are not called silent.

Out-of-order history. A gateway sends its newest readings first when its link returns
(the live lane) and its backlog after, so the backlog is older than what the engine
already holds. When a gateway is heard after a silence (a reconnection), the engine
keeps a copy of where every rule of the station stood and of the values it knew: the
past. Readings older than the asset's newest are evaluated on that past, in their own
event time, and only there: they may end an alarm that the live data also finds over
(at the backlog's instant, not the live data's), they record late conditions, and a
condition the backlog shows began earlier lets a waiting on-delay count from then. They
never raise. Readings the past already holds (a batch sent again) change nothing, nor do
late readings when no reconnection preceded them. Rate and flatline rules take each
reading once, in order, and ignore late ones.

Suppression by design, before a condition may raise:
- assets out of service in the asset register have no rules bound at all;
- `suppress_when` (e.g. a stopped pump raises no low-flow);
- `inhibited_by`: another rule active on the same asset (HH inhibits H);
- a device rule active on the asset inhibits its value rules (the values are stale), and
  its device deadman (`silent`): the narrower cause, one alarm per cause;
- the station's gateway alarm inhibits every alarm behind it, and so does its outage
  once over, for the readings acquired during it.

Nothing is raised and cleared within one evaluation (one batch): such a condition was
over before anyone could be told, and is recorded as a late condition.
"""

from __future__ import annotations

import ast
import copy
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial

from facility.config import SiteConfig
from facility.wire import Reading, Value
from ingest.alarms.evaluators import (
    AssetValues,
    Context,
    Evaluator,
    duration_words,
    evaluator_for,
)
from ingest.alarms.expressions import Test, compile_test
from ingest.alarms.model import AlarmKey, ConditionChange
from ingest.alarms.rules import (
    FUNCTIONS,
    Bound,
    GatewayRule,
    MessagePart,
    Rule,
    RuleSet,
    SilentRule,
    ratings_of,
    render_message,
)

# Gateways send their health every 10 s: a batch after a longer wall-clock silence means
# the link was down, and a backlog older than the live data may follow.
RECONNECT_AFTER_MS = 20_000
# After a reconnection, the live data's first clear of an alarm that stood before it
# waits this long (the gateway's live window): the backlog that follows may show the
# condition ended earlier, and then the alarm clears at that time instead.
BACKLOG_WAIT_MS = 10_000


class Step(Enum):
    RAISED = "raised"
    CLEARED = "cleared"
    LATE_BEGAN = "late_began"  # would have raised, inside an outage: nobody can be told
    LATE_ENDED = "late_ended"  # a late condition over: history for the journal


class Hold(Enum):
    INHIBITED = "inhibited"  # another alarm stands for the cause: no raise at all
    OUTAGE = "outage"  # acquired while the gateway was away: a late condition at most


@dataclass
class Phase:
    """Where one rule stands on one asset, in event time."""

    active: bool = False
    pending_since: int | None = None  # raw condition true since, while not active
    clearing_since: int | None = None  # raw condition false since, while active
    late_since: int | None = None  # active only inside an outage: never raised
    late_message: str = ""
    late_value: Value = None


def advance(
    phase: Phase,
    raw: bool,
    ts: int,
    rule: Rule,
    hold: Callable[[], Hold | None],
    clear_not_before: int | None = None,
) -> Step | None:
    """One reading's worth of a rule: on- and off-delay, inhibition, outages.
    `clear_not_before`: a clear waits for this event time (the backlog may end it
    earlier, at its own time)."""
    if not phase.active:
        phase.clearing_since = None
        if not raw:
            phase.pending_since = None
            return None
        if phase.pending_since is None:
            phase.pending_since = ts
        if ts - phase.pending_since < rule.on_delay * 1000:
            return None
        held = hold()
        if held is Hold.INHIBITED:
            return None
        phase.active = True
        if held is Hold.OUTAGE:
            phase.late_since = ts
            return Step.LATE_BEGAN
        return Step.RAISED
    if raw:
        phase.clearing_since = None
        if phase.late_since is not None and hold() is None:
            phase.late_since = None  # still true now the gateway is back: raise with live data
            return Step.RAISED
        return None
    if phase.clearing_since is None:
        phase.clearing_since = ts
    if ts - phase.clearing_since < rule.off_delay * 1000:
        return None
    if clear_not_before is not None and ts < clear_not_before:
        return None
    late = phase.late_since is not None
    phase.active, phase.pending_since, phase.clearing_since = False, None, None
    phase.late_since = None
    return Step.LATE_ENDED if late else Step.CLEARED


@dataclass
class Tracker:
    """One bound rule in the engine: its kind's evaluator (chosen once, when the engine
    is built), its phase now, and in the past while a backlog is evaluated (see the
    module docstring)."""

    bound: Bound
    key: AlarmKey
    evaluator: Evaluator
    suppress: Test | None  # the rule's `suppress_when`, compiled
    phase: Phase = field(default_factory=Phase)
    past: Phase | None = None
    path: str = field(init=False)  # the asset's, made once: every batch asks

    def __post_init__(self) -> None:
        self.path = self.bound.path

    @property
    def active(self) -> bool:
        return self.phase.active


class AlarmEngine:
    def __init__(self, rules: RuleSet, site: SiteConfig) -> None:
        self.rules = rules
        self.evaluations = 0
        self._trackers: dict[str, list[Tracker]] = defaultdict(list)  # asset path -> trackers
        self._gateways: dict[tuple[str, str], Tracker] = {}
        self._last_heard: dict[tuple[str, str], tuple[int, int]] = {}  # wall ms, event ms
        self._assets: dict[str, AssetValues] = defaultdict(AssetValues)
        self._silent: dict[tuple[str, str], list[Tracker]] = defaultdict(list)
        self._paths: dict[tuple[str, str], set[str]] = defaultdict(set)  # per station
        self._first_event: dict[tuple[str, str], int] = {}  # per station: silent since
        self._outage_until: dict[tuple[str, str], int] = {}  # event ms a gateway came back
        self._clear_not_before: dict[tuple[str, str], int] = {}  # per station (BACKLOG_WAIT)
        self._pace: dict[tuple[str, str], float] = {}  # per station: ms between batches
        self._units = _units(site)
        self._station_names = {
            (s.id, st.id): st.name or st.id for s in site.sites for st in s.stations
        }
        self._ratings = {b.path: ratings_of(b.asset) for b in rules.bound}
        context = Context(self._test, self._units)
        for bound in rules.bound:
            key = AlarmKey(bound.site, bound.station, bound.asset.id, bound.id)
            suppress = self._test(bound.suppress, bound) if bound.suppress else None
            tracker = Tracker(bound, key, evaluator_for(bound, context), suppress)
            if isinstance(bound.rule, GatewayRule):
                self._gateways[(bound.site, bound.station)] = tracker
            elif isinstance(bound.rule, SilentRule):
                self._silent[(bound.site, bound.station)].append(tracker)
            else:
                self._trackers[bound.path].append(tracker)
                self._paths[(bound.site, bound.station)].add(bound.path)
        for trackers in self._trackers.values():
            # Device rules first: a device that stopped answering inhibits its values at
            # the same instant, before a stale value can raise anything.
            trackers.sort(key=lambda t: not t.evaluator.reads_status)

    def restore(self, active: Iterable[AlarmKey]) -> None:
        """After a restart: the alarm book's active alarms are active here too, so they
        can clear, instead of being raised a second time."""
        wanted = set(active)
        for tracker in self._all():
            tracker.phase = Phase(active=tracker.key in wanted)

    def observe(
        self, site: str, station: str, readings: Sequence[Reading], received_ms: int
    ) -> list[ConditionChange]:
        """One batch from a gateway: its readings in event-time order, per asset."""
        newest, by_instant = _instants(readings, received_ms)
        changes = self._heard(site, station, newest, received_ms)
        for (ts, asset), group in sorted(by_instant.items()):
            path = f"{site}/{station}/{asset}"
            state = self._assets[path]
            if state.newest is None or ts > state.newest:
                _apply_newer(state, group, ts)
                state.newest = ts
                changes += self._evaluate(path, ts)
            elif ts < state.newest:
                changes += self._evaluate_past(path, ts, group)
                _apply(state, group)  # a signal with nothing newer: its latest value
            elif _apply(state, group):  # the asset's newest instant again: what is news
                changes += self._evaluate(path, ts)
        if readings and (site, station) in self._silent:
            changes += self._silence(site, station, newest)
        return _settled(changes)

    # --- deadmen ---------------------------------------------------------------------

    def _silence(self, site: str, station: str, newest: int) -> list[ConditionChange]:
        """Device deadman: each asset's newest reading against its gateway's. A device
        rule on the asset (not answering, errors) is the narrower cause: it holds the
        silence back."""
        first = self._first_event.setdefault((site, station), newest)
        back = self._outage_until.get((site, station), first)
        trackers = self._silent[(site, station)]
        self.evaluations += len(trackers)
        changes = []
        for tracker in trackers:
            rule = tracker.bound.rule
            assert isinstance(rule, SilentRule)
            state = self._assets[tracker.path]
            heard = back if state.newest is None or state.newest < back else state.newest
            silent = newest - heard >= rule.silent_for * 1000
            if silent == tracker.phase.active:
                continue  # the usual case: nothing changed
            if silent:
                if self._device_trouble(tracker.path):
                    continue
                message = f"{_name(tracker.bound)}: nothing received for "
                message += f"{duration_words(newest - heard)} while its gateway delivers"
                at = heard + int(rule.silent_for * 1000)
                changes.append(self._change(tracker, True, at, message, None))
            else:
                message = f"{_name(tracker.bound)}: reporting again"
                changes.append(self._change(tracker, False, heard, message, None))
        return changes

    def _device_trouble(self, path: str) -> bool:
        """A device rule on the asset is active, or its condition holds (on-delay)."""
        return any(
            t.evaluator.reads_status and (t.phase.active or t.phase.pending_since is not None)
            for t in self._trackers.get(path, [])
        )

    def tick(self, now_ms: int) -> list[ConditionChange]:
        """The gateway deadman, on the wall clock."""
        changes = []
        for gateway, tracker in self._gateways.items():
            heard = self._last_heard.get(gateway)
            rule = tracker.bound.rule
            assert isinstance(rule, GatewayRule)
            if tracker.active or heard is None:
                continue  # never heard of: it has not started yet, not silent
            silent_ms = now_ms - heard[0]
            if silent_ms >= rule.silent_for * 1000:
                message = f"{self._gateway_name(gateway)}: nothing received for "
                message += duration_words(silent_ms)
                changes.append(self._change(tracker, True, heard[1] + silent_ms, message, None))
        return changes

    def _gateway_name(self, station: tuple[str, str]) -> str:
        return f"{self._station_names.get(station, station[1])} gateway"

    def _heard(
        self, site: str, station: str, newest: int, received_ms: int
    ) -> list[ConditionChange]:
        """`newest`: the batch's newest reading's event time (received_ms if none)."""
        before = self._last_heard.get((site, station))
        self._last_heard[(site, station)] = (received_ms, max(newest, before[1] if before else 0))
        tracker = self._gateways.get((site, station))
        offline = tracker is not None and tracker.active
        gap = self._gap((site, station), received_ms - before[0]) if before else False
        if before is not None and (offline or gap):
            self._remember_past(site, station)
            if newest - before[1] > (received_ms - before[0]) / 2:
                # the first batch leaps over the silence: live data first, backlog after
                self._clear_not_before[(site, station)] = newest + BACKLOG_WAIT_MS
        if tracker is None or not offline:
            return []
        if before is not None:
            # event time runs with the wall clock, whatever the gateway clock's offset
            newest = max(newest, before[1] + received_ms - before[0])
            self._outage_until[(site, station)] = newest
        silent_ms = received_ms - before[0] if before is not None else 0
        message = f"{self._gateway_name((site, station))}: delivering again"
        if silent_ms:
            message += f" after {duration_words(silent_ms)} of silence"
        return [self._change(tracker, False, newest, message, None)]

    def _gap(self, station: tuple[str, str], silent_ms: int) -> bool:
        """Whether a silence this long means the link was down: longer than 20 s and
        than three times the gateway's usual pace (a simulated history may deliver a
        batch a minute). Batches in a burst (a backlog) say nothing of the pace."""
        pace = self._pace.get(station)
        gap = pace is not None and silent_ms > max(RECONNECT_AFTER_MS, 3 * pace)
        if silent_ms >= 1000 and not gap:
            self._pace[station] = silent_ms if pace is None else 0.8 * pace + 0.2 * silent_ms
        return gap

    def _remember_past(self, site: str, station: str) -> None:
        """A reconnection: where each rule stood and what each asset knew, before the
        live data moves on, so the backlog that follows can be evaluated in its time."""
        for path in self._paths.get((site, station), ()):
            state = self._assets[path]
            state.past = AssetValues(
                dict(state.values),
                dict(state.stamps),
                dict(state.status),
                dict(state.status_stamps),
                state.newest,
            )
            for tracker in self._trackers[path]:
                tracker.past = copy.copy(tracker.phase)

    # --- evaluation ------------------------------------------------------------------

    def _evaluate(self, path: str, ts: int) -> list[ConditionChange]:
        changes = []
        state = self._assets[path]
        trackers = self._trackers.get(path, [])
        self.evaluations += len(trackers)
        for tracker in trackers:
            phase = tracker.phase
            if tracker.suppress is None:  # `_condition`, inline: the hottest loop
                raw, value = tracker.evaluator.condition(state, ts, phase.active)
            else:
                raw, value = self._condition(tracker, state, ts, phase.active)
            if raw is None:
                continue
            if not raw and not phase.active:
                # what `advance` makes of it, without its arguments: the usual case
                phase.pending_since = phase.clearing_since = None
                continue
            began, was = phase.late_since, (phase.late_message, phase.late_value)
            hold = partial(self._held, tracker, trackers, ts)
            step = advance(phase, raw, ts, tracker.bound.rule, hold, self._wait(tracker))
            if step is None:
                continue
            change = self._stepped(tracker, step, ts, state, value, began, was)
            if change is not None:
                changes.append(change)
        return changes

    def _wait(self, tracker: Tracker) -> int | None:
        """An alarm that stood before a reconnection waits for the backlog to clear."""
        if tracker.past is None or not tracker.past.active or tracker.past.late_since:
            return None
        return self._clear_not_before.get((tracker.bound.site, tracker.bound.station))

    def _evaluate_past(self, path: str, ts: int, group: list[Reading]) -> list[ConditionChange]:
        """Backlog readings, older than what the asset has: on the past (module
        docstring). They may end an alarm, never raise one."""
        state = self._assets[path]
        past = state.past
        if past is None or not _apply(past, group):
            return []  # no reconnection before them, or the past has them: sent again
        past.newest = ts if past.newest is None else max(past.newest, ts)
        changes = []
        trackers = self._trackers.get(path, [])
        for tracker in trackers:
            phase = tracker.past
            if phase is None or not tracker.evaluator.takes_backlog:
                continue
            self.evaluations += 1
            raw, value = self._condition(tracker, past, ts, phase.active)
            if raw is None:
                continue
            began, was = phase.late_since, (phase.late_message, phase.late_value)
            step = advance(
                phase, raw, ts, tracker.bound.rule, partial(self._held_past, tracker, trackers)
            )
            change = self._settle_past(tracker, step, ts, past, value, began, was)
            if change is not None:
                changes.append(change)
        return changes

    def _settle_past(
        self,
        tracker: Tracker,
        step: Step | None,
        ts: int,
        past: AssetValues,
        value: Value,
        began: int | None,
        was: tuple[str, Value],
    ) -> ConditionChange | None:
        """What a backlog step means for the alarm now."""
        now, then = tracker.phase, tracker.past
        assert then is not None
        if step is Step.LATE_BEGAN:
            then.late_message, then.late_value = self._raise_words(tracker, past, ts), value
            return None
        if step is Step.LATE_ENDED:
            return self._late(tracker, began, ts, was, past, value)
        if step is Step.CLEARED:
            if now.active and now.late_since is None and now.clearing_since is not None:
                # over in the backlog, and over in the live data too: over since then
                tracker.phase = Phase()
                return self._change(tracker, False, ts, self._clear_words(tracker, past), value)
            return None
        over_then = then.active and then.clearing_since is not None
        if over_then and now.active and now.clearing_since is not None:
            # over in the backlog since then, over in the live data too: the off-delay
            # counts from then
            now.clearing_since = min(now.clearing_since, then.clearing_since or ts)
        if then.pending_since is not None and not now.active and now.pending_since is not None:
            now.pending_since = min(now.pending_since, then.pending_since)
        return None

    def _stepped(
        self,
        tracker: Tracker,
        step: Step,
        ts: int,
        state: AssetValues,
        value: Value,
        began: int | None,
        was: tuple[str, Value],
    ) -> ConditionChange | None:
        phase = tracker.phase
        if step is Step.RAISED:
            return self._change(tracker, True, ts, self._raise_words(tracker, state, ts), value)
        if step is Step.CLEARED:
            return self._change(tracker, False, ts, self._clear_words(tracker, state), value)
        if step is Step.LATE_BEGAN:
            phase.late_message, phase.late_value = self._raise_words(tracker, state, ts), value
            return None
        return self._late(tracker, began, ts, was, state, value)

    def _late(
        self,
        tracker: Tracker,
        began: int | None,
        ended: int,
        was: tuple[str, Value],
        state: AssetValues,
        value: Value,
    ) -> ConditionChange:
        assert began is not None
        message, raised_value = was
        rule = tracker.bound.rule
        return ConditionChange(
            tracker.key,
            False,
            ended,
            rule.priority,
            _late_words(message or self._raise_words(tracker, state, began), began, ended),
            raised_value if raised_value is not None else value,
            rule.latched,
            late_since_ms=began,
        )

    def _held(self, tracker: Tracker, neighbours: list[Tracker], ts: int) -> Hold | None:
        station = (tracker.bound.site, tracker.bound.station)
        gateway = self._gateways.get(station)
        if gateway is not None and gateway.active:
            return Hold.INHIBITED
        if self._inhibited(tracker, neighbours, lambda t: t.phase):
            return Hold.INHIBITED
        if ts < self._outage_until.get(station, ts):
            return Hold.OUTAGE  # acquired while the gateway was offline: backlog
        return None

    def _held_past(self, tracker: Tracker, neighbours: list[Tracker]) -> Hold:
        if self._inhibited(tracker, neighbours, lambda t: t.past or Phase()):
            return Hold.INHIBITED
        return Hold.OUTAGE

    def _inhibited(
        self, tracker: Tracker, neighbours: list[Tracker], phase_of: Callable[[Tracker], Phase]
    ) -> bool:
        rule = tracker.bound.rule
        for other in neighbours:
            if other is tracker or not phase_of(other).active:
                continue
            if other.bound.id in rule.inhibited_by:
                return True
            if other.evaluator.reads_status and not tracker.evaluator.reads_status:
                return True
        return False

    def _change(
        self, tracker: Tracker, active: bool, at_ms: int, message: str, value: Value
    ) -> ConditionChange:
        if tracker.evaluator.deadman:
            tracker.phase = Phase(active=active)
        rule = tracker.bound.rule
        return ConditionChange(
            tracker.key, active, at_ms, rule.priority, message, value, rule.latched
        )

    # --- conditions ------------------------------------------------------------------

    def _condition(
        self, tracker: Tracker, state: AssetValues, ts: int, active: bool
    ) -> tuple[bool | None, Value]:
        """(raw condition or None when it cannot be told yet, the value)."""
        if tracker.suppress is not None:
            suppressed = tracker.suppress(state.values)
            if suppressed is None:
                return None, None  # cannot tell yet whether it applies
            if suppressed:
                return False, None
        return tracker.evaluator.condition(state, ts, active)

    def _test(self, tree: ast.AST, bound: Bound) -> Test:
        """An expression of the rule, compiled once: the asset's values (and its
        ratings) to its truth."""
        return compile_test(tree, self._ratings[bound.path], FUNCTIONS)

    # --- words -----------------------------------------------------------------------

    def _raise_words(self, tracker: Tracker, state: AssetValues, ts: int) -> str:
        """What the alarm is about, for a person: the rule's `message` filled in, or the
        kind's own words."""
        bound = tracker.bound
        text = self._render(tracker, bound.message, state)
        if text is None:
            text = tracker.evaluator.raise_words(state, ts)
        return f"{_name(bound)}: {text}"

    def _clear_words(self, tracker: Tracker, state: AssetValues) -> str:
        """The return to normal, for a person: the rule's `clear_message` filled in, or
        the kind's own words; never the rule's expression."""
        bound = tracker.bound
        text = self._render(tracker, bound.clear_message, state)
        if text is None:
            text = tracker.evaluator.clear_words(state)
        if tracker.suppress is not None and tracker.suppress(state.values):
            text += " (no alarm in this state, by design)"
        return f"{_name(bound)}: {text}"

    def _render(
        self, tracker: Tracker, template: tuple[MessagePart, ...], state: AssetValues
    ) -> str | None:
        if not template:
            return None
        bound = tracker.bound
        values = state.status if tracker.evaluator.reads_status else state.values
        extra = {"limit": bound.level} if bound.level is not None else {}
        return render_message(template, {**self._ratings[bound.path], **values, **extra})

    def _all(self) -> Iterable[Tracker]:
        yield from self._gateways.values()
        for silent in self._silent.values():
            yield from silent
        for trackers in self._trackers.values():
            yield from trackers


def _apply(state: AssetValues, readings: list[Reading]) -> bool:
    """Take the readings that are news; False when all of them were late."""
    fresh = False
    values, stamps = state.values, state.stamps
    for r in readings:
        if r.kind == "s":
            fresh = _take(state.status, state.status_stamps, r) or fresh
        elif r.ts_ms > stamps.get(r.signal, -1):  # inline: one call a reading costs
            values[r.signal] = r.value
            stamps[r.signal] = r.ts_ms
            fresh = True
    return fresh


def _apply_newer(state: AssetValues, readings: list[Reading], ts: int) -> None:
    """Readings of an instant newer than all the asset has (every stamp is at most its
    `newest`): all news, no stamp to compare. Taken last to first, so that of a signal
    sent twice the first stays, as `_apply` keeps it."""
    values, stamps = state.values, state.stamps
    for r in reversed(readings):
        if r.kind == "s":
            state.status[r.signal] = r.value
            state.status_stamps[r.signal] = ts
        else:
            values[r.signal] = r.value
            stamps[r.signal] = ts


def _take(values: dict[str, Value], stamps: dict[str, int], r: Reading) -> bool:
    if r.ts_ms <= stamps.get(r.signal, -1):
        return False
    values[r.signal] = r.value
    stamps[r.signal] = r.ts_ms
    return True


def _instants(
    readings: Sequence[Reading], received_ms: int
) -> tuple[int, dict[tuple[int, str], list[Reading]]]:
    """The batch's newest event time (received_ms if none) and its readings by
    (acquisition time, asset), health aside. A gateway sends an asset's poll together:
    a reading like the one before joins its group without a key made."""
    newest = received_ms if not readings else readings[0].ts_ms
    by_instant: dict[tuple[int, str], list[Reading]] = {}
    group: list[Reading] = []
    ts: int | None = None
    asset = ""
    for reading in readings:
        at = reading.ts_ms
        if at > newest:
            newest = at
        if reading.kind == "h":
            continue
        if at != ts or reading.asset != asset:
            ts, asset = at, reading.asset
            group = by_instant.setdefault((ts, asset), [])
        group.append(reading)
    return newest, by_instant


def _settled(changes: list[ConditionChange]) -> list[ConditionChange]:
    """Nothing raised and cleared within one evaluation: such a condition was over
    before anyone could be told; it becomes a late condition."""
    out: list[ConditionChange | None] = list(changes)
    raised: dict[AlarmKey, int] = {}
    for i, change in enumerate(changes):
        if change.late:
            continue
        if change.active:
            raised[change.key] = i
        elif change.key in raised:
            j = raised.pop(change.key)
            began = changes[j]
            out[j] = None
            message = _late_words(began.message, began.at_ms, change.at_ms)
            out[i] = replace(
                began, active=False, at_ms=change.at_ms, message=message, late_since_ms=began.at_ms
            )
    return [c for c in out if c is not None]


def _late_words(message: str, began: int, ended: int) -> str:
    return f"{message} (for {duration_words(ended - began)}, over before its data arrived)"


def _name(bound: Bound) -> str:
    return bound.asset.name or bound.asset.id


def _units(site: SiteConfig) -> dict[tuple[str, str], str]:
    return {
        (name, signal.name): signal.unit
        for name, profile in site.profiles.items()
        for signal in profile.signals
    }
