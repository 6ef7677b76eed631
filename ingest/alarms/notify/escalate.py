"""Stage four, escalate and repeat: the timers of an alarm nobody has acknowledged.

An episode starts when the crew on duty is told of a raise (tier 0 reached). While the
book says the alarm is active and unacknowledged, tier k is told `escalation.after`
[priority][tier k] after that, and every tier reached is reminded every
`repeat_every[priority]` after it was reached. Only the latest reminder due is sent:
after a long outage of the notifier a crew gets one reminder, not every one it missed.
The timers stop as soon as the alarm is acknowledged, returns to normal (cleared, even
if not yet acknowledged: the crew was told it cleared), is raised again (a new episode
takes over), or is taken out of the crew's view (shelved, out of service).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ingest.alarms.book import Alarm
from ingest.alarms.model import AlarmState, Priority
from ingest.alarms.notify.config import NotifyConfig


@dataclass(frozen=True)
class Reached:
    """A tier that has been told: when, how many reminders since, and whom."""

    tier: int
    at_ms: int
    repeats: int
    people: tuple[str, ...]


@dataclass(frozen=True)
class Escalate:
    tier: int


@dataclass(frozen=True)
class Repeat:
    tier: int
    n: int  # the n-th reminder of that tier


Action = Escalate | Repeat


def due_actions(
    config: NotifyConfig,
    priority: Priority,
    opened_ms: int,
    reached: Mapping[int, Reached],
    now_ms: int,
) -> list[Action]:
    actions: list[Action] = []
    for tier, after_s in sorted(config.escalate_after.get(priority, {}).items()):
        if tier not in reached and now_ms >= opened_ms + after_s * 1000:
            actions.append(Escalate(tier))
    every_s = config.repeat_every.get(priority, 0.0)
    if every_s > 0:
        for tier, told in sorted(reached.items()):
            n = int((now_ms - told.at_ms) // (every_s * 1000))
            if n > told.repeats:
                actions.append(Repeat(tier, n))
    return actions


def stop_reason(alarm: Alarm | None, raised_ms: int | None) -> str | None:
    """Why the timers of an episode stop now, or None while it still wants an answer."""
    if alarm is None:
        return "the alarm is gone from the book"
    if alarm.hidden:
        return "shelved" if alarm.shelved else "out of service"
    if raised_ms is not None and alarm.raised_ms != raised_ms:
        return "raised again"
    if alarm.state is AlarmState.UNACKED:
        return None
    if alarm.state is AlarmState.ACKED:
        return f"acknowledged by {alarm.acked_by}"
    return "returned to normal"
