"""Alarm transitions as InfluxDB points: the `alarm_event` measurement (Grafana
annotations, the reports' history)."""

from __future__ import annotations

from ingest.alarms.lifecycle import Transition
from ingest.lineproto import FieldValue, encode_point

ALARM_EVENT = "alarm_event"


def alarm_event_line(t: Transition) -> str:
    """The transition as an `alarm_event` point (Grafana annotations). Empty strings are
    left out; `event` is always there. The alarm's value is not written: its type varies
    by rule, and an InfluxDB field cannot change type."""
    fields: dict[str, FieldValue] = {
        "event": t.event.value,
        "state": t.to_state.value,
        "active": t.active,
    }
    for name, text in (("user", t.user), ("comment", t.comment), ("message", t.message)):
        if text:
            fields[name] = text
    tags = {
        "site": t.key.site,
        "station": t.key.station,
        "asset": t.key.asset,
        "rule": t.key.rule,
        "priority": t.priority.value,
    }
    return encode_point(ALARM_EVENT, tags, fields, t.at_ms)
