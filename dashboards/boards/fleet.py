"""Fleet overview: stations running, stopped and faulted, tank levels against their
alarm levels, active alarms by priority, gateways online; one tile per station."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat

from dashboards import panels, queries, variables
from dashboards.boards.base import Board, new, site_pairs
from dashboards.influxql import InfluxQL
from dashboards.model import Facts, status_suffix
from facility.site import AssetKind, AssetStatus, Site, Station

UID = "facility-fleet"


def build(facts: Facts) -> Board:
    board = new(UID, "Fleet overview", facts, "Every site at a glance; drill down by the links.")
    board.with_variable(variables.site(site_pairs(facts.config.sites), multi=True))
    board.with_row(panels.row("Now"))
    for title, query in _counts():
        # InfluxDB counts nothing as no row: zero stations is still an answer.
        board.with_panel(panels.figure(title, [InfluxQL(query)], w=4).no_value("0"))
    active = InfluxQL(queries.active_alarm_count(["site"])).alias("$tag_priority")
    board.with_panel(panels.figure("Active alarms by priority", [active], w=8).no_value("0"))
    board.with_panel(_tanks(facts))
    water = facts.sites("water_supply")
    board.with_row(panels.row("Stations"))
    for site in water:
        for station in site.stations:
            if any(a.kind is AssetKind.PUMP for a in station.assets):
                board.with_panel(_tile(site, station))
    return Board(UID, board)


def _counts() -> list[tuple[str, str]]:
    per = ("site", "station")
    return [
        ("Stations running", queries.count_where_last("pump", "running", "true", ["site"], per)),
        ("Stations stopped", queries.count_where_last("pump", "running", "false", ["site"], per)),
        ("Stations faulted", queries.count_where_last("pump", "tripped", "true", ["site"], per)),
        (
            "Gateways online",
            queries.count_where_last("gateway_health", "uplink_connected", "true", ["site"], per),
        ),
    ]


def _tanks(facts: Facts) -> bargauge.Panel:
    refs = list(facts.assets(AssetKind.TANK))
    query = InfluxQL(queries.last("tank", ["level_m"], ["site"])).alias(queries.ASSET_ALIAS)
    unit = facts.unit(AssetKind.TANK, "level_m")
    about = "Last level of each tank; colours change at its L/LL/H/HH limits (site model)."
    panel = panels.gauges("Tank levels against alarm levels", [query], unit, about=about)
    panel.min(0)
    panels.per_asset(panel, facts, refs, "level_m")
    for ref in refs:
        if ref.asset.ratings.height_m:
            height = panels.prop("max", ref.asset.ratings.height_m)
            panel.override_by_name(ref.path, [height])
    return panel


def _tile(site: Site, station: Station) -> stat.Panel:
    """One station's pumps now: running, stopped, tripped (red wins)."""
    pumps = [a for a in station.assets if a.kind is AssetKind.PUMP]
    tags = f"\"site\" = '{site.id}' AND \"station\" = '{station.id}'"
    running = InfluxQL(
        f'SELECT last("running") FROM "pump" WHERE {tags} AND $timeFilter GROUP BY "asset"'
    ).alias("$tag_asset")
    broken = [f"{a.id}{status_suffix(a)}" for a in pumps if a.status is not AssetStatus.IN_SERVICE]
    about = f"{site.name or site.id}: {station.name or station.id}"
    if broken:
        about += ". Not in service: " + ", ".join(broken)
    panel = panels.figure(station.name or station.id, [running], w=6, h=4, about=about)
    panel.mappings(panels.bool_mappings("running", "stopped", "green"))
    for a in pumps:
        props = [panels.prop("displayName", a.id + status_suffix(a))]
        if a.status is AssetStatus.OUT_OF_SERVICE:
            props.append(panels.greyed())
        panel.override_by_name(a.id, props)
    return panel
