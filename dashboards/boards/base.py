"""What every board shares: the alarm annotations, time settings, links between boards."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import queries
from dashboards.influxql import InfluxAnnotation
from dashboards.model import Facts
from facility.site import Site

TAG = "facility"


@dataclass(frozen=True)
class Board:
    uid: str
    builder: db.Dashboard


def new(uid: str, title: str, facts: Facts, about: str) -> db.Dashboard:
    zone = facts.config.sites[0].timezone if facts.config.sites else "browser"
    board = db.Dashboard(title).uid(uid).tags([TAG]).description(about).timezone(zone)
    board.time("now-24h", "now").refresh("1m").tooltip(dm.DashboardCursorSync.CROSSHAIR)
    board.annotation(
        InfluxAnnotation("Alarms raised", queries.alarm_annotations())
        .color("red")
        .columns(text="message", tags="rule,priority,station,asset")
    )
    link = db.DashboardLink("Facility boards").type(dm.DashboardLinkType.DASHBOARDS)
    board.link(link.tags([TAG]).as_dropdown(True).include_vars(True).keep_time(True))
    return board


def site_pairs(sites: list[Site]) -> list[tuple[str, str]]:
    return [(s.id, s.name or s.id) for s in sites]
