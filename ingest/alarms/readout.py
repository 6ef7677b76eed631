"""What reports and boards may read of the alarms: the ingest's published read interface.

`dashboards` imports from `ingest` this module only (an import-linter contract holds it),
so the alarm book, the notifier's store, the KPIs and the rules can change their insides
(modules, SQLite schemas, classes that write) as long as this module keeps its word:

- the words: `AlarmKey`, `AlarmState`, `Priority`, `AlarmEvent`, a `Transition` and the
  EEMUA figures (`AlarmKpis`, `PositionKpis`, `Positions`, `FLOOD_ALARMS`,
  `POSITION_MEASUREMENT`, the InfluxDB measurement the ingest writes them to);
- the records, opened by their owners' classes on a report's private copy of the
  ingest's SQLite files: `AlarmBook` (read with `history` and `active`) and
  `NotifyStore`, with the reads below: assets out of service, who was told of a raise,
  the KPIs of a period;
- the rules as loaded and bound to a site (`load_rules`, `RuleSet`, `Bound`, and the
  rule models whose limits the boards and reports draw: `ThresholdRule`,
  `ConditionRule`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ingest.alarms.book import AlarmBook, AlarmEvent, Transition
from ingest.alarms.kpi import (
    FLOOD_ALARMS,
    POSITION_MEASUREMENT,
    AlarmKpis,
    PositionKpis,
    Positions,
    compute,
)
from ingest.alarms.model import AlarmKey, AlarmState, Priority
from ingest.alarms.notify.store import NotifyStore
from ingest.alarms.rules import Bound, ConditionRule, RuleSet, ThresholdRule, load_rules


@dataclass(frozen=True)
class OutOfService:
    """An asset the crew took out of service in the alarm book."""

    path: str
    since_ms: int
    by: str
    reason: str


def assets_out_of_service(book: AlarmBook, at_ms: int) -> list[OutOfService]:
    """Assets the crew took out of service in the alarm book (maintenance, a known
    fault) by `at_ms` and not yet returned now (the book keeps no record of a return).
    The book has no listing call, so this reads its table: the one place outside the
    book that knows it, for a report's private copy."""
    with sqlite3.connect(book.path) as db:
        rows = db.execute(
            "SELECT site, station, asset, since_ms, user, reason FROM out_of_service "
            "WHERE since_ms <= ? ORDER BY site, station, asset",
            (at_ms,),
        ).fetchall()
    return [
        OutOfService(f"{a}/{b}/{c}", int(since), str(by), str(why))
        for a, b, c, since, by, why in rows
    ]


def people_told(store: NotifyStore, key: AlarmKey, raise_id: int) -> tuple[str, ...]:
    """The people the notifier told of this raise (crew on duty, then escalation tiers),
    in the order it reached them; () when its store has no record of the raise."""
    episode = store.latest_episode(key, up_to_id=raise_id)
    if episode is None or episode.raise_id != raise_id:
        return ()
    return tuple(p for tier in sorted(episode.reached) for p in episode.reached[tier].people)


def alarm_kpis(
    book: AlarmBook, until_ms: int, window_ms: int, positions: Positions | None = None
) -> AlarmKpis:
    """EEMUA 191 figures of the `window_ms` before `until_ms` (ingest/alarms/kpi.py)."""
    return compute(book, until_ms=until_ms, window_ms=window_ms, positions=positions)


__all__ = [
    "FLOOD_ALARMS",
    "POSITION_MEASUREMENT",
    "AlarmBook",
    "AlarmEvent",
    "AlarmKey",
    "AlarmKpis",
    "AlarmState",
    "Bound",
    "ConditionRule",
    "NotifyStore",
    "OutOfService",
    "PositionKpis",
    "Positions",
    "Priority",
    "RuleSet",
    "ThresholdRule",
    "Transition",
    "alarm_kpis",
    "assets_out_of_service",
    "load_rules",
    "people_told",
]
