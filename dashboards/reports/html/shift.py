"""The shift handover: what stands open, what happened in the shift, what is hidden."""

from __future__ import annotations

from dashboards.reports.build import ShiftReport
from dashboards.reports.html.markup import (
    Cell,
    Html,
    badge,
    duration,
    facts,
    join,
    report_page,
    section,
    table,
    tag,
    when,
)
from dashboards.reports.html.sections import incident_cards, late_section, raise_table, told


def _standing_rows(r: ShiftReport) -> list[list[Cell]]:
    p = r.period
    rows: list[list[Cell]] = []
    for s in r.standing:
        if s.hidden:
            continue
        age = None if s.since_ms is None else (p.as_of_ms - s.since_ms) / 1000
        acked = (
            f"{s.acked_by} {when(p, s.acked_ms)}" if s.acked_by else Html("<b>not acknowledged</b>")
        )
        rows.append(
            [
                badge(s.priority.value),
                s.key.asset_path,
                s.key.rule,
                tag("span", s.message),
                s.state.value.replace("_", " "),
                when(p, s.since_ms, True),
                duration(age),
                acked,
                told(s.notified, r.notify_store),
            ]
        )
    return rows


def _hidden_rows(r: ShiftReport) -> list[list[Cell]]:
    p = r.period
    rows: list[list[Cell]] = []
    for e in r.register:
        rows.append([e.path, f"asset register: {e.status.replace('_', ' ')}", "", e.notes or ""])
    for o in r.book_out_of_service:
        rows.append(
            [o.path, "out of service (alarm book)", f"{o.by} {when(p, o.since_ms, True)}", o.reason]
        )
    for s in r.standing:
        if s.shelved_by:
            rows.append(
                [
                    str(s.key),
                    "alarm shelved",
                    f"{s.shelved_by} {when(p, s.shelved_ms, True)}",
                    s.shelve_reason,
                ]
            )
        elif s.out_of_service_by:
            rows.append(
                [str(s.key), "alarm out of service", s.out_of_service_by, s.out_of_service_reason]
            )
    return rows


def render_shift(r: ShiftReport) -> str:
    p = r.period
    open_rows = _standing_rows(r)
    unacked = sum(1 for s in r.standing if s.unacknowledged and not s.hidden)
    hidden = _hidden_rows(r)
    body = join(
        [
            facts(
                [
                    ("open alarms", len(open_rows)),
                    ("not acknowledged", unacked),
                    ("raised this shift", len(r.raises)),
                    ("notable events", len(r.incidents)),
                    ("out of service / shelved", len(hidden)),
                ]
            ),
            section(
                "Open alarms at handover",
                table(
                    [
                        "priority",
                        "asset",
                        "alarm",
                        "message",
                        "state",
                        "raised",
                        "age",
                        "acknowledged",
                        "notified",
                    ],
                    open_rows,
                    wrap={3, 7, 8},
                ),
                ident="open",
            ),
            section(
                "Alarms raised during the shift",
                raise_table(r.raises, p, r.notify_store),
                ident="raised",
            ),
            section(
                "Cleared during the shift (raised before it)",
                table(
                    ["priority", "alarm", "cleared", "message"],
                    [
                        [badge(t.priority.value), str(t.key), when(p, t.at_ms), t.message]
                        for t in r.cleared_earlier
                    ],
                    wrap={3},
                ),
                ident="cleared",
            ),
            late_section(r.late, p),
            section(
                "Out of service and shelved",
                table(["what", "status", "by", "reason"], hidden, wrap={3}),
                ident="hidden",
            ),
            section("Notable events", incident_cards(r.incidents, p, True), ident="events"),
        ]
    )
    footer = (
        "Notable events are found in the measurements themselves (minute resolution), "
        "whether or not an alarm rule fired; see docs/reports.md."
    )
    return report_page(f"Shift handover · {p.title}", p, r.generated_ms, body, footer)
