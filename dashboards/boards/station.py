"""Per station: every asset's signals, grouped by kind. Pumps and transformers keep their
own panels (run state, trips, load against limits); every other kind gets a row of its
own with one panel per signal its profiles report, in the profile's unit, so equipment
declared as data (facility/kinds/) is on the board without code."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import text

from dashboards import panels, queries, variables
from dashboards.boards.base import Board, new, site_pairs
from dashboards.influxql import InfluxQL
from dashboards.model import Facts, Signal
from facility.kind import Kind
from facility.site import AssetKind, AssetRef, Site

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
# Kinds with panels of their own here, and the car parks' (on their own board).
OWN_PANELS = frozenset({AssetKind.PUMP, AssetKind.TRANSFORMER})
ELSEWHERE = frozenset({AssetKind.PARKING_LOT, AssetKind.BARRIER_GATE})


def station_sites(facts: Facts) -> list[Site]:
    """Sites with equipment of a station board (every site but pure car parks)."""
    return [s for s in facts.config.sites if any(k.kind not in ELSEWHERE for k in facts.kinds([s]))]


def build(facts: Facts) -> Board | None:
    sites = station_sites(facts)
    kinds = [k for k in facts.kinds(sites) if k.kind not in ELSEWHERE]
    if not kinds:
        return None
    pumps = list(facts.assets(AssetKind.PUMP, sites))
    board = new(UID, "Station", facts, "One station's equipment, grouped by kind.")
    board.with_variable(variables.site(site_pairs(sites), multi=False))
    measurements = f"/^({'|'.join(k.kind for k in kinds)})$/"
    first = [r for r in facts.config.assets() if r.site.id == sites[0].id and r.asset.profile]
    stations = [r.station.id for r in first if r.asset.kind in {k.kind for k in kinds}]
    board.with_variable(variables.tag("station", measurements, ["site"], stations, multi=False))
    assets = [r.asset.id for r in first if stations and r.station.id == stations[0]]
    board.with_variable(variables.tag("asset", measurements, ["site", "station"], assets))
    board.with_variable(variables.retention())
    if pumps:
        _pumps(board, facts, pumps)
    transformers = list(facts.assets(AssetKind.TRANSFORMER, sites))
    if transformers:
        _transformers(board, facts, transformers)
    for kind in kinds:
        _kind_row(board, facts, kind, sites)
    board.with_panel(_register(facts, sites))
    return Board(UID, board)


def _pumps(board: db.Dashboard, facts: Facts, pumps: list[AssetRef]) -> None:
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


def _transformers(board: db.Dashboard, facts: Facts, transformers: list[AssetRef]) -> None:
    board.with_row(panels.row("Transformer"))
    for signal, title in TRANSFORMER_SIGNALS:
        q = InfluxQL(queries.trend("transformer", signal, STATION_FILTER, agg="max"))
        q.alias(queries.ASSET_ALIAS)
        about = "Peak per interval; threshold lines from the alarm rules and site limits."
        load = panels.trend(title, [q], facts.unit(AssetKind.TRANSFORMER, signal), about=about)
        board.with_panel(panels.per_asset(load, facts, transformers, signal))


# Signals the pump and transformer rows above already show.
SHOWN: dict[str, set[str]] = {
    AssetKind.PUMP: {"running", "tripped", *(name for name, _ in PUMP_SIGNALS)},
    AssetKind.TRANSFORMER: {name for name, _ in TRANSFORMER_SIGNALS},
}


def _kind_row(board: db.Dashboard, facts: Facts, kind: Kind, sites: list[Site]) -> None:
    """One panel per signal of the kind: a trend in the profile's unit for a number
    (counters as their increase per interval), a state timeline for a boolean. For pumps
    and transformers, the signals their own rows do not show."""
    shown = SHOWN.get(kind.kind, set())
    signals = [s for s in facts.signals(kind.kind, sites) if s.name not in shown]
    if not signals:
        return
    board.with_row(panels.row(f"{kind.name}: other signals" if shown else kind.name))
    for signal in signals:
        _signal_panel(board, facts, kind, signal, facts.having(kind.kind, signal.name, sites))


COUNTER_ROLES = frozenset({"energy_counter", "volume_counter", "counter"})


def _signal_panel(
    board: db.Dashboard, facts: Facts, kind: Kind, signal: Signal, refs: list[AssetRef]
) -> None:
    alias = queries.ASSET_ALIAS
    about = f"{kind.name}: {signal.name}" + (f" (role {signal.role})" if signal.role else "")
    if signal.state:
        q = InfluxQL(queries.trend(kind.kind, signal.name, PUMP_FILTER, agg="max")).alias(alias)
        states = panels.states(signal.title, [q], w=12, h=5, about=about)
        states.mappings(panels.bool_mappings("true", "false", "orange", panels.STOPPED_COLOUR))
        board.with_panel(panels.per_asset(states, facts, refs, signal.name))
    elif signal.role in COUNTER_ROLES:
        q = InfluxQL(queries.increase(kind.kind, signal.name, PUMP_FILTER)).alias(alias)
        bars = panels.bars(f"{signal.title}: increase per interval", [q], signal.unit, w=8)
        board.with_panel(panels.per_asset(bars, facts, refs, None))
    else:
        q = InfluxQL(queries.trend(kind.kind, signal.name, PUMP_FILTER)).alias(alias)
        trend = panels.trend(signal.title, [q], signal.unit, w=8, about=about)
        board.with_panel(panels.per_asset(trend, facts, refs, signal.name))


def _register(facts: Facts, sites: list[Site]) -> text.Panel:
    """Assets out of service: no data expected, no alarm rules (docs/alarms.md)."""
    lines = [
        f"- **{r.path}** {r.asset.name}: {r.asset.notes or 'out of service'}"
        for r in facts.out_of_service(sites)
    ]
    body = "\n".join(lines) or "All assets in service."
    return panels.note("Out of service (asset register)", body, h=5)
