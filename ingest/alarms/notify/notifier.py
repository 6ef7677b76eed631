"""The notifier: alarm transitions in, messages to the right people out, once each.

    on_transitions ──▶ dispatch (route to a crew) ──▶ waiting groups (SQLite)
    tick ──▶ group (group_wait / group_interval) ──▶ render per person ──▶ outbox
         ──▶ close episodes the book says are answered
         ──▶ escalate / repeat timers ──▶ render per person ──▶ outbox
         ──▶ deliver due deliveries (Apprise per contact, MQTT), retry with back-off

`on_transitions` only stores (it runs inside the alarm pipeline, which must not wait
for a mail server); everything that talks to the outside happens in `tick`, which the
service calls every few seconds. All state is in the store file (store.py), so a new
Notifier on the same file carries on where the last one stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from facility import clock
from ingest.alarms.book import Alarm, AlarmEvent, Transition
from ingest.alarms.links import AckLinks
from ingest.alarms.model import AlarmKey, AlarmState
from ingest.alarms.notify.channels import AppriseChannel, Channel, MqttChannel
from ingest.alarms.notify.config import Contact, NotifyConfig
from ingest.alarms.notify.dispatch import on_duty_people, route_for, tier_recipients
from ingest.alarms.notify.escalate import Escalate, Reached, due_actions, stop_reason
from ingest.alarms.notify.group import group_due, most_urgent_first
from ingest.alarms.notify.render import Item, Rendered, Renderer
from ingest.alarms.notify.store import (
    Delivery,
    DeliveryStatus,
    Episode,
    NewMessage,
    NotifyStore,
    Reminded,
    TierTold,
)

log = logging.getLogger(__name__)

KEEP_MS = 30 * 86_400_000  # finished work is kept this long (for deliveries() and debugging)
PRUNE_EVERY_MS = 3_600_000

# Events after which an alarm is active, unacknowledged and in view: the crew must act.
OPENING_EVENTS = frozenset(
    {
        AlarmEvent.RAISED,
        AlarmEvent.UNSHELVED,
        AlarmEvent.SHELVE_EXPIRED,
        AlarmEvent.RETURNED_TO_SERVICE,
    }
)


class AlarmLookup(Protocol):
    """What the notifier reads of the alarm book (AlarmBook fits)."""

    def get(self, key: AlarmKey) -> Alarm | None: ...


@dataclass(frozen=True)
class NotifierStats:
    sent: int  # deliveries made (the store's lifetime)
    failed: int  # deliveries whose last try failed, waiting for a retry (now)
    pending: int  # deliveries not made yet: never tried or failed (now)
    abandoned: int  # deliveries given up after delivery.give_up_after (the store's lifetime)
    attempts_failed: int  # failed tries since this Notifier started
    unrouted: int  # transitions no route took, since this Notifier started
    waiting: int  # transitions waiting in their group (now)
    escalating: int  # alarms whose escalation and reminder timers run (now)


def opens_episode(t: Transition) -> bool:
    return t.event in OPENING_EVENTS and t.to_state is AlarmState.UNACKED


class Notifier:
    def __init__(
        self,
        config: NotifyConfig,
        book: AlarmLookup,
        links: AckLinks | None,
        store_path: Path,
        now_ms: Callable[[], int] = clock.now_ms,
        *,
        site_timezones: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.book = book
        self.now_ms = now_ms
        self.store = NotifyStore(store_path)
        self.renderer = Renderer(config, links, self.zone_of)
        self.unrouted = 0
        self.attempts_failed = 0
        self._zones = {site: ZoneInfo(name) for site, name in (site_timezones or {}).items()}
        self._apprise: Channel = AppriseChannel(config.delivery.timeout_s)
        self._mqtt: Channel | None = (
            MqttChannel(config.mqtt, config.delivery.timeout_s) if config.mqtt else None
        )
        self._lock = asyncio.Lock()
        self._pruned_ms = 0

    def close(self) -> None:
        self.store.close()

    def reload(self, config: NotifyConfig) -> list[str]:
        """A new config (SIGHUP). People and their contacts, crews and rosters, routes,
        escalation, reminders, grouping and retries apply from the next tick (an alarm
        already told keeps its crew; its escalation reaches the tiers' people as they
        are now). What the notifier opened connections and links with at the start
        stays as it was: said in the returned notes, which need a restart."""
        old = self.config
        notes = [
            f"{config.file}: {name} changed: takes effect after a restart"
            for name, changed in (
                ("mqtt", config.mqtt != old.mqtt),
                ("ack_links", config.ack_links != old.ack_links),
                ("delivery.timeout", config.delivery.timeout_s != old.delivery.timeout_s),
            )
            if changed
        ]
        self.config = dataclasses.replace(
            config,
            mqtt=old.mqtt,
            ack_links=old.ack_links,
            delivery=dataclasses.replace(config.delivery, timeout_s=old.delivery.timeout_s),
        )
        self.renderer.config = self.config
        log.info(
            "notifier config reloaded from %s: %d people, %d crews, %d routes",
            config.file,
            len(config.people),
            len(config.crews),
            len(config.routes),
        )
        return notes

    def zone_of(self, site: str) -> ZoneInfo:
        return self._zones.get(site, self.config.timezone)

    # -- in: transitions --------------------------------------------------------------

    async def on_transitions(self, ts: list[Transition]) -> None:
        """The alarm pipeline's listener: keep what the crew should hear of, per crew."""
        now = self.now_ms()
        for t in ts:
            if not t.notify:
                continue
            crew = self.crew_for(t)
            if crew is None:
                self.unrouted += 1
                log.info("no route for %s (%s): nobody is told", t.key, t.priority)
                continue
            self.store.add_waiting(crew, t, now)

    def crew_for(self, t: Transition) -> str | None:
        """A raise goes by the routes; what follows it goes to the crew told of the raise,
        even if the routes (or the alarm's priority) changed since."""
        if not opens_episode(t):
            episode = self.store.latest_episode(t.key, t.id)
            if episode is not None:
                return episode.crew
        route = route_for(self.config, t.key, t.priority)
        return route.crew if route is not None else None

    # -- the clock --------------------------------------------------------------------

    async def tick(self) -> None:
        """Send due groups, stop answered alarms' timers, escalate and remind, deliver."""
        async with self._lock:
            now = self.now_ms()
            self.send_groups(now)
            self.close_answered(now)
            self.run_timers(now)
            await self.deliver()
            if now - self._pruned_ms >= PRUNE_EVERY_MS:
                self.store.prune(now - KEEP_MS)
                self._pruned_ms = now

    # -- group ------------------------------------------------------------------------

    def send_groups(self, now: int) -> None:
        c = self.config
        for crew, first_ms, last_ms in self.store.waiting_groups():
            if group_due(first_ms, last_ms, c.group_wait_s, c.group_interval_s, now):
                self.send_group(crew, self.store.waiting_of(crew), now)

    def send_group(self, crew: str, ts: Sequence[Transition], now: int) -> None:
        on_duty = on_duty_people(self.config, crew, now)
        if not on_duty:
            log.error("crew %s has nobody on duty: only escalation can reach anyone", crew)
        opened = [self.new_episode(t, crew, on_duty, now) for t in ts if opens_episode(t)]
        told_before = {t.id: self.told_of(t) for t in ts if not opens_episode(t)}
        per_person: dict[str, list[Transition]] = defaultdict(list)
        for t in most_urgent_first(ts):
            people = on_duty if opens_episode(t) else (*on_duty, *sorted(told_before[t.id]))
            for person in dict.fromkeys(people):
                per_person[person].append(t)
        messages = [
            self.message("group", p, self.renderer.group(p, crew, self.items(mine), p in on_duty))
            for p, mine in per_person.items()
        ]
        self.store.commit_group(crew, [t.id for t in ts], now, opened, messages)
        log.info("crew %s: %d alarm changes to %d people", crew, len(ts), len(messages))

    def new_episode(self, t: Transition, crew: str, on_duty: tuple[str, ...], now: int) -> Episode:
        alarm = self.book.get(t.key)
        return Episode(
            raise_id=t.id,
            key=t.key,
            priority=t.priority,
            crew=crew,
            opened_ms=now,
            raised_ms=alarm.raised_ms if alarm is not None else None,
            reached={0: Reached(0, now, 0, on_duty)},
        )

    def told_of(self, t: Transition) -> set[str]:
        """Everyone told of the raise this transition follows, so all of them hear how it
        ended (a supervisor escalated to hears of the acknowledgement too)."""
        episode = self.store.latest_episode(t.key, t.id)
        return episode.people if episode is not None else set()

    def items(self, ts: Sequence[Transition]) -> list[Item]:
        return [self.renderer.transition_item(t, self.book.get(t.key)) for t in ts]

    # -- escalate and repeat ----------------------------------------------------------

    def close_answered(self, now: int) -> None:
        for episode in self.store.open_episodes():
            why = stop_reason(self.book.get(episode.key), episode.raised_ms)
            if why is not None:
                self.store.close_episode(episode.raise_id, now, why)
                log.info("%s: no more reminders or escalation: %s", episode.key, why)

    def run_timers(self, now: int) -> None:
        told: list[TierTold] = []
        reminded: list[Reminded] = []
        batches: dict[tuple[str, str, int], list[tuple[Episode, Alarm, str]]] = defaultdict(list)
        for episode in self.store.open_episodes():
            alarm = self.book.get(episode.key)
            if alarm is None:
                continue
            actions = due_actions(
                self.config, episode.priority, episode.opened_ms, episode.reached, now
            )
            for action in actions:
                since = _minutes(now - episode.opened_ms)
                if isinstance(action, Escalate):
                    people = tier_recipients(self.config, episode.crew, action.tier, now)
                    told.append(TierTold(episode.raise_id, action.tier, now, people))
                    headline = f"ESCALATED (not acknowledged for {since})"
                    batches[("escalation", episode.crew, action.tier)].append(
                        (episode, alarm, headline)
                    )
                else:
                    reminded.append(Reminded(episode.raise_id, action.tier, action.n))
                    headline = f"REMINDER {action.n} (not acknowledged for {since})"
                    batches[("reminder", episode.crew, action.tier)].append(
                        (episode, alarm, headline)
                    )
        messages = [
            m
            for (kind, crew, tier), batch in batches.items()
            for m in self.timer_messages(kind, crew, tier, batch, told, now)
        ]
        if told or reminded:
            self.store.commit_timers(now, told, reminded, messages)

    def timer_messages(
        self,
        kind: str,
        crew: str,
        tier: int,
        batch: Sequence[tuple[Episode, Alarm, str]],
        told: Sequence[TierTold],
        now: int,
    ) -> list[NewMessage]:
        raise_ids = {e.raise_id for e, _, _ in batch}
        people = self.timer_people(kind, crew, tier, batch, told, raise_ids, now)
        if not people:
            log.error("%s of %d alarms of crew %s: nobody to tell", kind, len(batch), crew)
        ordered = sorted(batch, key=lambda b: (b[1].priority.rank, b[1].raised_ms or 0, b[1].key))
        items = [self.renderer.alarm_item(alarm, headline) for _, alarm, headline in ordered]
        on_duty = sorted({p for e, _, _ in batch for p in e.reached[0].people})
        out = []
        for person in people:
            if kind == "escalation":
                rendered = self.renderer.escalation(person, crew, tier, items, on_duty)
            else:
                rendered = self.renderer.reminder(person, tier, items)
            out.append(self.message(kind, person, rendered))
        return out

    def timer_people(
        self,
        kind: str,
        crew: str,
        tier: int,
        batch: Sequence[tuple[Episode, Alarm, str]],
        told: Sequence[TierTold],
        raise_ids: set[int],
        now: int,
    ) -> tuple[str, ...]:
        """Tier 0 is whoever is on duty now; a later tier is whom it was escalated to."""
        if tier == 0:
            return on_duty_people(self.config, crew, now)
        if kind == "escalation":
            found = [t.people for t in told if t.raise_id in raise_ids and t.tier == tier]
        else:
            found = [e.reached[tier].people for e, _, _ in batch if tier in e.reached]
        return tuple(dict.fromkeys(p for people in found for p in people))

    # -- deliver ----------------------------------------------------------------------

    def message(self, kind: str, person: str, rendered: Rendered) -> NewMessage:
        known = self.config.people.get(person)
        if known is None:
            log.error("%s is no longer in the notifier's config: not told", person)
        return NewMessage(
            kind=kind,
            person=person,
            title=rendered.title,
            body=rendered.body,
            notify_type=rendered.notify_type,
            alarms=rendered.alarms,
            contacts=known.contacts if known is not None else (),
        )

    async def deliver(self) -> None:
        """Every due delivery, contacts side by side, each contact's in order: a failed
        one holds back the later ones to the same contact (news must not overtake)."""
        by_contact: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
        for d in self.store.undelivered():
            by_contact[(d.person, d.contact_id)].append(d)
        await asyncio.gather(*(self.deliver_in_order(ds) for ds in by_contact.values()))

    async def deliver_in_order(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            if d.next_attempt_ms > self.now_ms() or not await self.attempt(d):
                return

    async def attempt(self, d: Delivery) -> bool:
        """Try one delivery; True if the next one to the same contact may go now."""
        contact = self.contact(d.person, d.contact_id)
        channel = self.channel(contact) if contact is not None else None
        if contact is None or channel is None:
            why = "the contact is no longer in the config" if contact is None else "no mqtt"
            self.store.mark_abandoned(d.id, why, self.now_ms(), attempted=False)
            log.error("delivery %d to %s abandoned: %s", d.id, d.contact_label, why)
            return True
        try:
            error = await channel.send(contact, d)
        except Exception as exc:  # a channel's bug must not stop the other deliveries
            log.exception("delivery %d to %s", d.id, contact.label)
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            self.store.mark_sent(d.id, self.now_ms())
            log.info("%s %d sent to %s (%s)", d.kind, d.message_id, d.person, contact.label)
            return True
        self.failed(d, error)
        return False

    def failed(self, d: Delivery, error: str) -> None:
        now = self.now_ms()
        self.attempts_failed += 1
        policy = self.config.delivery
        if now - d.created_ms >= policy.give_up_after_s * 1000:
            self.store.mark_abandoned(d.id, error, now)
            log.error("delivery %d to %s given up: %s", d.id, d.contact_label, error)
            return
        wait_s = min(policy.retry_first_s * 2**d.attempts, policy.retry_max_s)
        self.store.mark_failed(d.id, error, now + int(wait_s * 1000), now)
        log.warning(
            "delivery %d to %s failed (try %d), again in %g s: %s",
            d.id,
            d.contact_label,
            d.attempts + 1,
            wait_s,
            error,
        )

    def contact(self, person: str, contact_id: str) -> Contact | None:
        known = self.config.people.get(person)
        contacts = known.contacts if known is not None else ()
        return next((c for c in contacts if c.id == contact_id), None)

    def channel(self, contact: Contact) -> Channel | None:
        return self._mqtt if contact.is_mqtt else self._apprise

    # -- health -----------------------------------------------------------------------

    def stats(self) -> NotifierStats:
        counts = self.store.counts()
        return NotifierStats(
            sent=counts[DeliveryStatus.SENT],
            failed=counts[DeliveryStatus.FAILED],
            pending=counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.FAILED],
            abandoned=counts[DeliveryStatus.ABANDONED],
            attempts_failed=self.attempts_failed,
            unrouted=self.unrouted,
            waiting=self.store.waiting_count(),
            escalating=len(self.store.open_episodes()),
        )

    def delivery_counts(self) -> dict[DeliveryStatus, int]:
        return self.store.counts()

    def deliveries(
        self,
        status: DeliveryStatus | Collection[DeliveryStatus] | None = None,
        limit: int = 100,
        since_ms: int | None = None,
    ) -> list[Delivery]:
        """What went out, what waits and what failed, newest first (see NotifyStore)."""
        return self.store.deliveries(status, limit, since_ms)


def _minutes(ms: int) -> str:
    minutes = ms / 60000
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
