"""Assemble the reports from what data.py reads: the models html/ renders."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from dashboards.reports import charts
from dashboards.reports.alarms import (
    AlarmSummary,
    Raise,
    Standing,
    late_in,
    raises_in,
    standing_at,
    summarise,
    with_notified_raises,
    with_notified_standing,
)
from dashboards.reports.data import AssetPath, Influx, Window
from dashboards.reports.figures import (
    HOUR_MS,
    OWN_FIGURES,
    Series,
    SiteFigures,
    integrate,
    metered,
    read_series,
    role_key,
    site_figures,
)
from dashboards.reports.incidents import Incident, chart_fields, find_incidents, incident_kinds
from dashboards.reports.periods import Period, days_of
from facility.config import SiteConfig
from facility.kind import Role
from facility.site import AssetKind, AssetStatus
from ingest.alarms.readout import (
    AlarmBook,
    AlarmEvent,
    NotifyStore,
    OutOfService,
    Positions,
    RuleSet,
    Transition,
    assets_out_of_service,
)

MINUTE_MS = 60_000
CHART_MARGIN_MS = 30 * MINUTE_MS  # before and after an incident, for context
ALARM_MATCH_MS = 15 * MINUTE_MS  # an alarm this close to an incident is about it
LONGEST_SHELF_MS = 8 * HOUR_MS  # the book's limit: a shelf older than this has ended
Chart = tuple[str, str]  # (title, data: URI)


@dataclass
class IncidentView:
    incident: Incident
    name: str
    alarm: Raise | None
    chart: str


@dataclass
class RegisterEntry:
    """An asset the asset register lists as not in service (broken, standby)."""

    path: str
    name: str
    status: str
    notes: str


@dataclass
class ShiftReport:
    period: Period
    generated_ms: int
    standing: list[Standing]
    raises: list[Raise]
    cleared_earlier: list[Transition]  # clears in the shift of alarms raised before it
    late: list[Transition]  # late conditions: over before their data arrived, nobody told
    register: list[RegisterEntry]
    book_out_of_service: list[OutOfService]
    incidents: list[IncidentView]
    notify_store: bool  # whether a notification store was read


@dataclass
class DayRow:
    period: Period
    water_m3: float
    energy_kwh: float
    run_hours: float
    alarms: int


@dataclass
class OperationsReport:
    kind: str  # daily | monthly
    period: Period
    generated_ms: int
    sites: list[SiteFigures]
    incidents: list[IncidentView]
    alarms: AlarmSummary
    charts: list[Chart] = field(default_factory=list)
    days: list[DayRow] = field(default_factory=list)


# -- names ----------------------------------------------------------------------------


def asset_names(config: SiteConfig) -> dict[AssetPath, str]:
    names = {}
    for ref in config.assets():
        station = ref.station.name or ref.station.id
        names[ref.key] = f"{station} · {ref.asset.name or ref.asset.id}"
    return names


def register_not_in_service(config: SiteConfig) -> list[RegisterEntry]:
    return [
        RegisterEntry(
            ref.path, ref.asset.name or ref.asset.id, ref.asset.status.value, ref.asset.notes
        )
        for ref in config.assets()
        if ref.asset.status is not AssetStatus.IN_SERVICE
    ]


# -- incidents ------------------------------------------------------------------------


# Rated limits drawn on an incident's chart.
CHART_LIMITS = {"load_pct": 100.0}


def _incident_chart(influx: Influx, incident: Incident, period: Period, config: SiteConfig) -> str:
    measurement, names = chart_fields(incident.kind)
    start = max(incident.start_ms - CHART_MARGIN_MS, period.start_ms - CHART_MARGIN_MS)
    end = min(incident.end_ms + CHART_MARGIN_MS, period.as_of_ms)
    window = Window(start, end)
    lines = [(name, influx.raw(measurement, name, window, incident.path)) for name in names]
    boolean = names[0] in BOOLEAN_SIGNALS
    limit = CHART_LIMITS.get(names[0])
    if names[0] == "occupied":
        limit = _spaces(config, incident.path)
    return charts.time_chart(
        lines,
        period.tz,
        "on = 1, off = 0" if boolean else names[0].replace("_", " "),
        spans=[(incident.start_ms, incident.end_ms)],
        limit=limit,
        steps=boolean,
    )


BOOLEAN_SIGNALS = frozenset({"tripped", "running", "comm_ok", "uplink_connected", "barrier_open"})


def _spaces(config: SiteConfig, path: AssetPath) -> float | None:
    for ref in config.assets():
        if ref.key == path and ref.asset.ratings.spaces:
            return float(ref.asset.ratings.spaces)
    return None


def _matching_alarm(incident: Incident, raises: list[Raise]) -> Raise | None:
    site, station, asset = incident.path
    for r in raises:
        same = (r.key.site, r.key.station, r.key.asset) == (site, station, asset)
        near = incident.start_ms - ALARM_MATCH_MS <= r.raised_ms <= incident.end_ms + ALARM_MATCH_MS
        if same and near:
            return r
    return None


def incident_views(
    influx: Influx,
    config: SiteConfig,
    period: Period,
    raises: list[Raise],
    now_ms: int,
    rules: RuleSet | None = None,
) -> list[IncidentView]:
    names = asset_names(config)
    return [
        IncidentView(
            incident=i,
            name=names.get(i.path, "/".join(i.path)),
            alarm=_matching_alarm(i, raises),
            chart=_incident_chart(influx, i, period, config),
        )
        for i in find_incidents(influx, period, now_ms, incident_kinds(rules))
    ]


# -- the shift handover ---------------------------------------------------------------


def shift_report(
    influx: Influx,
    book: AlarmBook,
    store: NotifyStore | None,
    config: SiteConfig,
    period: Period,
    now_ms: int,
    rules: RuleSet | None = None,
) -> ShiftReport:
    """`rules`: the alarm rules, for the incidents' limits (None: the fallbacks)."""
    as_of = period.as_of_ms
    standing = standing_at(book, as_of, period.start_ms - LONGEST_SHELF_MS)
    raises = with_notified_raises(store, raises_in(book, period.start_ms, as_of + 1))
    history = book.history(since_ms=period.start_ms, until_ms=as_of + 1, limit=1_000_000)
    cleared_earlier = [
        t for t in history if t.event is AlarmEvent.CLEARED and not _raised_in(t, raises)
    ]
    return ShiftReport(
        period=period,
        generated_ms=now_ms,
        standing=with_notified_standing(store, standing),
        raises=raises,
        cleared_earlier=cleared_earlier,
        late=late_in(book, period.start_ms, as_of + 1),
        register=register_not_in_service(config),
        book_out_of_service=assets_out_of_service(book, as_of),
        incidents=incident_views(influx, config, period, raises, now_ms, rules),
        notify_store=store is not None,
    )


def _raised_in(clear: Transition, raises: list[Raise]) -> bool:
    return any(r.key == clear.key and r.raised_ms <= clear.at_ms for r in raises)


# -- the operations reports -----------------------------------------------------------


def operations_report(
    kind: str,
    influx: Influx,
    book: AlarmBook,
    config: SiteConfig,
    period: Period,
    now_ms: int,
    rules: RuleSet | None = None,
    positions: Positions | None = None,
) -> OperationsReport:
    """`rules`: the alarm rules, for the incidents' limits (None: the fallbacks);
    `positions`: the operator positions to rate alarms for too (None: sites only)."""
    bucket = MINUTE_MS if kind == "daily" else HOUR_MS
    series = read_series(influx, period, bucket, config)
    alarms = summarise(book, period.start_ms, period.end_ms, positions)
    report = OperationsReport(
        kind=kind,
        period=period,
        generated_ms=now_ms,
        sites=site_figures(series, config, period),
        incidents=incident_views(influx, config, period, alarms.raises, now_ms, rules),
        alarms=alarms,
    )
    if kind == "daily":
        report.charts = daily_charts(series, config, period, alarms)
    else:
        report.days = day_rows(series, config, period, alarms)
        report.charts = monthly_charts(report.days, period, alarms)
    return report


def day_rows(
    series: Series, config: SiteConfig, period: Period, alarms: AlarmSummary
) -> list[DayRow]:
    rows = []
    for day in days_of(period):
        sites = site_figures(series, config, day)
        count = sum(1 for r in alarms.raises if day.start_ms <= r.raised_ms < day.end_ms)
        rows.append(
            DayRow(
                period=day,
                water_m3=sum(s.water_m3 for s in sites),
                energy_kwh=sum(s.energy_kwh for s in sites),
                run_hours=sum(st.run_hours for s in sites for st in s.stations),
                alarms=count,
            )
        )
    return rows


def _hourly(period: Period) -> list[tuple[int, int]]:
    return [
        (t, min(t + HOUR_MS, period.end_ms)) for t in range(period.start_ms, period.end_ms, HOUR_MS)
    ]


def _alarm_stacks(
    raises: list[Raise], slots: list[tuple[int, int]]
) -> list[tuple[str, list[float], str | None]]:
    stacks: list[tuple[str, list[float], str | None]] = []
    for priority, colour in charts.PRIORITY_COLOURS.items():
        counts: list[float] = [
            float(sum(1 for r in raises if r.priority.value == priority and a <= r.raised_ms < b))
            for a, b in slots
        ]
        stacks.append((priority, counts, colour))
    return stacks


def daily_charts(
    series: Series, config: SiteConfig, period: Period, alarms: AlarmSummary
) -> list[Chart]:
    hours = _hourly(period)
    labels = [period.local(a).strftime("%H") for a, _ in hours]
    out: list[Chart] = []
    for site in config.sites:
        water: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(hours))
        metered_at = _metered_stations(series, config, site.id)
        for ref in config.assets():
            if ref.site.id != site.id:
                continue
            if ref.station.id in metered_at:
                if ref.asset.kind in OWN_FIGURES:
                    continue
                for i, span in enumerate(hours):
                    got, _ = metered(
                        series, ref.key, ref.asset, config, span, Role.VOLUME_COUNTER, Role.FLOW
                    )
                    water[ref.station.id][i] += got or 0.0
                continue
            if ref.asset.kind != AssetKind.PUMP:
                continue
            flow = series.of("flow", ref.key)
            for i, (a, b) in enumerate(hours):
                water[ref.station.id][i] += integrate(flow, a, b, series.bucket_ms).total
        if water:
            stacks = [(name, values, None) for name, values in water.items()]
            out.append(
                (
                    f"{site.id}: water delivered per hour (m³)",
                    charts.bar_chart(labels, stacks, "m³"),
                )
            )
        out += _site_line_charts(series, config, site.id, period)
    slots = _alarm_stacks(alarms.raises, hours)
    out.append(("Alarms raised per hour, by priority", charts.bar_chart(labels, slots, "alarms")))
    return out


def _metered_stations(series: Series, config: SiteConfig, site_id: str) -> set[str]:
    """Stations whose water a meter counts (then the pumps' own flows are not added)."""
    out = set()
    for ref in config.assets():
        if ref.site.id != site_id or ref.asset.kind in OWN_FIGURES:
            continue
        for signal in config.signals_with(ref.asset, Role.VOLUME_COUNTER) + config.signals_with(
            ref.asset, Role.FLOW
        ):
            if series.of(role_key(ref.asset.kind, signal), ref.key):
                out.add(ref.station.id)
    return out


def _site_line_charts(
    series: Series, config: SiteConfig, site_id: str, period: Period
) -> list[Chart]:
    tanks, loads, lots = [], [], []
    site = config.site(site_id)
    for ref in config.assets():
        if ref.site.id != site_id:
            continue
        a = ref.asset
        if a.kind == AssetKind.TANK and a.ratings.height_m:
            pct = [(t, 100 * v / a.ratings.height_m) for t, v in series.of("level", ref.key)]
            tanks.append((a.id, pct))
        elif a.kind == AssetKind.TRANSFORMER and series.of("load", ref.key):
            loads.append((ref.station.id, series.of("load", ref.key)))
        elif a.kind == AssetKind.PARKING_LOT:
            lots.append((ref.path, series.of("occupied", ref.key), a.ratings.spaces))
    out: list[Chart] = []
    tz = period.tz
    if tanks:
        out.append(
            (
                f"{site.id}: tank levels (% of height)",
                charts.time_chart(tanks, tz, "%", size=charts.WIDE),
            )
        )
    if loads:
        out.append(
            (
                f"{site.id}: transformer load (%, 1-min max)",
                charts.time_chart(loads, tz, "%", limit=100, size=charts.WIDE),
            )
        )
    for name, samples, spaces in lots:
        out.append(
            (
                f"{name}: occupied spaces",
                charts.time_chart([(name, samples)], tz, "spaces", limit=spaces, size=charts.WIDE),
            )
        )
    return out


def monthly_charts(days: list[DayRow], period: Period, alarms: AlarmSummary) -> list[Chart]:
    labels = [d.period.local(d.period.start_ms).strftime("%d") for d in days]
    slots = [(d.period.start_ms, d.period.end_ms) for d in days]
    return [
        (
            "Water delivered per day (m³)",
            charts.bar_chart(labels, [("m³", [d.water_m3 for d in days], "#1e6fd9")], "m³"),
        ),
        (
            "Energy per day (kWh)",
            charts.bar_chart(labels, [("kWh", [d.energy_kwh for d in days], "#6a1b9a")], "kWh"),
        ),
        (
            "Alarms raised per day, by priority",
            charts.bar_chart(labels, _alarm_stacks(alarms.raises, slots), "alarms"),
        ),
    ]
