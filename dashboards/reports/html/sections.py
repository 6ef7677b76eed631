"""What both reports show: the alarms raised, the notable events, and what happened
while a site was dark."""

from __future__ import annotations

from collections.abc import Sequence

from dashboards.reports.alarms import Raise
from dashboards.reports.build import IncidentView
from dashboards.reports.html.markup import (
    Cell,
    Html,
    badge,
    duration,
    figure,
    join,
    section,
    table,
    tag,
    when,
)
from dashboards.reports.periods import Period
from ingest.alarms.readout import Transition

RAISE_COLUMNS = [
    "priority",
    "asset",
    "alarm",
    "raised",
    "cleared",
    "acknowledged",
    "notified",
    "message",
]
RAISE_WRAP = {5, 6, 7}  # acknowledged, notified, message: free text


def told(names: Sequence[str], store: bool) -> str:
    if names:
        return ", ".join(names)
    return "no record" if store else "no notification store given"


def raise_table(raises: Sequence[Raise], p: Period, store: bool) -> Html:
    """Every alarm raised in the period: when, cleared, who acknowledged, who was told."""
    return table(RAISE_COLUMNS, _raise_rows(raises, p, store), wrap=RAISE_WRAP)


def _raise_rows(raises: Sequence[Raise], p: Period, store: bool) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for x in raises:
        acked = (
            f"{x.acked_by} after {duration(x.ack_s)}"
            if x.acked_by
            else Html("<b>not acknowledged</b>")
        )
        if x.suppressed:
            acked = "hidden (shelved / out of service)"
        rows.append(
            [
                badge(x.priority.value),
                x.key.asset_path,
                x.key.rule,
                when(p, x.raised_ms),
                when(p, x.cleared_ms),
                acked,
                told(x.notified, store),
                x.message,
            ]
        )
    return rows


def incident_cards(views: Sequence[IncidentView], p: Period, with_charts: bool) -> Html:
    if not views:
        return tag("p", "None.", "none")
    cards = []
    for v in views:
        i = v.incident
        end = "ongoing" if i.ongoing else when(p, i.end_ms)
        lines = [
            tag("h3", f"{i.title}: {v.name}"),
            tag("p", f"{when(p, i.start_ms, True)} → {end} ({i.minutes} min) · {'/'.join(i.path)}"),
        ]
        if v.alarm is not None:
            a = v.alarm
            ack = (
                f", acknowledged by {a.acked_by} after {duration(a.ack_s)}"
                if a.acked_by
                else ", not acknowledged"
            )
            lines.append(
                tag(
                    "p",
                    f"Alarm {a.key.rule} ({a.priority.value}) raised {when(p, a.raised_ms)}{ack}",
                )
            )
        else:
            lines.append(tag("p", "No alarm was raised for it.", "muted"))
        if with_charts:
            lines.append(figure(f"{i.title}, {v.name}: shaded while it lasted", v.chart))
        cards.append(Html(f'<div class="card incident" data-kind="{i.kind}">{join(lines)}</div>'))
    return Html(f'<div class="cards">{join(cards)}</div>')


def late_section(late: Sequence[Transition], p: Period) -> Html:
    """Late conditions: what happened while a station's data could not reach the
    ingest, told to nobody at the time (docs/alarms.md)."""
    rows: list[list[Cell]] = [
        [
            badge(t.priority.value),
            t.key.asset_path,
            t.key.rule,
            when(p, t.since_ms),
            when(p, t.at_ms),
            t.message,
        ]
        for t in late
    ]
    return section(
        "While the site was dark: late conditions",
        tag(
            "p",
            "Conditions that began and ended before their data arrived (a station's "
            "uplink was down): never alarms, nobody was told; the crew should know.",
        ),
        table(["priority", "asset", "alarm", "began", "ended", "message"], rows, wrap={5}),
        ident="late",
    )
