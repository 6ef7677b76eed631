"""The daily and monthly operations reports: per site, station, pump, tank, meter and
lot; day by day; notable events; the alarms and their EEMUA 191 rates; charts."""

from __future__ import annotations

from collections.abc import Sequence

from dashboards.reports.alarms import AlarmSummary
from dashboards.reports.build import IncidentView, OperationsReport
from dashboards.reports.figures import LotFigures, SiteFigures, StationFigures
from dashboards.reports.html.markup import (
    Cell,
    Html,
    badge,
    duration,
    facts,
    figure,
    join,
    num,
    report_page,
    section,
    table,
    tag,
    when,
)
from dashboards.reports.html.sections import incident_cards, late_section, raise_table
from dashboards.reports.periods import Period
from ingest.alarms.readout import FLOOD_ALARMS, AlarmKpis, PositionKpis, Positions


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
        raise_table(a.raises, p, store=False),
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
    footer = (
        "Run hours, starts, energy and gate passages are differences of the devices' "
        "counters (a reset or a glitch is recognised); water delivered and pump energy "
        "integrate flow and power over time; 'data %' is the share of the period with "
        "readings. Details: docs/reports.md."
    )
    name = "Daily operations report" if daily else "Monthly operations report"
    return report_page(f"{name} · {p.title}", p, r.generated_ms, join(parts), footer)
