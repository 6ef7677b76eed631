"""Stage two, group: what reaches a crew close together goes out as one message.

Like Alertmanager's group_wait and group_interval: the first transition for a crew opens
a group that is sent `group_wait` later, with everything that arrived meanwhile (a
burst of 20 raises after a power cut is one message, not 20); after a send, the next
group of that crew waits at least `group_interval` since the last one. Inside a
message the most urgent comes first.
"""

from __future__ import annotations

from collections.abc import Iterable

from ingest.alarms.book import AlarmEvent, Transition

# Within one priority: news of trouble before news of its end.
EVENT_ORDER: dict[AlarmEvent, int] = {
    AlarmEvent.RAISED: 0,
    AlarmEvent.UNSHELVED: 1,
    AlarmEvent.SHELVE_EXPIRED: 1,
    AlarmEvent.RETURNED_TO_SERVICE: 1,
    AlarmEvent.CLEARED: 2,
    AlarmEvent.ACKNOWLEDGED: 3,
    AlarmEvent.RESET: 4,
    AlarmEvent.SHELVED: 5,
    AlarmEvent.OUT_OF_SERVICE: 5,
}


def group_due(
    first_ms: int, last_sent_ms: int | None, wait_s: float, interval_s: float, now_ms: int
) -> bool:
    """Whether a crew's waiting group goes out now."""
    if now_ms < first_ms + wait_s * 1000:
        return False
    return last_sent_ms is None or now_ms >= last_sent_ms + interval_s * 1000


def most_urgent_first(transitions: Iterable[Transition]) -> list[Transition]:
    return sorted(
        transitions,
        key=lambda t: (t.priority.rank, EVENT_ORDER.get(t.event, 9), t.at_ms, t.key, t.id),
    )
