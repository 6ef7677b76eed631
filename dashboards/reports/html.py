"""HTML rendering: one self-contained file per report (charts are data: URIs, the
style sheet is inline), readable on a phone (tables scroll inside their box, the page
never scrolls sideways), printable to PDF.

Everything from data or config is escaped; only strings already built here as `Html`
go out as markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from string import Template

from dashboards.reports.alarms import AlarmSummary, Raise
from dashboards.reports.build import (
    IncidentView,
    OperationsReport,
    ShiftReport,
)
from dashboards.reports.figures import LotFigures, SiteFigures, StationFigures
from dashboards.reports.periods import Period
from ingest.alarms.book import Transition
from ingest.alarms.kpi import FLOOD_ALARMS, AlarmKpis, PositionKpis, Positions


class Html(str):
    """Markup built here: not escaped again."""


Cell = str | Html | float | int | None


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


def esc(value: Cell) -> Html:
    if isinstance(value, Html):
        return value
    return Html(html.escape("–" if value is None else str(value)))


def num(value: float | None, digits: int = 1) -> str | None:
    return None if value is None else f"{value:,.{digits}f}"


def tag(name: str, content: Cell, cls: str = "") -> Html:
    attr = f' class="{cls}"' if cls else ""
    return Html(f"<{name}{attr}>{esc(content)}</{name}>")


def join(parts: Iterable[Cell]) -> Html:
    return Html("".join(esc(p) for p in parts))


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    numeric: set[int] | None = None,
    wrap: set[int] | None = None,
) -> Html:
    """A table; `numeric` columns right-aligned, `wrap` columns (free text) wrapped
    rather than widening the table. Each cell carries its header as `data-label`: on
    a phone every row becomes a card of label: value lines (see STYLE)."""
    numeric, wrap = numeric or set(), wrap or set()

    def cls(i: int) -> str:
        return " ".join(c for c, on in (("num", i in numeric), ("wrap", i in wrap)) if on)

    head = join(tag("th", h, cls(i)) for i, h in enumerate(headers))
    body = join(
        Html("<tr>" + join(_cell(c, headers[i], cls(i)) for i, c in enumerate(row)) + "</tr>")
        for row in rows
    )
    if not body:
        return tag("p", "None.", "none")
    inner = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return Html(f'<div class="scroll">{inner}</div>')


def _cell(content: Cell, label: str, cls: str) -> Html:
    attr = f' class="{cls}"' if cls else ""
    return Html(f'<td data-label="{html.escape(label)}"{attr}>{esc(content)}</td>')


def section(title: str, *content: Cell, ident: str = "") -> Html:
    attr = f' id="{html.escape(ident)}"' if ident else ""
    return Html(f"<section{attr}>{tag('h2', title)}{join(content)}</section>")


def figure(title: str, uri: str) -> Html:
    alt = html.escape(title)
    return Html(
        f'<figure><img src="{html.escape(uri)}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
    )


def badge(priority: str) -> Html:
    return tag("span", priority, f"badge {priority}")


def facts(items: Sequence[tuple[str, Cell]]) -> Html:
    cells = join(
        Html(f"<div>{tag('b', value)}{tag('span', label)}</div>") for label, value in items
    )
    return Html(f'<div class="facts">{cells}</div>')


# -- time -------------------------------------------------------------------------------


def when(period: Period, ms: int | None, with_date: bool = False) -> str | None:
    if ms is None:
        return None
    moment: datetime = period.local(ms)
    return moment.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min" if minutes else f"{seconds:.0f} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


# -- the page ---------------------------------------------------------------------------

STYLE = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC",sans-serif;
 margin:0;color:#1b1d21;background:#f4f5f7}
main{max-width:1100px;margin:0 auto;padding:12px}
header h1{font-size:1.35rem;margin:.2rem 0}
header p{margin:.1rem 0;color:#50565e}
h2{font-size:1.1rem;margin:1.4rem 0 .5rem;border-bottom:2px solid #d9dce1;padding-bottom:.2rem}
h3{font-size:1rem;margin:1rem 0 .4rem}
h2,h3,p,figcaption{overflow-wrap:anywhere}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%;background:#fff;
 border:1px solid #e1e4e8;border-radius:6px}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:5px 8px;border-bottom:1px solid #eceef1;text-align:left;white-space:nowrap;
 vertical-align:top}
th{background:#f0f2f5;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.wrap,th.wrap{white-space:normal;min-width:8em}
.badge{display:inline-block;padding:0 .45em;border-radius:4px;color:#fff;font-size:.8rem;
 font-weight:600}
.badge.critical{background:#d32f2f}.badge.high{background:#ef6c00}
.badge.medium{background:#f9c20f;color:#222}.badge.low{background:#1e6fd9}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.facts div{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:8px}
.facts b{display:block;font-size:1.25rem}
.facts span{color:#50565e;font-size:.85rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,420px),1fr));gap:12px}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:10px;min-width:0}
.card h3{margin-top:0}
figure{margin:0 0 12px;background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:6px}
img{max-width:100%;height:auto;display:block}
figcaption{font-size:.85rem;color:#50565e}
.none{color:#50565e;font-style:italic}
.muted{color:#7a8088}
footer{margin-top:2rem;font-size:.85rem;color:#50565e}
@media print{body{background:#fff}main{max-width:none}section{break-inside:auto}
 .card,figure{break-inside:avoid}.scroll{overflow:visible;border:0}}
@media screen and (max-width:640px){
 .scroll{overflow:visible;background:none;border:0}
 table,tbody,tr,td{display:block;width:100%}
 thead{display:none}
 tr{background:#fff;border:1px solid #e1e4e8;border-radius:6px;margin:0 0 8px;padding:4px 10px}
 td{display:flex;justify-content:space-between;gap:12px;padding:3px 0;border:0;
  white-space:normal;text-align:right;overflow-wrap:anywhere}
 td.wrap{min-width:0}
 td::before{content:attr(data-label);color:#50565e;text-align:left;flex:none;max-width:45%}
 td:first-child{display:block;text-align:left;font-weight:600;padding-top:6px}
 td:first-child::before{content:none}
 td:empty{display:none}
}
"""

PAGE = Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title><style>$style</style></head>
<body><main>
<header><h1>$title</h1><p>$subtitle</p><p>$generated</p></header>
$body
<footer>$footer</footer>
</main></body></html>
"""
)


def page(title: str, subtitle: str, generated: str, body: Html, footer: Html) -> str:
    return PAGE.substitute(
        title=esc(title),
        subtitle=esc(subtitle),
        generated=esc(generated),
        style=STYLE,
        body=body,
        footer=footer,
    )


def _span(period: Period) -> str:
    tz = period.tz.key
    start, end = when(period, period.start_ms, True), when(period, period.end_ms, True)
    text = f"{start} → {end} ({tz})"
    if period.as_of_ms < period.end_ms:
        text += f", as of {when(period, period.as_of_ms, True)}"
    return text


def _generated(period: Period, ms: int) -> str:
    return f"Generated {when(period, ms, True)} {period.tz.key} by facility report"


# -- shift handover ---------------------------------------------------------------------


def _told(names: Sequence[str], store: bool) -> str:
    if names:
        return ", ".join(names)
    return "no record" if store else "no notification store given"


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
                _told(s.notified, r.notify_store),
            ]
        )
    return rows


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
                _told(x.notified, store),
                x.message,
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
                table(RAISE_COLUMNS, _raise_rows(r.raises, p, r.notify_store), wrap=RAISE_WRAP),
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
    footer = Html(
        esc(
            "Notable events are found in the measurements themselves (minute resolution), "
            "whether or not an alarm rule fired; see docs/reports.md."
        )
    )
    return page(
        f"Shift handover · {p.title}", _span(p), _generated(p, r.generated_ms), body, footer
    )


# -- operations reports -----------------------------------------------------------------


def _station_rows(st: StationFigures, p: Period) -> list[Cell]:
    peak = (
        None
        if st.peak_load is None
        else f"{st.peak_load[1]:.1f} % at {when(p, st.peak_load[0], True)}"
    )
    low = min((t.low[1] for t in st.tanks if t.low), default=None)
    high = max((t.high[1] for t in st.tanks if t.high), default=None)
    return [
        st.name,
        num(st.run_hours, 2),
        st.starts,
        num(st.energy_kwh, 1),
        st.energy_source or None,
        num(st.water_m3, 0),
        peak,
        num(low, 2),
        num(high, 2),
    ]


def _pump_rows(st: StationFigures) -> list[list[Cell]]:
    return [
        [
            st.name,
            p.name,
            p.status.replace("_", " "),
            num(p.run_hours, 2),
            p.starts,
            num(p.energy_kwh, 1),
            num(p.water_m3, 0),
            num(p.coverage_pct, 1),
        ]
        for p in st.pumps
    ]


def _meter_rows(st: StationFigures) -> list[list[Cell]]:
    """Equipment counted by its signals' roles (facility/kinds/): where each figure
    comes from is said, a totaliser's increase or an integrated rate."""
    return [
        [
            st.name,
            m.name,
            m.kind,
            num(m.water_m3, 1),
            m.water_source or None,
            num(m.energy_kwh, 1),
            m.energy_source or None,
            num(m.run_hours, 2),
        ]
        for m in st.meters
    ]


def _tank_rows(st: StationFigures, p: Period) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for t in st.tanks:
        h = t.height_m

        def pct(x: tuple[int, float] | None, h: float | None = h) -> str | None:
            return None if x is None or not h else f"{100 * x[1] / h:.0f} %"

        rows.append(
            [
                st.name,
                t.name,
                num(t.low[1] if t.low else None, 2),
                when(p, t.low[0] if t.low else None, True),
                pct(t.low),
                num(t.high[1] if t.high else None, 2),
                when(p, t.high[0] if t.high else None, True),
                pct(t.high),
            ]
        )
    return rows


def _lot_rows(
    lots: Sequence[LotFigures], views: Sequence[IncidentView], p: Period
) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for lot in lots:
        full = [
            v.incident
            for v in views
            if v.incident.kind == "lot_full" and v.incident.path == lot.path
        ]
        rows.append(
            [
                lot.name,
                lot.spaces,
                num(lot.peak[1] if lot.peak else None, 0),
                when(p, lot.peak[0] if lot.peak else None, True),
                num(lot.peak_pct, 1),
                lot.vehicles_in,
                lot.vehicles_out,
                num(lot.turnover, 2),
                len(full),
                sum(i.minutes for i in full),
            ]
        )
    return rows


def _site_section(s: SiteFigures, views: Sequence[IncidentView], p: Period) -> Html:
    parts: list[Cell] = []
    # pumps' run hours alone, or with other equipment's time running (a `running` role)
    metered = any(m.run_hours is not None for st in s.stations for m in st.meters)
    hours_label = "run hours" if metered else "pump run hours"
    if s.stations:
        parts.append(
            facts(
                [
                    ("water delivered, m³", num(s.water_m3, 0)),
                    ("energy, kWh", num(s.energy_kwh, 1)),
                    (hours_label, num(sum(st.run_hours for st in s.stations), 2)),
                    ("pump starts", sum(st.starts for st in s.stations)),
                ]
            )
        )
        parts.append(tag("h3", "Stations"))
        parts.append(
            table(
                [
                    "station",
                    "run h",
                    "starts",
                    "energy kWh",
                    "metered by",
                    "water m³",
                    "transformer peak",
                    "tank min m",
                    "tank max m",
                ],
                [_station_rows(st, p) for st in s.stations],
                {1, 2, 3, 5, 7, 8},
            )
        )
        pump_rows = [r for st in s.stations for r in _pump_rows(st)]
        if pump_rows:
            parts.append(tag("h3", "Pumps"))
            parts.append(
                table(
                    [
                        "station",
                        "pump",
                        "status",
                        "run h",
                        "starts",
                        "energy kWh",
                        "water m³",
                        "data %",
                    ],
                    pump_rows,
                    {3, 4, 5, 6, 7},
                )
            )
        tank_rows = [r for st in s.stations for r in _tank_rows(st, p)]
        if tank_rows:
            parts.append(tag("h3", "Tanks"))
            parts.append(
                table(
                    ["station", "tank", "min m", "at", "min", "max m", "at", "max"],
                    tank_rows,
                    {2, 4, 5, 7},
                )
            )
        meter_rows = [r for st in s.stations for r in _meter_rows(st)]
        if meter_rows:
            parts.append(tag("h3", "Meters and other equipment"))
            parts.append(
                table(
                    ["station", "asset", "kind", "water m³", "from", "energy kWh", "from", "run h"],
                    meter_rows,
                    {3, 5, 7},
                )
            )
    if s.lots:
        parts.append(
            table(
                [
                    "lot",
                    "spaces",
                    "peak occupied",
                    "at",
                    "peak %",
                    "vehicles in",
                    "vehicles out",
                    "turnover",
                    "full periods",
                    "full min",
                ],
                _lot_rows(s.lots, views, p),
                {1, 2, 4, 5, 6, 7, 8, 9},
            )
        )
    return section(f"{s.name}", *parts, ident=f"site-{s.site}")


def per_10_min(rate: float) -> str:
    """Three decimals, or two significant digits below 0.01: a month's few alarms are
    not "0.000"."""
    return f"{rate:.3f}" if rate == 0 or rate >= 0.01 else f"{rate:.2g}"


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


def _alarm_section(a: AlarmSummary, p: Period) -> Html:
    k = a.kpis
    total = sum(a.by_priority.values())
    eemua = {"critical": "≈ 5 %", "high": "≈ 15 %", "medium": "≈ 80 % (with low)", "low": ""}
    prio_rows: list[list[Cell]] = [
        [badge(name), n, f"{100 * n / total:.0f} %" if total else None, eemua[name]]
        for name, n in a.by_priority.items()
    ]
    return section(
        "Alarms",
        facts(
            [
                ("alarms raised", total),
                ("acknowledged", k.acknowledged),
                ("time to acknowledge, mean", duration(a.ack_mean_s)),
                ("median", duration(k.ack_median_s)),
                ("90th percentile", duration(k.ack_p90_s)),
                ("hidden when raised", a.suppressed),
            ]
        ),
        tag("h3", "By priority"),
        table(["priority", "alarms", "share", "EEMUA 191 guide"], prio_rows, {1, 2}),
        tag("h3", "By rule"),
        table(["rule", "alarms"], [[rule, n] for rule, n in a.by_rule.items()], {1}),
        *_rate_tables(k),
        tag(
            "p",
            f"Chattering alarms: {', '.join(k.chattering) or 'none'}. "
            f"Stale alarms (standing over 24 h): {', '.join(k.stale) or 'none'}.",
        ),
        tag("h3", "Every alarm raised"),
        table(RAISE_COLUMNS, _raise_rows(a.raises, p, store=False), wrap=RAISE_WRAP),
        ident="alarms",
    )


RATE_COLUMNS = [
    "alarms",
    "per 10 min, average (≤ 1 acceptable)",
    "peak per 10 min (< 10)",
    f"floods (> {FLOOD_ALARMS} in 10 min)",
    "time in flood (< 1 %)",
]


def _rate_tables(k: AlarmKpis) -> list[Html]:
    """EEMUA's rates per site, and per operator position when those are not the sites
    (the crews the notifier routes to): one crew may answer for several sites."""
    tables = [
        tag("h3", "Alarm rates per site (EEMUA 191)"),
        table(["site", *RATE_COLUMNS], _rate_rows(k.sites), {1, 2, 3, 4, 5}),
    ]
    if k.position_basis != Positions().basis:
        tables += [
            tag("h3", "Alarm rates per operator position (EEMUA 191)"),
            tag("p", f"An alarm's operator position: {k.position_basis}."),
            table(["operator position", *RATE_COLUMNS], _rate_rows(k.positions), {1, 2, 3, 4, 5}),
        ]
    return tables


def _rate_rows(groups: list[PositionKpis]) -> list[list[Cell]]:
    return [
        [
            x.position,
            x.alarms,
            per_10_min(x.per_10min_average),
            x.per_10min_peak,
            x.flood_periods,
            f"{x.time_in_flood_pct:.2f} %",
        ]
        for x in groups
    ]


def _days_section(r: OperationsReport) -> Html:
    rows: list[list[Cell]] = [
        [
            d.period.local(d.period.start_ms).date().isoformat(),
            num(d.water_m3, 0),
            num(d.energy_kwh, 1),
            num(d.run_hours, 2),
            d.alarms,
        ]
        for d in r.days
    ]
    return section(
        "Day by day",
        table(["day", "water m³", "energy kWh", "pump run h", "alarms"], rows, {1, 2, 3, 4}),
        ident="days",
    )


def render_operations(r: OperationsReport) -> str:
    p = r.period
    daily = r.kind == "daily"
    water = sum(s.water_m3 for s in r.sites)
    energy = sum(s.energy_kwh for s in r.sites)
    hours = sum(st.run_hours for s in r.sites for st in s.stations)
    parts: list[Cell] = [
        facts(
            [
                ("water delivered, m³", num(water, 0)),
                ("energy, kWh", num(energy, 1)),
                ("pump run hours", num(hours, 2)),
                ("alarms raised", sum(r.alarms.by_priority.values())),
                ("notable events", len(r.incidents)),
            ]
        )
    ]
    parts += [_site_section(s, r.incidents, p) for s in r.sites]
    if r.days:
        parts.append(_days_section(r))
    parts.append(section("Notable events", incident_cards(r.incidents, p, daily), ident="events"))
    parts.append(_alarm_section(r.alarms, p))
    parts.append(late_section(r.alarms.late, p))
    parts.append(
        section("Charts", *[figure(title, uri) for title, uri in r.charts], ident="charts")
    )
    footer = Html(
        esc(
            "Run hours, starts, energy and gate passages are differences of the devices' "
            "counters (a reset or a glitch is recognised); water delivered and pump energy "
            "integrate flow and power over time; 'data %' is the share of the period with "
            "readings. Details: docs/reports.md."
        )
    )
    name = "Daily operations report" if daily else "Monthly operations report"
    return page(f"{name} · {p.title}", _span(p), _generated(p, r.generated_ms), join(parts), footer)
