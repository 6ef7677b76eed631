"""The words the alarm engine, the alarm book, the notifier and the API share.

The engine turns readings into condition changes (a rule's condition became true or
false for one asset, at an event time). The alarm book (ISA-18.2 lifecycle) turns
condition changes and operator actions into alarm states and transitions. Everything
downstream (notifications, InfluxDB alarm events, the API) reads transitions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase

from facility.wire import Value


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 is the most urgent: sort by it."""
        return _RANK[self]


_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}


@dataclass(frozen=True, slots=True, order=True)
class AlarmKey:
    """One rule on one asset: the identity of an alarm. A gateway's own alarms (offline,
    silent) use the asset `gateway`."""

    site: str
    station: str
    asset: str
    rule: str

    def __str__(self) -> str:
        return f"{self.site}/{self.station}/{self.asset}/{self.rule}"

    @property
    def asset_path(self) -> str:
        return f"{self.site}/{self.station}/{self.asset}"

    @classmethod
    def parse(cls, text: str) -> AlarmKey:
        parts = text.split("/")
        if len(parts) != 4 or not all(parts):
            raise ValueError(f"not SITE/STATION/ASSET/RULE: {text!r}")
        return cls(*parts)

    def matches(
        self,
        site: Iterable[str],
        station: Iterable[str],
        asset: Iterable[str],
        rule: Iterable[str],
    ) -> bool:
        """Each part matches one of its globs (`*`, `?`), as routes and positions say."""
        return all(
            any(fnmatchcase(value, glob) for glob in globs)
            for value, globs in (
                (self.site, site),
                (self.station, station),
                (self.asset, asset),
                (self.rule, rule),
            )
        )


@dataclass(frozen=True, slots=True)
class ConditionChange:
    """A rule's condition started (active) or ended for one asset, in event time: `at_ms`
    is the acquisition time of the reading that decided it (on-/off-delays applied).

    A late condition (`late_since_ms` set, `active` false) began at `late_since_ms` and
    ended at `at_ms` where nobody could be told in time (inside a gateway's outage, or
    within one evaluation): history for the journal, never an alarm."""

    key: AlarmKey
    active: bool
    at_ms: int
    priority: Priority
    message: str
    value: Value = None
    latched: bool = False
    late_since_ms: int | None = None

    @property
    def late(self) -> bool:
        return self.late_since_ms is not None


class AlarmState(StrEnum):
    """ISA-18.2 alarm states (the shelved / suppressed / out-of-service flags are kept
    beside the state, because an alarm keeps its process state while shelved)."""

    NORMAL = "normal"
    UNACKED = "active_unacknowledged"
    ACKED = "active_acknowledged"
    RTN_UNACKED = "returned_unacknowledged"
    LATCHED = "latched"  # returned to normal, acknowledged, waiting for a reset
