"""Car parks: occupancy against capacity per lot, gate events, turnover, lot-full periods."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat

from dashboards import panels, queries, variables
from dashboards.boards.base import Board, new, site_pairs
from dashboards.influxql import InfluxQL
from dashboards.model import Facts
from facility.site import AssetKind, AssetRef

UID = "facility-parking"
SITE: list[queries.Tag] = ["site"]
ALIAS = queries.ASSET_ALIAS


def build(facts: Facts) -> Board | None:
    parks = facts.sites("parking")
    lots = list(facts.assets(AssetKind.PARKING_LOT, parks))
    gates = list(facts.assets(AssetKind.BARRIER_GATE, parks))
    if not lots and not gates:
        return None  # no car park in the site model: no empty board
    board = new(UID, "Car parks", facts, "Occupancy, gates and turnover of the car parks.")
    board.with_variable(variables.site(site_pairs(parks), multi=True))
    board.with_variable(variables.retention())
    occupied = InfluxQL(queries.trend("parking_lot", "occupied", SITE, agg="max")).alias(ALIAS)
    capacity = InfluxQL(queries.trend("parking_lot", "capacity", SITE, agg="max"))
    capacity.alias("capacity $tag_site/$tag_station/$tag_asset")
    panel = panels.trend("Occupancy against capacity", [occupied, capacity], "none", w=16)
    board.with_panel(panels.per_asset(panel, facts, lots, None))
    now = InfluxQL(queries.last("parking_lot", ["occupied"], SITE)).alias(ALIAS)
    gauge = panels.gauges("Occupied now", [now], "none", w=8).min(0)
    for ref in lots:
        gauge.override_by_name(ref.path, [panels.prop("max", ref.asset.ratings.spaces)])
    board.with_panel(panels.per_asset(gauge, facts, lots, None))
    full = InfluxQL(queries.trend("parking_lot", "full", SITE, agg="max")).alias(ALIAS)
    lot_full = panels.states("Lot-full periods", [full], h=5)
    lot_full.mappings(panels.bool_mappings("full", "space", "red"))
    board.with_panel(panels.per_asset(lot_full, facts, lots, None))
    board.with_row(panels.row("Gates"))
    opened = InfluxQL(queries.trend("barrier_gate", "barrier_open", SITE, agg="max")).alias(ALIAS)
    barrier = panels.states("Barrier open", [opened], h=6)
    barrier.mappings(panels.bool_mappings("open", "closed", "orange"))
    board.with_panel(panels.per_asset(barrier, facts, gates, None))
    for counter, title in (("vehicles_in_total", "Vehicles in"), ("vehicles_out_total", "out")):
        q = InfluxQL(_per_interval(counter)).alias(ALIAS)
        board.with_panel(
            panels.per_asset(panels.bars(f"{title} per gate", [q], "none"), facts, gates, None)
        )
    board.with_row(panels.row("Turnover"))
    for ref in lots:
        board.with_panel(_turnover(ref))
    return Board(UID, board)


def _per_interval(counter: str) -> str:
    return (
        f'SELECT non_negative_difference(max(/^(max_)?{counter}$/)) FROM "$rp"."barrier_gate" '
        f"WHERE {queries.where(SITE)} GROUP BY time($__interval), "
        f"{queries.group(queries.ASSET_TAGS)} fill(none)"
    )


def _turnover(lot: AssetRef) -> stat.Panel:
    """Vehicles in over the range per space: how often each space was used. Empty
    while the lot's site is not selected, like every other panel of the board."""
    spaces = lot.asset.ratings.spaces or 1
    site = (
        f'"site" = \'{lot.site.id}\' AND "station" = \'{lot.station.id}\' AND "site" =~ /^$site$/'
    )
    inner = (
        'SELECT non_negative_difference(max("vehicles_in_total")) AS "d" FROM "barrier_gate" '
        f'WHERE {site} AND $timeFilter GROUP BY time(10m), "asset" fill(none)'
    )
    query = f'SELECT sum("d") / {spaces} FROM ({inner}) WHERE $timeFilter'
    about = f"Vehicles entered in the range ÷ {spaces} spaces (site model)."
    return panels.figure(
        f"Turnover {lot.site.name or lot.site.id}", [InfluxQL(query)], w=6, about=about
    ).decimals(2)
