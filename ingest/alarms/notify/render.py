"""Stage three, notify: the words a person reads, one message per person.

Each message lists its alarms most urgent first: priority, what happened (RAISED,
CLEARED, ACKNOWLEDGED by whom, ESCALATED, REMINDER), the asset, the rule's message, the
event time in the site's time zone, the alarm's state now, and, while the alarm waits
for an acknowledgement, a link that acknowledges it as that person (signed, expiring:
ingest/alarms/links.py). Plain text, because it is read on phones and pagers and goes
through mail, chat webhooks and MQTT alike. The same content as data (`alarms`) is
what the MQTT channel publishes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from facility.wire import Value
from ingest.alarms.book import Alarm, AlarmEvent, Transition
from ingest.alarms.links import AckLinks
from ingest.alarms.model import AlarmKey, AlarmState, Priority
from ingest.alarms.notify.config import NotifyConfig

STATE_WORDS: dict[AlarmState, str] = {
    AlarmState.NORMAL: "normal",
    AlarmState.UNACKED: "active, not acknowledged",
    AlarmState.ACKED: "active, acknowledged",
    AlarmState.RTN_UNACKED: "returned to normal, not acknowledged",
    AlarmState.LATCHED: "returned to normal, latched: waiting for a reset",
}
ACKABLE = frozenset({AlarmState.UNACKED, AlarmState.RTN_UNACKED})

# Apprise's notify types, by what a message mostly says (apprise.NotifyType values).
FAILURE, WARNING, INFO, SUCCESS = "failure", "warning", "info", "success"


@dataclass(frozen=True)
class Item:
    """One alarm line of a message."""

    key: AlarmKey
    priority: Priority
    headline: str  # RAISED, CLEARED (returned to normal), ACKNOWLEDGED by ..., ...
    word: str  # the headline's first word, for the title's count
    message: str
    value: Value
    at_ms: int  # event time
    state: AlarmState | None  # now, from the book
    hidden: bool = False
    raised_ms: int | None = None  # the raise (occurrence) an ack link is for


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str
    notify_type: str
    alarms: list[dict[str, Any]]  # the items as data, with their ack links


ZoneOf = Callable[[str], ZoneInfo]


class Renderer:
    def __init__(self, config: NotifyConfig, links: AckLinks | None, zone_of: ZoneOf) -> None:
        self.config = config
        self.links = links
        self.zone_of = zone_of

    # -- items ------------------------------------------------------------------------

    def transition_item(self, t: Transition, now: Alarm | None) -> Item:
        headline = self.headline(t)
        return Item(
            key=t.key,
            priority=t.priority,
            headline=headline,
            word=headline.split(" ", 1)[0],
            message=t.message,
            value=t.value,
            at_ms=t.at_ms,
            state=now.state if now is not None else t.to_state,
            hidden=now.hidden if now is not None else False,
            # A raise's own message links to that raise, even if another has come since.
            raised_ms=t.at_ms
            if t.event is AlarmEvent.RAISED
            else (now.raised_ms if now is not None else None),
        )

    def alarm_item(self, alarm: Alarm, headline: str) -> Item:
        return Item(
            key=alarm.key,
            priority=alarm.priority,
            headline=headline,
            word=headline.split(" ", 1)[0],
            message=alarm.message,
            value=alarm.value,
            at_ms=alarm.raised_ms if alarm.raised_ms is not None else alarm.last_change_ms,
            state=alarm.state,
            hidden=alarm.hidden,
            raised_ms=alarm.raised_ms,
        )

    def headline(self, t: Transition) -> str:
        by = f" by {self.config.person_name(t.user)}" if t.user else ""
        why = f": {t.comment}" if t.comment else ""
        if t.event is AlarmEvent.CLEARED:
            still = ", still to be acknowledged" if t.to_state is AlarmState.RTN_UNACKED else ""
            return f"CLEARED (returned to normal{still})"
        if t.event is AlarmEvent.RAISED:
            return "RAISED"
        if t.event is AlarmEvent.SHELVE_EXPIRED:
            return "BACK IN VIEW (shelf expired)"
        if t.event is AlarmEvent.RETURNED_TO_SERVICE:
            return f"BACK IN SERVICE{by}"
        return f"{t.event.value.replace('_', ' ').upper()}{by}{why}"

    # -- messages ---------------------------------------------------------------------

    def group(self, person: str, crew: str, items: Sequence[Item], on_duty: bool) -> Rendered:
        crew_name = self.config.crews[crew].name if crew in self.config.crews else crew
        role = f"on duty for {crew_name}" if on_duty else f"told earlier of these ({crew_name})"
        counts = Counter(i.word.lower() for i in items)
        summary = ", ".join(f"{n} {word}" for word, n in counts.items())
        if len(items) == 1:
            title = f"[{_tag(items)}] {_one_line(items[0])}"
        else:
            title = f"[{_tag(items)}] {len(items)} alarm changes: {summary}"
        intro = f"To {self.config.person_name(person)}, {role}: {summary}, most urgent first."
        return self.message(person, title, intro, items)

    def escalation(
        self, person: str, crew: str, tier: int, items: Sequence[Item], told: Sequence[str]
    ) -> Rendered:
        names = ", ".join(self.config.person_name(p) for p in told) or "nobody on duty"
        tier_name = self.config.tier_name(tier)
        what = "alarm" if len(items) == 1 else f"{len(items)} alarms"
        title = f"[{_tag(items)}] ESCALATED to {tier_name}: {what} not acknowledged"
        if len(items) == 1:
            title += f": {_place(items[0].key)}"
        intro = (
            f"To {self.config.person_name(person)} ({tier_name}): not acknowledged in time "
            f"by {self.config.crews[crew].name if crew in self.config.crews else crew} "
            f"(told: {names})."
        )
        return self.message(person, title, intro, items)

    def reminder(self, person: str, tier: int, items: Sequence[Item]) -> Rendered:
        what = "alarm" if len(items) == 1 else f"{len(items)} alarms"
        title = f"[{_tag(items)}] REMINDER: {what} still not acknowledged"
        if len(items) == 1:
            title += f": {_place(items[0].key)}"
        intro = (
            f"To {self.config.person_name(person)} ({self.config.tier_name(tier)}): "
            f"still active and not acknowledged."
        )
        return self.message(person, title, intro, items)

    def message(self, person: str, title: str, intro: str, items: Sequence[Item]) -> Rendered:
        alarms = [self.as_data(person, item) for item in items]
        pairs = zip(items, alarms, strict=True)
        blocks = [self.block(n, item, data) for n, (item, data) in enumerate(pairs, 1)]
        footer = self.footer(person) if any(a["ack_url"] for a in alarms) else ""
        body = "\n\n".join([intro, *blocks]) + footer
        return Rendered(title, body, _notify_type(items), alarms)

    def block(self, n: int, item: Item, data: dict[str, Any]) -> str:
        lines = [
            f"{n}. {item.priority.value.upper()} {item.headline}: {_place(item.key)}",
            f"   {item.message}",  # in words, with its value and unit (the rule's templates)
            f"   at {data['at_local']}; now {data['state_text']}",
        ]
        if data["ack_url"]:
            lines.append(f"   acknowledge: {data['ack_url']}")
        return "\n".join(lines)

    def footer(self, person: str) -> str:
        hours = self.links.max_age_s / 3600 if self.links is not None else 0
        return (
            f"\n\nAcknowledge links are personal: they acknowledge as "
            f"{self.config.person_name(person)} and expire after {hours:g} h."
        )

    def as_data(self, person: str, item: Item) -> dict[str, Any]:
        ack = self.links is not None and item.state in ACKABLE and not item.hidden
        return {
            "key": str(item.key),
            "site": item.key.site,
            "station": item.key.station,
            "asset": item.key.asset,
            "rule": item.key.rule,
            "priority": item.priority.value,
            "headline": item.headline,
            "message": item.message,
            "value": item.value,
            "at_ms": item.at_ms,
            "at_local": local_time(item.at_ms, self.zone_of(item.key.site)),
            "state": item.state.value if item.state is not None else None,
            "state_text": STATE_WORDS.get(item.state, "unknown") if item.state else "unknown",
            "ack_url": (
                self.links.url(item.key, person, item.raised_ms) if ack and self.links else None
            ),
        }


def local_time(at_ms: int, zone: ZoneInfo) -> str:
    """2026-06-01 08:03:12 +08:00 Asia/Shanghai: the offset, because CST is ambiguous."""
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]} {zone.key}"


def _place(key: AlarmKey) -> str:
    return f"{key.asset_path} ({key.rule})"


def _one_line(item: Item) -> str:
    return f"{item.headline}: {_place(item.key)}: {item.message}"


def _tag(items: Sequence[Item]) -> str:
    return min(items, key=lambda i: i.priority.rank).priority.value.upper()


def _notify_type(items: Sequence[Item]) -> str:
    if any(i.state in (AlarmState.UNACKED, AlarmState.ACKED) for i in items):
        urgent = min(i.priority.rank for i in items) <= Priority.HIGH.rank
        return FAILURE if urgent else WARNING
    return SUCCESS if any(i.word == "CLEARED" for i in items) else INFO
