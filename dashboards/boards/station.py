"""Per pump station: each pump's run state, frequency, current, power, flow, bearing
temperature and vibration; the transformer's load and oil temperature against limits."""

from __future__ import annotations

from grafana_foundation_sdk.builders import text

from dashboards import panels, queries, variables
from dashboards.boards.base import Board, new, site_pairs
from dashboards.influxql import InfluxQL
from dashboards.model import Facts
from facility.site import AssetKind

UID = "facility-station"
PUMP_FILTER: list[queries.Tag] = ["site", "station", "asset"]
STATION_FILTER: list[queries.Tag] = ["site", "station"]
PUMP_SIGNALS = (
    ("frequency_hz", "Frequency"),
    ("current_a", "Current"),
    ("power_kw", "Power"),
    ("flow_m3h", "Flow"),
    ("bearing_temp_c", "Bearing temperature"),
    ("vibration_mm_s", "Vibration"),
)
TRANSFORMER_SIGNALS = (("load_pct", "Transformer load"), ("top_oil_temp_c", "Oil temperature"))


def build(facts: Facts) -> Board:
    water = facts.sites("water_supply")
    pumps = list(facts.assets(AssetKind.PUMP, water))
    board = new(UID, "Pump station", facts, "One station's pumps and transformer.")
    board.with_variable(variables.site(site_pairs(water), multi=False))
    stations = [r.station.id for r in pumps if r.site.id == water[0].id] if water else []
    board.with_variable(variables.tag("station", "pump", ["site"], stations, multi=False))
    first = [r.asset.id for r in pumps if stations and r.station.id == stations[0]]
    board.with_variable(variables.tag("asset", "pump", ["site", "station"], first))
    board.with_variable(variables.retention())
    alias = queries.ASSET_ALIAS
    board.with_row(panels.row("Pumps"))
    for signal, title in (("running", "Run state"), ("tripped", "Tripped")):
        q = InfluxQL(queries.trend("pump", signal, PUMP_FILTER, agg="max")).alias(alias)
        states = panels.states(title, [q], w=12, h=6)
        if signal == "tripped":
            states.mappings(panels.bool_mappings("tripped", "ok", "red"))
        board.with_panel(panels.per_asset(states, facts, pumps, None))
    for signal, title in PUMP_SIGNALS:
        q = InfluxQL(queries.trend("pump", signal, PUMP_FILTER)).alias(alias)
        panel = panels.trend(title, [q], facts.unit(AssetKind.PUMP, signal), w=8)
        board.with_panel(panels.per_asset(panel, facts, pumps, signal))
    transformers = list(facts.assets(AssetKind.TRANSFORMER, water))
    board.with_row(panels.row("Transformer"))
    for signal, title in TRANSFORMER_SIGNALS:
        q = InfluxQL(queries.trend("transformer", signal, STATION_FILTER, agg="max")).alias(alias)
        about = "Peak per interval; threshold lines from the alarm rules and site limits."
        load = panels.trend(title, [q], facts.unit(AssetKind.TRANSFORMER, signal), about=about)
        board.with_panel(panels.per_asset(load, facts, transformers, signal))
    board.with_panel(_register(facts))
    return Board(UID, board)


def _register(facts: Facts) -> text.Panel:
    """Assets out of service: no data expected, no alarm rules (docs/alarms.md)."""
    lines = [
        f"- **{r.path}** {r.asset.name}: {r.asset.notes or 'out of service'}"
        for r in facts.out_of_service(facts.sites("water_supply"))
    ]
    body = "\n".join(lines) or "All assets in service."
    return panels.note("Out of service (asset register)", body, h=5)
