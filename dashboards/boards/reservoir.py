"""Per reservoir (a water-supply site): reservoir and tank levels, pump states, flows,
energy, and water quality where the site doses ClO2."""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries

from dashboards import panels, queries, variables
from dashboards.boards.base import Board, new, site_pairs
from dashboards.influxql import InfluxQL
from dashboards.model import Facts
from facility.site import AssetKind

UID = "facility-reservoir"
SITE: list[queries.Tag] = ["site"]


def build(facts: Facts) -> Board:
    water = facts.sites("water_supply")
    board = new(UID, "Reservoir", facts, "One water-supply system: storage, pumping, energy.")
    board.with_variable(variables.site(site_pairs(water), multi=False))
    board.with_variable(variables.retention())
    alias = queries.ASSET_ALIAS
    for kind, signals in _LEVELS:
        refs = list(facts.assets(kind, water))
        if not refs:
            continue
        board.with_row(panels.row(kind.value.replace("_", " ").capitalize()))
        for signal, title in signals:
            q = InfluxQL(queries.trend(kind.value, signal, SITE)).alias(alias)
            panel = panels.trend(title, [q], facts.unit(kind, signal))
            board.with_panel(panels.per_asset(panel, facts, refs, signal))
    pumps = list(facts.assets(AssetKind.PUMP, water))
    board.with_row(panels.row("Pumping"))
    running = InfluxQL(queries.trend("pump", "running", SITE, agg="max")).alias(alias)
    board.with_panel(panels.per_asset(panels.states("Pump states", [running]), facts, pumps, None))
    flow = InfluxQL(queries.trend("pump", "flow_m3h", SITE)).alias(alias)
    unit = facts.unit(AssetKind.PUMP, "flow_m3h")
    board.with_panel(panels.per_asset(panels.trend("Flows", [flow], unit), facts, pumps, None))
    board.with_panel(_energy(facts))
    return Board(UID, board)


_LEVELS = (
    (AssetKind.RESERVOIR, (("water_level_m", "Reservoir level"), ("storage_pct", "Storage"))),
    (AssetKind.TANK, (("level_m", "Tank levels"), ("volume_m3", "Tank volumes"))),
    (
        AssetKind.WATER_QUALITY,
        (("clo2_residual_mg_l", "ClO2 residual"), ("turbidity_ntu", "Turbidity")),
    ),
)


def _energy(facts: Facts) -> timeseries.Panel:
    """Energy per interval from the transformers' kWh meters (a counter: differences)."""
    query = queries.increase("transformer", "energy_kwh", SITE)
    unit = facts.unit(AssetKind.TRANSFORMER, "energy_kwh")
    refs = facts.assets(AssetKind.TRANSFORMER, facts.sites("water_supply"))
    panel = panels.bars("Energy per interval", [InfluxQL(query).alias(queries.ASSET_ALIAS)], unit)
    return panels.per_asset(panel, facts, refs, None)
