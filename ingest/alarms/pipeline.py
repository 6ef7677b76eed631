"""Validated readings → conditions → alarm book → alarm events and listeners.

Stages, each small and testable alone: `AlarmEngine` (rules on event time) → `AlarmBook`
(ISA-18.2 lifecycle, durable) → alarm events into InfluxDB (for Grafana annotations and
timelines) and the listeners (the notifier, the console's live feed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from facility import clock
from facility.config import SiteConfig
from facility.wire import Reading
from ingest.alarms.book import AlarmBook, Transition, alarm_event_line
from ingest.alarms.engine import AlarmEngine
from ingest.alarms.model import ConditionChange
from ingest.alarms.rules import load_rules
from ingest.influx import InfluxError, WriteResult

log = logging.getLogger(__name__)

Listener = Callable[[list[Transition]], Awaitable[None]]


class EventWriter(Protocol):
    async def write(self, lines: Sequence[str]) -> WriteResult: ...


@dataclass
class AlarmPipeline:
    engine: AlarmEngine
    book: AlarmBook
    writer: EventWriter | None = None
    listeners: list[Listener] = field(default_factory=list)
    transitions: int = 0
    events_unwritten: int = 0

    @classmethod
    def open(
        cls, rules: Path, site: SiteConfig, book: Path, writer: EventWriter | None
    ) -> AlarmPipeline:
        engine = AlarmEngine(load_rules(rules, site), site)
        alarm_book = AlarmBook(book)
        engine.restore(alarm_book.active_conditions())
        return cls(engine, alarm_book, writer)

    async def observe(
        self, site: str, station: str, readings: Sequence[Reading], received_ms: int | None = None
    ) -> list[Transition]:
        now = received_ms if received_ms is not None else clock.now_ms()
        return await self._record(self.engine.observe(site, station, readings, now))

    async def tick(self, now_ms: int | None = None) -> list[Transition]:
        """The wall-clock part: gateway deadman and shelves running out."""
        now = now_ms if now_ms is not None else clock.now_ms()
        transitions = await self._record(self.engine.tick(now))
        expired = self.book.expire_shelves()
        await self._publish(expired)
        return transitions + expired

    async def _record(self, changes: list[ConditionChange]) -> list[Transition]:
        transitions = [t for change in changes for t in self.book.apply(change)]
        await self._publish(transitions)
        return transitions

    async def publish(self, transitions: list[Transition]) -> None:
        """Operator actions (ack, shelve, ...) go out the same way as engine changes."""
        await self._publish(transitions)

    async def _publish(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        self.transitions += len(transitions)
        for t in transitions:
            log.info("alarm %s %s: %s (%s)", t.key, t.event, t.message, t.to_state)
        await self._write_events(transitions)
        for listener in self.listeners:
            await listener(transitions)

    async def _write_events(self, transitions: list[Transition]) -> None:
        if self.writer is None:
            return
        try:
            await self.writer.write([alarm_event_line(t) for t in transitions])
        except InfluxError as exc:  # the book has them; Grafana misses an annotation
            self.events_unwritten += len(transitions)
            log.warning("%d alarm events not written to InfluxDB: %s", len(transitions), exc)

    def close(self) -> None:
        self.book.close()
