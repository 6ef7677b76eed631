"""Per water-supply site: reservoir and tank levels, pump states, flows, water delivered
and energy, and water quality where the site doses ClO2. Water and energy come from the
signals' roles (facility/kinds/): every volume totaliser and energy counter of the site,
whatever kind of equipment carries it, and every flow of a kind that is no pump."""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries

from dashboards import panels, queries, variables
from dashboards.boards.base import Board, new, site_pairs
from dashboards.influxql import InfluxQL
from dashboards.model import Facts
from facility.kind import Role
from facility.site import AssetKind, AssetRef

UID = "facility-reservoir"
SITE: list[queries.Tag] = ["site"]


def build(facts: Facts) -> Board | None:
    water = facts.sites("water_supply")
    if not water:
        return None
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
    if pumps:
        board.with_row(panels.row("Pumping"))
        running = InfluxQL(queries.trend("pump", "running", SITE, agg="max")).alias(alias)
        states = panels.states("Pump states", [running])
        board.with_panel(panels.per_asset(states, facts, pumps, None))
        flow = InfluxQL(queries.trend("pump", "flow_m3h", SITE)).alias(alias)
        unit = facts.unit(AssetKind.PUMP, "flow_m3h")
        board.with_panel(panels.per_asset(panels.trend("Flows", [flow], unit), facts, pumps, None))
    metered = _by_role(facts, Role.FLOW, exclude=AssetKind.PUMP)
    totalisers = _by_role(facts, Role.VOLUME_COUNTER)
    if metered or totalisers:
        board.with_row(panels.row("Metered water"))
    for source, refs in metered.items():
        board.with_panel(_role_panel(facts, source, refs, "Metered flow", len(metered) > 1))
    for source, refs in totalisers.items():
        title = "Water delivered per interval"
        board.with_panel(_role_panel(facts, source, refs, title, len(totalisers) > 1, True))
    energy = _by_role(facts, Role.ENERGY_COUNTER)
    for source, refs in energy.items():
        title = "Energy per interval"
        board.with_panel(_role_panel(facts, source, refs, title, len(energy) > 1, True))
    return Board(UID, board)


_LEVELS = (
    (AssetKind.RESERVOIR, (("water_level_m", "Reservoir level"), ("storage_pct", "Storage"))),
    (AssetKind.TANK, (("level_m", "Tank levels"), ("volume_m3", "Tank volumes"))),
    (
        AssetKind.WATER_QUALITY,
        (("clo2_residual_mg_l", "ClO2 residual"), ("turbidity_ntu", "Turbidity")),
    ),
)

# (kind, signal) → the water-site assets whose signal of that name has the role
Sources = dict[tuple[str, str], list[AssetRef]]


def _by_role(facts: Facts, role: Role, exclude: str | None = None) -> Sources:
    out: Sources = {}
    for ref in facts.config.assets():
        if ref.site.kind != "water_supply" or ref.asset.kind == exclude:
            continue
        for signal in facts.config.signals_with(ref.asset, role):
            out.setdefault((ref.asset.kind, signal), []).append(ref)
    return out


def _role_panel(
    facts: Facts,
    source: tuple[str, str],
    refs: list[AssetRef],
    title: str,
    name_it: bool,
    counter: bool = False,
) -> timeseries.Panel:
    """One signal of one kind over the site: a counter's increase per interval as bars
    (the transformers' and energy meters' kWh, the flow meters' totalisers), or a rate."""
    kind, signal = source
    query = queries.increase(kind, signal, SITE) if counter else queries.trend(kind, signal, SITE)
    target = InfluxQL(query).alias(queries.ASSET_ALIAS)
    unit = facts.config.unit_of(refs[0].asset, signal)
    if name_it:
        title = f"{title}: {facts.config.kinds[kind].name}, {signal}"
    panel = (panels.bars if counter else panels.trend)(title, [target], unit)
    return panels.per_asset(panel, facts, refs, None)
