"""Fleet overview: stations running, stopped and faulted, assets reporting by kind (any
kind, facility/kinds/), tank levels against their alarm levels, active alarms by
priority, gateways online; one tile per pump station."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import panels, queries, variables
from dashboards.boards.base import Board, new, site_pairs
from dashboards.influxql import InfluxQL
from dashboards.model import Facts, status_suffix
from facility.site import AssetKind, AssetStatus, Site, Station

UID = "facility-fleet"
TRIPPED = " tripped"  # series name suffix of the tiles' trip target


def build(facts: Facts) -> Board:
    board = new(UID, "Fleet overview", facts, "Every site at a glance; drill down by the links.")
    board.with_variable(variables.site(site_pairs(facts.config.sites), multi=True))
    board.with_row(panels.row("Now"))
    has_pumps = any(True for _ in facts.assets(AssetKind.PUMP))
    for title, query in _counts() if has_pumps else []:
        # InfluxDB counts nothing as no row: zero stations is still an answer.
        about = f"Counts only what reported within {queries.FRESH} of the end of the range."
        board.with_panel(panels.figure(title, [InfluxQL(query)], w=4, about=about).no_value("0"))
    board.with_panel(_gateways(facts))
    active = InfluxQL(queries.active_alarm_count(["site"])).alias("$tag_priority")
    board.with_panel(panels.figure("Active alarms by priority", [active], w=8).no_value("0"))
    board.with_panel(_reporting(facts))
    if any(True for _ in facts.assets(AssetKind.TANK)):
        board.with_panel(_tanks(facts))
    water = facts.sites("water_supply")
    board.with_row(panels.row("Stations"))
    for site in water:
        for station in site.stations:
            if any(a.kind == AssetKind.PUMP for a in station.assets):
                board.with_panel(_tile(site, station))
    return Board(UID, board)


def _reporting(facts: Facts) -> stat.Panel:
    """Per kind: assets whose last reading is within FRESH of the end of the range,
    against the site model's count of that kind."""
    targets, totals = [], {}
    for kind in facts.kinds():
        refs = list(facts.assets(kind.kind))
        profiles = sorted({r.asset.profile for r in refs if r.asset.profile})
        for profile in profiles:
            # a field every asset of the profile reports: its first number or state
            signals = facts.config.profiles[profile].signals
            signal = next((s.name for s in signals if str(s.type) != "string"), None)
            if signal is None:
                continue
            query = queries.count_reporting(kind.kind, signal, ["site"])
            name = kind.name if len(profiles) == 1 else f"{kind.name} ({profile})"
            targets.append(InfluxQL(query).alias(name))
            totals[name] = sum(1 for r in refs if r.asset.profile == profile)
    about = (
        f"Per kind: assets with a reading within {queries.FRESH} of the end of the range, "
        "of the site model's assets of that kind (every site)."
    )
    panel = panels.figure("Assets reporting, by kind", targets, w=24, about=about)
    panel.no_value("0")
    for name, total in totals.items():
        steps = [dm.Threshold(value=None, color="orange"), dm.Threshold(value=total, color="green")]
        limits = db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps).build()
        label = panels.prop("displayName", f"{name} (of {total})")
        panel.override_by_name(name, [label, panels.prop("thresholds", limits)])
    return panel


def _counts() -> list[tuple[str, str]]:
    per = ("site", "station")
    return [
        ("Stations running", queries.count_where_last("pump", "running", "true", ["site"], per)),
        ("Stations stopped", queries.count_where_last("pump", "running", "false", ["site"], per)),
        ("Stations faulted", queries.count_where_last("pump", "tripped", "true", ["site"], per)),
    ]


def _gateways(facts: Facts) -> stat.Panel:
    """Online gateways per site against the site model's count: a silent gateway (no
    health within FRESH) is not counted, so the site turns red."""
    per = ("site", "station")
    query = queries.count_where_last(
        "gateway_health", "uplink_connected", "true", ["site"], per, by=("site",)
    )
    about = (
        f"Per site: gateways whose last health report, within {queries.FRESH} of the end "
        "of the range, has the uplink connected. Red: fewer than the site model's gateways."
    )
    target = InfluxQL(query).alias("$tag_site")
    panel = panels.figure("Gateways online", [target], w=4, about=about).no_value("0")
    for site in facts.config.sites:
        total = sum(1 for st in site.stations for a in st.assets if a.kind == AssetKind.GATEWAY)
        steps = [dm.Threshold(value=None, color="red"), dm.Threshold(value=total, color="green")]
        limits = db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps).build()
        name = panels.prop("displayName", f"{site.name or site.id} (of {total})")
        panel.override_by_name(site.id, [name, panels.prop("thresholds", limits)])
    return panel


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
    """One station's pumps now: running or stopped, and a red TRIPPED tile per tripped
    pump; shown only while its site is selected."""
    pumps = [a for a in station.assets if a.kind == AssetKind.PUMP]
    tags = (
        f'"site" =~ /^$site$/ AND "site" = \'{site.id}\' AND "station" = \'{station.id}\' '
        f"AND {queries.RECENT}"
    )
    running = InfluxQL(f'SELECT last("running") FROM "pump" WHERE {tags} GROUP BY "asset"').alias(
        "$tag_asset"
    )
    # only tripped pumps give a series: a tile per trip, red, next to the pump's state
    tripped = InfluxQL(
        f'SELECT "v" FROM (SELECT last("tripped") AS "v" FROM "pump" WHERE {tags} '
        'GROUP BY "asset") WHERE "v" = true GROUP BY "asset"'
    ).alias(f"$tag_asset{TRIPPED}")
    broken = [f"{a.id}{status_suffix(a)}" for a in pumps if a.status is not AssetStatus.IN_SERVICE]
    about = f"{site.name or site.id}: {station.name or station.id}"
    if broken:
        about += ". Not in service: " + ", ".join(broken)
    panel = panels.figure(station.name or station.id, [running, tripped], w=6, h=4, about=about)
    panel.mappings(panels.bool_mappings("running", "stopped", "green", panels.STOPPED_COLOUR))
    for a in pumps:
        props = [panels.prop("displayName", a.id + status_suffix(a))]
        if a.status is AssetStatus.OUT_OF_SERVICE:
            props += panels.out_of_service(panel)
        panel.override_by_name(a.id, props)
        trip = panels.bool_mappings("TRIPPED", "ok", "red")
        panel.override_by_name(a.id + TRIPPED, [panels.prop("mappings", trip)])
    return panel
