"""Readings in, condition changes out: the alarm rules evaluated on event time.

Each asset keeps its latest value per signal. Readings are applied in acquisition-time
order; a reading older than what the asset already has for that signal is late (a
backlog after an outage, or a batch sent again) and changes nothing: its condition is
already over or already known, so it raises no stale or duplicate alarm. It is still
in InfluxDB, like every reading.

On-delay and off-delay are measured in event time between readings, so a backlog
replayed fast or a simulated clock gives the same alarms as real time. Only the
gateway deadman runs on the wall clock (`tick`): silence is what it detects. A device's
deadman (`silent`) compares the asset's newest reading with its gateway's newest.

When a gateway that was offline is heard again, its outage is placed in event time: its
last reading before the silence plus the wall time the silence lasted. Readings from
inside the outage (the gateway's backlog) are evaluated like any other, and can end an
alarm, but raise none: a condition that began and ended while the gateway was away is
history. One still true when live data arrives raises then. The device deadman counts
from the gateway's return, so devices whose backlog was lost are not called silent.

Suppression by design, before a condition may raise:
- assets out of service in the asset register have no rules bound at all;
- `suppress_when` (e.g. a stopped pump raises no low-flow);
- `inhibited_by`: another rule active on the same asset (HH inhibits H);
- a device rule active on the asset inhibits its value rules (the values are stale);
- the station's gateway alarm inhibits every alarm behind it, and so does its outage
  once over, for the readings acquired during it.
"""

from __future__ import annotations

import ast
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from simpleeval import SimpleEval

from facility.config import SiteConfig
from facility.wire import Reading, Value
from ingest.alarms.model import AlarmKey, ConditionChange
from ingest.alarms.rules import (
    FUNCTIONS,
    Bound,
    ConditionRule,
    DeviceRule,
    GatewayRule,
    RateRule,
    RuleSet,
    SilentRule,
    ThresholdRule,
    UnchangedRule,
    ratings_of,
    render_message,
)

RATE_WINDOW_MS = 60_000


@dataclass
class Tracker:
    """The state of one bound rule: raw condition since when, alarm condition or not."""

    bound: Bound
    key: AlarmKey
    active: bool = False
    pending_since: int | None = None  # raw condition true since (event time)
    clearing_since: int | None = None  # raw condition false since, while active
    history: deque[tuple[int, float]] = field(default_factory=deque)  # rate rules: (ts, value)
    still_since: tuple[Value, int] | None = None  # unchanged rules: value, since


@dataclass
class AssetValues:
    values: dict[str, Value] = field(default_factory=dict)
    stamps: dict[str, int] = field(default_factory=dict)
    status: dict[str, Value] = field(default_factory=dict)
    status_stamps: dict[str, int] = field(default_factory=dict)
    newest: int | None = None  # the newest of all the stamps


class AlarmEngine:
    def __init__(self, rules: RuleSet, site: SiteConfig) -> None:
        self.rules = rules
        self.evaluations = 0
        self._trackers: dict[str, list[Tracker]] = defaultdict(list)  # asset path -> trackers
        self._gateways: dict[tuple[str, str], Tracker] = {}
        self._last_heard: dict[tuple[str, str], tuple[int, int]] = {}  # wall ms, event ms
        self._assets: dict[str, AssetValues] = defaultdict(AssetValues)
        self._silent: dict[tuple[str, str], list[Tracker]] = defaultdict(list)
        self._first_event: dict[tuple[str, str], int] = {}  # per station: silent since
        self._outage_until: dict[tuple[str, str], int] = {}  # event ms a gateway came back
        self._eval = SimpleEval(functions=FUNCTIONS)
        self._units = _units(site)
        self._ratings = {b.path: ratings_of(b.asset) for b in rules.bound}
        for bound in rules.bound:
            key = AlarmKey(bound.site, bound.station, bound.asset.id, bound.id)
            tracker = Tracker(bound, key)
            if isinstance(bound.rule, GatewayRule):
                self._gateways[(bound.site, bound.station)] = tracker
            elif isinstance(bound.rule, SilentRule):
                self._silent[(bound.site, bound.station)].append(tracker)
            else:
                self._trackers[bound.path].append(tracker)
        for trackers in self._trackers.values():
            # Device rules first: a device that stopped answering inhibits its values at
            # the same instant, before a stale value can raise anything.
            trackers.sort(key=lambda t: not isinstance(t.bound.rule, DeviceRule))

    def restore(self, active: Iterable[AlarmKey]) -> None:
        """After a restart: the alarm book's active alarms are active here too, so they
        can clear, instead of being raised a second time."""
        wanted = set(active)
        for tracker in self._all():
            tracker.active = tracker.key in wanted

    def observe(
        self, site: str, station: str, readings: Sequence[Reading], received_ms: int
    ) -> list[ConditionChange]:
        """One batch from a gateway: its readings in event-time order, per asset."""
        changes = self._heard(site, station, readings, received_ms)
        by_instant: dict[tuple[int, str], list[Reading]] = defaultdict(list)
        for reading in readings:
            if reading.kind != "h":
                by_instant[(reading.ts_ms, reading.asset)].append(reading)
        for (ts, asset), group in sorted(by_instant.items()):
            path = f"{site}/{station}/{asset}"
            state = self._assets[path]
            if self._apply(state, group):
                state.newest = ts if state.newest is None else max(state.newest, ts)
                changes += self._evaluate(path, ts)
        if readings and (site, station) in self._silent:
            changes += self._silence(site, station, max(r.ts_ms for r in readings))
        return changes

    def _silence(self, site: str, station: str, newest: int) -> list[ConditionChange]:
        """Device deadman: each asset's newest reading against its gateway's."""
        first = self._first_event.setdefault((site, station), newest)
        changes = []
        for tracker in self._silent[(site, station)]:
            rule = tracker.bound.rule
            assert isinstance(rule, SilentRule)
            state = self._assets[tracker.bound.path]
            back = self._outage_until.get((site, station), first)
            heard = back if state.newest is None else max(state.newest, back)
            silent_ms = newest - heard
            self.evaluations += 1
            if not tracker.active and silent_ms >= rule.silent_for * 1000:
                message = f"{tracker.bound.asset.name or tracker.key.asset}: silent for "
                message += f"{silent_ms / 1000:.0f} s while its gateway delivers"
                changes.append(
                    self._change(tracker, True, heard + int(rule.silent_for * 1000), message, None)
                )
            elif tracker.active and silent_ms < rule.silent_for * 1000:
                message = f"{tracker.bound.asset.name or tracker.key.asset}: heard from again"
                changes.append(self._change(tracker, False, heard, message, None))
        return changes

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
                message = f"gateway {gateway[0]}/{gateway[1]} silent for {silent_ms / 1000:.0f} s"
                changes.append(self._change(tracker, True, heard[1] + silent_ms, message, None))
        return changes

    def _heard(
        self, site: str, station: str, readings: Sequence[Reading], received_ms: int
    ) -> list[ConditionChange]:
        newest = max((r.ts_ms for r in readings), default=received_ms)
        before = self._last_heard.get((site, station))
        self._last_heard[(site, station)] = (received_ms, max(newest, before[1] if before else 0))
        tracker = self._gateways.get((site, station))
        if tracker is None or not tracker.active:
            return []
        if before is not None:
            # event time runs with the wall clock, whatever the gateway clock's offset
            newest = max(newest, before[1] + received_ms - before[0])
            self._outage_until[(site, station)] = newest
        message = f"gateway {site}/{station} heard from again"
        return [self._change(tracker, False, newest, message, None)]

    def _apply(self, state: AssetValues, readings: list[Reading]) -> bool:
        """Take the readings that are news; False when all of them were late."""
        fresh = False
        for r in readings:
            values, stamps = (
                (state.status, state.status_stamps)
                if r.kind == "s"
                else (state.values, state.stamps)
            )
            if r.ts_ms <= stamps.get(r.signal, -1):
                continue
            values[r.signal] = r.value
            stamps[r.signal] = r.ts_ms
            fresh = True
        return fresh

    def _evaluate(self, path: str, ts: int) -> list[ConditionChange]:
        changes = []
        state = self._assets[path]
        trackers = self._trackers.get(path, [])
        for tracker in trackers:
            self.evaluations += 1
            raw, value, message = self._condition(tracker, state, ts)
            if raw is None:
                continue
            change = self._step(tracker, raw, ts, message, value, trackers)
            if change is not None:
                changes.append(self._worded(change, tracker.bound, state))
        return changes

    def _worded(self, change: ConditionChange, bound: Bound, state: AssetValues) -> ConditionChange:
        """A raised alarm in the words of its rule's `message`, when it has one."""
        if not change.active or not bound.message:
            return change
        values = state.status if isinstance(bound.rule, DeviceRule) else state.values
        text = render_message(bound.message, {**self._ratings[bound.path], **values})
        if text is None:
            return change
        return replace(change, message=f"{bound.asset.name or bound.asset.id}: {text}")

    def _step(
        self,
        tracker: Tracker,
        raw: bool,
        ts: int,
        message: str,
        value: Value,
        neighbours: list[Tracker],
    ) -> ConditionChange | None:
        rule = tracker.bound.rule
        if not tracker.active:
            tracker.clearing_since = None
            if not raw:
                tracker.pending_since = None
                return None
            since = tracker.pending_since = tracker.pending_since or ts
            if ts - since < rule.on_delay * 1000 or self._inhibited(tracker, neighbours, ts):
                return None
            return self._change(tracker, True, ts, message, value)
        if raw:
            tracker.clearing_since = None
            return None
        since = tracker.clearing_since = tracker.clearing_since or ts
        if ts - since < rule.off_delay * 1000:
            return None
        tracker.pending_since = None
        return self._change(tracker, False, ts, message, value)

    def _inhibited(self, tracker: Tracker, neighbours: list[Tracker], ts: int) -> bool:
        station = (tracker.bound.site, tracker.bound.station)
        gateway = self._gateways.get(station)
        if gateway is not None and gateway.active:
            return True
        if ts < self._outage_until.get(station, ts):
            return True  # acquired while the gateway was offline: backlog
        rule = tracker.bound.rule
        for other in neighbours:
            if not other.active or other is tracker:
                continue
            if other.bound.id in rule.inhibited_by:
                return True
            if isinstance(other.bound.rule, DeviceRule) and not isinstance(rule, DeviceRule):
                return True
        return False

    def _change(
        self, tracker: Tracker, active: bool, at_ms: int, message: str, value: Value
    ) -> ConditionChange:
        tracker.active = active
        rule = tracker.bound.rule
        return ConditionChange(
            tracker.key, active, at_ms, rule.priority, message, value, rule.latched
        )

    # --- conditions ------------------------------------------------------------------

    def _condition(
        self, tracker: Tracker, state: AssetValues, ts: int
    ) -> tuple[bool | None, Value, str]:
        """(raw condition or None when it cannot be told yet, the value, a message)."""
        bound, rule = tracker.bound, tracker.bound.rule
        if bound.suppress is not None:
            suppressed = self._truth(bound.suppress, bound, state.values)
            if suppressed is None:
                return None, None, ""  # cannot tell yet whether it applies
            if suppressed:
                name = bound.asset.name or bound.asset.id
                return False, None, f"{name}: suppressed by design ({rule.suppress_when})"
        if isinstance(rule, ThresholdRule):
            return self._threshold(tracker, rule, state)
        if isinstance(rule, ConditionRule):
            if tracker.active and bound.clear is not None:
                cleared = self._truth(bound.clear, bound, state.values)
                return (
                    (None if cleared is None else not cleared),
                    None,
                    f"{bound.id}: {rule.clear_when}",
                )
            return self._expression(tracker, state.values, rule.when)
        if isinstance(rule, DeviceRule):
            if not state.status:
                return None, None, ""
            return self._expression(tracker, state.status, rule.when)
        if isinstance(rule, RateRule):
            return self._rate(tracker, rule, state, ts)
        if isinstance(rule, UnchangedRule):
            return self._unchanged(tracker, rule, state, ts)
        return None, None, ""

    def _threshold(
        self, tracker: Tracker, rule: ThresholdRule, state: AssetValues
    ) -> tuple[bool | None, Value, str]:
        value = state.values.get(rule.signal)
        level = tracker.bound.level
        if not isinstance(value, int | float) or isinstance(value, bool) or level is None:
            return None, value, ""
        margin = rule.deadband if tracker.active else 0.0
        if rule.above is not None:
            raw, side = value > level - margin, "above"
        else:
            raw, side = value < level + margin, "below"
        if raw == tracker.active:
            return raw, value, ""  # no change to word: this runs on every reading
        unit = self._units.get((tracker.bound.asset.profile or "", rule.signal), "")
        name = tracker.bound.asset.name or tracker.bound.asset.id
        message = f"{name}: {rule.signal} {value:g} {unit} {side} {level:g} {unit}".replace(
            "  ", " "
        )
        return raw, value, message

    def _expression(
        self, tracker: Tracker, values: dict[str, Value], text: str
    ) -> tuple[bool | None, Value, str]:
        tree = tracker.bound.when
        assert tree is not None
        truth = self._truth(tree, tracker.bound, values)
        if truth is None or truth == tracker.active:
            return truth, None, ""  # no change to word: this runs on every reading
        name = tracker.bound.asset.name or tracker.bound.asset.id
        return truth, None, f"{name}: {text}"

    def _truth(self, tree: ast.AST, bound: Bound, values: dict[str, Value]) -> bool | None:
        self._eval.names = {**self._ratings[bound.path], **values}
        try:
            return bool(self._eval.eval("", previously_parsed=tree))
        except Exception:  # a signal not seen yet, or null: undecided, not an alarm
            return None

    def _rate(
        self, tracker: Tracker, rule: RateRule, state: AssetValues, ts: int
    ) -> tuple[bool | None, Value, str]:
        """Change per minute between the signal's newest reading and its oldest within
        the last minute. Each reading counts once, at its own acquisition time: another
        signal of the asset arriving does not add a point."""
        value = state.values.get(rule.signal)
        stamp = state.stamps.get(rule.signal)
        if not isinstance(value, int | float) or isinstance(value, bool) or stamp is None:
            return None, value, ""
        history = tracker.history
        if not history or history[-1][0] < stamp:
            history.append((stamp, float(value)))
        while history and ts - history[0][0] > RATE_WINDOW_MS:
            history.popleft()
        if not history or history[-1][0] - history[0][0] < RATE_WINDOW_MS / 2:
            return None, value, ""  # too short a stretch to call it a rate
        (t0, v0), (t1, v1) = history[0], history[-1]
        per_min = (v1 - v0) / ((t1 - t0) / 60_000)
        margin = rule.deadband if tracker.active else 0.0
        rise, fall = rule.max_rise_per_min, rule.max_fall_per_min
        rising = rise is not None and per_min > rise - margin
        falling = fall is not None and -per_min > fall - margin
        unit = self._units.get((tracker.bound.asset.profile or "", rule.signal), "")
        per = f"{unit}/min" if unit else "/min"
        direction, limit = ("rising", rise) if per_min >= 0 else ("falling", fall)
        name = tracker.bound.asset.name or tracker.bound.asset.id
        message = f"{name}: {rule.signal} {direction} {abs(per_min):.3g} {per}"
        if limit is not None:
            message += f" (limit {limit:g} {per})"
        return rising or falling, value, message

    def _unchanged(
        self, tracker: Tracker, rule: UnchangedRule, state: AssetValues, ts: int
    ) -> tuple[bool | None, Value, str]:
        value = state.values.get(rule.signal)
        if value is None:
            return None, value, ""
        if tracker.still_since is None or tracker.still_since[0] != value:
            tracker.still_since = (value, ts)
        still_ms = ts - tracker.still_since[1]
        message = (
            f"{tracker.bound.asset.id}: {rule.signal} stuck at {value} for "
            f"{still_ms / 60_000:.0f} min"
        )
        return still_ms >= rule.for_ * 1000, value, message

    def _all(self) -> Iterable[Tracker]:
        yield from self._gateways.values()
        for silent in self._silent.values():
            yield from silent
        for trackers in self._trackers.values():
            yield from trackers


def _units(site: SiteConfig) -> dict[tuple[str, str], str]:
    return {
        (name, signal.name): signal.unit
        for name, profile in site.profiles.items()
        for signal in profile.signals
    }
