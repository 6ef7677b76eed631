"""Alarms: active now, history, raised per interval, and the EEMUA 191 KPIs."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import panels, queries, variables
from dashboards.boards.base import Board, new, site_pairs
from dashboards.influxql import InfluxQL
from dashboards.model import PRIORITY_COLOURS, Facts
from dashboards.panels import P
from ingest.alarms.readout import POSITION_MEASUREMENT

UID = "facility-alarms"
SITE: list[queries.Tag] = ["site"]
# EEMUA 191 benchmarks (docs/alarms.md, KPIs): average ≤ 1 per 10 min is very likely
# acceptable, ≤ 2 manageable; a peak of 10 or more in 10 minutes is a flood.
KPIS = (
    ("per_10min_average", "Alarms per 10 min (average)", ((1.0, "yellow"), (2.0, "red"))),
    ("per_10min_peak", "Alarms per 10 min (peak)", ((10.0, "red"),)),
    ("time_in_flood_pct", "Time in flood", ((1.0, "red"),)),
    ("chattering", "Chattering alarms", ((1.0, "orange"),)),
    ("stale", "Stale alarms (> 24 h)", ((1.0, "orange"),)),
)
# The rate charts: above 1 per 10 min manageable (amber), 10 or more a flood (red).
RATE_STEPS = ((1.0, "yellow"), (10.0, "red"))


def build(facts: Facts) -> Board:
    board = new(UID, "Alarms", facts, "ISA-18.2 alarm book as stored in alarm_event.")
    board.with_variable(variables.site(site_pairs(facts.config.sites), multi=True))
    active = InfluxQL(queries.active_alarms(SITE)).format("table")
    about = (
        "Alarms on the board at the end of the range: last state not normal (active, "
        "latched waiting for reset, or returned but unacknowledged)."
    )
    board.with_panel(panels.grid("Active alarms", [active], w=16, about=about).no_value("none"))
    count = InfluxQL(queries.active_alarm_count(SITE)).alias("$tag_priority")
    board.with_panel(
        _by_priority(panels.figure("Active by priority", [count], w=8, h=8).no_value("0"))
    )
    board.with_panel(_by_kind(facts))
    raised = InfluxQL(queries.raised_per_interval(SITE)).alias("$tag_priority")
    board.with_panel(_by_priority(panels.bars("Raised per interval", [raised], "none", w=24)))
    history = InfluxQL(queries.alarm_history(SITE)).format("table")
    board.with_panel(panels.grid("History", [history], h=10))
    board.with_row(panels.row("KPIs (EEMUA 191)"))
    for field, title, steps in KPIS:
        q = f'SELECT last("{field}") FROM "alarm_kpi" WHERE {queries.where(SITE)} GROUP BY "site"'
        unit = "percent" if field.endswith("pct") else "none"
        tile = panels.figure(title, [InfluxQL(q).alias("$tag_site")], unit, w=4)
        tile.thresholds(_steps(steps))
        board.with_panel(tile)
    series = (
        'SELECT max("per_10min_peak") AS "peak", mean("per_10min_average") AS "average" '
        f'FROM "alarm_kpi" WHERE {queries.where(SITE)} '
        'GROUP BY time($__interval), "site" fill(none)'
    )
    trend = panels.trend(
        "Alarm rate (24 h window)", [InfluxQL(series).alias("$tag_site $col")], "none", w=24
    )
    board.with_panel(trend.thresholds(_steps(RATE_STEPS)))
    board.with_panel(_per_position())
    return Board(UID, board)


def _by_kind(facts: Facts) -> stat.Panel:
    """Alarms on the board per kind of equipment, any kind the site model uses."""
    targets = []
    for kind in facts.config.kinds_in_use():
        assets = [r.key for r in facts.assets(kind.kind)]
        query = queries.active_alarm_count_of(SITE, assets)
        targets.append(InfluxQL(query).alias(kind.name))
    about = "Alarms on the board at the end of the range, by the kind of their asset."
    return panels.figure("Active by kind", targets, w=24, h=4, about=about).no_value("0")


def _per_position() -> timeseries.Panel:
    """EEMUA counts the rate per operator position: one position may watch several
    sites (the car-park crew) and the site variable does not apply to it."""
    series = (
        'SELECT max("per_10min_peak") AS "peak", mean("per_10min_average") AS "average" '
        f'FROM "{POSITION_MEASUREMENT}" WHERE $timeFilter '
        'GROUP BY time($__interval), "position" fill(none)'
    )
    about = (
        "Alarms per 10 minutes over the last 24 h at each operator position: the crew "
        "the notifier routes an alarm to (or an `alarms.kpi.positions` entry, else the "
        "site). EEMUA 191: an average ≤ 1 is acceptable, above it manageable; 10 or more "
        "in 10 minutes is a flood. Every site's alarms, whatever the site variable."
    )
    panel = panels.trend(
        "Alarms per 10 min per operator position",
        [InfluxQL(series).alias("$tag_position $col")],
        "none",
        w=24,
        about=about,
    )
    return panel.thresholds(_steps(RATE_STEPS))


def _steps(steps: tuple[tuple[float, str], ...]) -> db.ThresholdsConfig:
    first = [dm.Threshold(value=None, color="green")]
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps(first + [dm.Threshold(value=v, color=c) for v, c in steps])
    )


def _by_priority(panel: P) -> P:
    """Series named after priorities, coloured as the console colours them."""
    for priority, colour in PRIORITY_COLOURS.items():
        panel.override_by_name(
            priority, [panels.prop("color", {"mode": "fixed", "fixedColor": colour})]
        )
    return panel
