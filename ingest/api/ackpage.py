"""The small HTML pages behind a notification's acknowledge link.

GET only shows the alarm and a button; the button POSTs. Mail and chat scanners fetch
every link they see, and a GET that acknowledged would silence the alarm before any
person read it. Plain HTML with no script needed, for any phone browser.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from ingest.alarms.book import Alarm
from ingest.alarms.model import AlarmState

ACKABLE = frozenset({AlarmState.UNACKED, AlarmState.RTN_UNACKED})

_STATE_WORDS = {
    AlarmState.NORMAL: "normal",
    AlarmState.UNACKED: "active, not acknowledged",
    AlarmState.ACKED: "active, acknowledged",
    AlarmState.RTN_UNACKED: "returned to normal, not acknowledged",
    AlarmState.LATCHED: "latched, waiting for a reset",
}


def alarm_page(alarm: Alarm, user: str) -> str:
    """The alarm and, if it can be acknowledged now, the form that does it."""
    if alarm.hidden:
        note = "It is shelved or out of service, so it cannot be acknowledged now."
        return _page("Alarm", _alarm_block(alarm) + _note(note))
    if alarm.state not in ACKABLE:
        return _page("Alarm", _alarm_block(alarm) + _note("There is nothing to acknowledge."))
    # No `action`: the form posts back to the link itself, wherever it is mounted.
    form = (
        '<form method="post" class="ack-form">'
        '<label>Comment (optional)<input name="comment" maxlength="1000"></label>'
        f'<button type="submit" class="btn btn-ack">Acknowledge as {escape(user)}</button>'
        "</form>"
    )
    return _page("Acknowledge alarm", _alarm_block(alarm) + form)


def done_page(alarm: Alarm) -> str:
    who = escape(alarm.acked_by or "")
    when = f" at {_time(alarm.acked_ms)}" if alarm.acked_ms is not None else ""
    return _page("Acknowledged", _alarm_block(alarm) + _note(f"Acknowledged by {who}{when}."))


def earlier_raise_page(alarm: Alarm, link_raised_ms: int | None) -> str:
    """The link was sent for a raise the alarm has had since been raised again after:
    acknowledging with it would acknowledge a raise its holder has not been told of."""
    sent_for = f" at {_time(link_raised_ms)}" if link_raised_ms is not None else ""
    note = (
        f"This link was sent for an earlier raise of this alarm{sent_for}. It has been "
        "raised again since: acknowledge it from the newer message or in the console."
    )
    return _page("Link for an earlier alarm", _alarm_block(alarm) + _note(note))


def message_page(title: str, message: str) -> str:
    return _page(title, _note(escape(message)))


def _alarm_block(alarm: Alarm) -> str:
    rows = [
        ("Alarm", escape(alarm.message)),
        ("Where", escape(alarm.key.asset_path)),
        ("Rule", escape(alarm.key.rule)),
        ("Priority", escape(alarm.priority.value)),
        ("State", escape(_STATE_WORDS[alarm.state])),
    ]
    if alarm.raised_ms is not None:
        rows.append(("Raised", _time(alarm.raised_ms)))
    if alarm.acked_by:
        rows.append(("Acknowledged by", escape(alarm.acked_by)))
    cells = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return f'<dl class="ack-alarm prio-{escape(alarm.priority.value)}">{cells}</dl>'


def _note(html: str) -> str:
    return f'<p class="ack-note">{html}</p>'


def _time(ms: int) -> str:
    at = datetime.fromtimestamp(ms / 1000, UTC)
    iso = at.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'<time datetime="{iso}">{at:%Y-%m-%d %H:%M:%S} UTC</time>'


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/console.css"></head>'
        f'<body class="ack-page"><main><h1>{escape(title)}</h1>{body}</main>'
        '<script src="/static/ack.js"></script></body></html>\n'
    )
