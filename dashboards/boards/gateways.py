"""Gateways and devices: outbox depth and age, delivery delay, poll overruns, uplink,
device communication and errors."""

from __future__ import annotations

from dashboards import panels, queries, variables
from dashboards.boards.base import Board, new, site_pairs
from dashboards.influxql import InfluxQL
from dashboards.model import Facts
from facility.site import AssetKind

UID = "facility-gateways"
FILTER: list[queries.Tag] = ["site", "station"]
BY = ("site", "station")
ALIAS = "$tag_site/$tag_station"
HEALTH = (
    ("outbox_readings", "Outbox depth", "none"),
    ("outbox_oldest_age_s", "Outbox age (oldest waiting reading)", "s"),
    ("max_live_delay_ms", "Delivery delay (live lane, max)", "ms"),
    ("devices_failing", "Devices failing", "none"),
)
# Cumulative since the gateway started (gateway/daemon.py health()): plotted as the
# increase per interval; a restart resets them, non_negative_ drops that step.
COUNTERS = (
    ("poll_overruns", "Poll overruns per interval"),
    ("device_errors", "Device errors per interval"),
)


def build(facts: Facts) -> Board:
    board = new(UID, "Gateways and devices", facts, "The data path's own health.")
    board.with_variable(variables.site(site_pairs(facts.config.sites), multi=True))
    stations = [s.id for site in facts.config.sites for s in site.stations]
    board.with_variable(variables.tag("station", "gateway_health", ["site"], stations))
    board.with_variable(variables.retention())
    up = InfluxQL(queries.trend("gateway_health", "uplink_connected", FILTER, BY, "min"))
    uplink = panels.states("Uplink connected", [up.alias(ALIAS)], h=6)
    board.with_panel(uplink.mappings(panels.bool_mappings("connected", "down")))
    for field, title, unit in HEALTH:
        q = InfluxQL(queries.trend("gateway_health", field, FILTER, BY, "max")).alias(ALIAS)
        board.with_panel(panels.trend(title, [q], unit, w=8))
    for field, title in COUNTERS:
        q = InfluxQL(queries.increase("gateway_health", field, FILTER, BY)).alias(ALIAS)
        board.with_panel(panels.bars(title, [q], "none", w=8))
    board.with_row(panels.row("Devices"))
    devices = [r for r in facts.config.assets() if r.asset.modbus is not None]
    comm = InfluxQL(queries.trend("device_status", "comm_ok", FILTER, agg="min"))
    answers = panels.states("Device answers", [comm.alias(queries.ASSET_ALIAS)], h=10)
    answers.mappings(panels.bool_mappings("answers", "no answer"))
    board.with_panel(panels.per_asset(answers, facts, devices, None))
    errors = queries.last("device_status", ["comm_ok", "exception_code"], FILTER)
    about = "Each polled device's last status in the range; exception_code ≠ 0: Modbus exception."
    board.with_panel(panels.grid("Device status", [InfluxQL(errors).format("table")], about=about))
    gateways = sum(1 for r in facts.config.assets() if r.asset.kind == AssetKind.GATEWAY)
    board.with_panel(panels.note("Gateways in the site model", f"{gateways} gateways.", w=24, h=2))
    return Board(UID, board)
