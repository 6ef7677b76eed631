"""Equipment the demo lacks, from kind to board and report (issue 11).

Two sites in real InfluxDB, each filled with a simulated stretch through the ingest's
own store and alarm pipeline (wiring/history.py), values from the role-driven
source for kinds without physics (simulators/role_signals.py):

- the riverside example (deploy/sites/examples/riverside): a three-phase energy meter,
  an electromagnetic flow meter, a pressure transmitter on an RTU line and a chlorine
  analyser on MQTT, a whole local day with its pressure-drop scenario and alarm rules;
- a site whose every kind is its own (a `kinds/` folder next to it), a few hours.

What must hold: readings land in measurements named after their kinds; every panel
query of every board built for either site returns its series; the daily report's
water and energy come from the totaliser and the energy counter and agree with the
simulator's own counters; the alarm rules, chosen by kind, raise what the scenario
injects.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dashboards.build import build_all
from dashboards.model import Facts
from dashboards.reports.build import operations_report
from dashboards.reports.data import Influx, alarm_book_snapshot
from dashboards.reports.figures import metered, read_series
from dashboards.reports.html import render_operations
from dashboards.reports.periods import day_period
from facility.config import SiteConfig, load_site_config
from facility.kind import Role
from ingest.alarms.rules import load_rules
from simulators.scenario import Scenario, load_scenario
from tests.conftest import ROOT
from tests.history import SimulatedDay
from tests.integration.test_dashboards_queries import (
    _check_shape,
    _expected,
    answered_targets,
    assert_answered,
    choices,
    influx,
    panels,
)
from wiring.history import HistoryResult, InfluxTarget, SimulatedHistory, fill_influx
from wiring.services import InfluxDB

EXAMPLE = ROOT / "deploy" / "sites" / "examples" / "riverside"
EXAMPLE_RULES = ROOT / "deploy" / "sites" / "examples" / "riverside-rules.yaml"
SCENARIO = EXAMPLE / "scenarios" / "pressure_drop.yaml"
TZ = ZoneInfo("Europe/Berlin")
KEY_FLOW = ("riverside", "outlet", "outlet_flow")
KEY_ENERGY = ("riverside", "outlet", "incomer")

pytestmark = pytest.mark.timeout(600)


Counters = dict[tuple[str, str, str], dict[str, float]]


class CountingHistory(SimulatedHistory):
    """A history that also keeps the generated equipment's exact counters at every poll:
    the ground truth of what a report reads up to its last reading."""

    counted: dict[int, Counters]

    def _track_truth(self, result: HistoryResult) -> None:
        super()._track_truth(result)
        generated = self.sim.world.generated
        self.counted = getattr(self, "counted", {})
        self.counted[self.sim.t_ms] = {k: dict(m.counters) for k, m in generated.items()}


@dataclass
class Filled:
    config: SiteConfig
    day: SimulatedDay
    rules: Path
    counted: dict[int, Counters]


def _fill(
    config: SiteConfig,
    scenario: Scenario,
    rules: Path,
    start_ms: int,
    duration_s: float,
    workdir: Path,
) -> Iterator[Filled]:
    server = InfluxDB(workdir / "influxdb")
    server.start()
    try:
        history = CountingHistory(config, scenario, start_ms, poll_s=60.0)
        target = InfluxTarget(server.url, "facility")
        result: HistoryResult = asyncio.run(
            fill_influx(history, target, workdir, rules, duration_s)
        )
        day = SimulatedDay(server, "facility", scenario, result, workdir / "alarms.sqlite", 60.0)
        try:
            yield Filled(config, day, rules, history.counted)
        finally:
            day.close()
    finally:
        server.stop()


def _yesterday_ms() -> int:
    today = datetime.now(TZ).date()
    midnight = datetime.combine(today - timedelta(days=1), datetime.min.time(), TZ)
    return int(midnight.timestamp() * 1000)


@pytest.fixture(scope="module")
def riverside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    config = load_site_config(EXAMPLE)
    scenario = load_scenario(SCENARIO, config)
    workdir = tmp_path_factory.mktemp("riverside")
    yield from _fill(config, scenario, EXAMPLE_RULES, _yesterday_ms(), 86_400.0, workdir)


# A site of kinds nobody shipped: each declared in the site's own kinds/ folder.
OWN_KINDS = {
    "bulk_meter": "kind: bulk_meter\nname: Bulk water meter\n"
    "roles: {flow_m3h: flow, total_m3: volume_counter, empty_pipe: fault}\n",
    "kwh_meter": "kind: kwh_meter\nname: Incomer kWh meter\n"
    "roles: {active_power_kw: power, import_energy_kwh: energy_counter}\n",
    "line_pressure": "kind: line_pressure\nname: Line pressure\nroles: {pressure_bar: pressure}\n",
    "residual_monitor": "kind: residual_monitor\nname: Residual monitor\n"
    "roles: {free_chlorine_mg_l: concentration, sample_flow_ok: running}\n",
}
OWN_SITE = """
id: hillside
name: Hillside booster
kind: water_supply
timezone: Europe/Berlin
stations:
  - id: booster
    buses:
      - {id: lan, transport: tcp, port: 15301}
      - {id: line, transport: rtu_over_tcp, port: 15302}
    assets:
      - {id: gateway, kind: gateway}
      - {id: meter, kind: bulk_meter, profile: magflow_cdab, modbus: {bus: lan, unit_id: 2}}
      - {id: kwh, kind: kwh_meter, profile: sdm630_energy_meter, modbus: {bus: lan, unit_id: 1}}
      - {id: pressure, kind: line_pressure, profile: pressure_transmitter_rtu,
         modbus: {bus: line, unit_id: 5}, limits: {pressure_bar: {low: 2.5}}}
      - {id: residual, kind: residual_monitor, profile: chlorine_analyser_json}
  - id: reservoir_inlet
    assets:
      - {id: gateway, kind: gateway}
      - {id: inlet, kind: bulk_meter, profile: inlet_meter}
"""
INLET_PROFILE = """
profile: inlet_meter
protocol: mqtt
topics: {data: "meters/{site}/{asset}"}
signals:
  - {name: flow_l_s, topic: data, json_path: $.q, type: float, unit: L/s, role: flow}
  - {name: total_m3, topic: data, json_path: $.v, type: float, unit: m3}
"""
OWN_SCENARIO = """
scenario: hillside_pressure_drift
faults:
  - {kind: sensor_drift, target: hillside/booster/pressure, at: 1h, duration: 1h,
     params: {signal: pressure_bar, rate_per_h: -3.0}}
"""
OWN_RULES = """
rules:
  pressure_low:
    kind: threshold
    applies_to: {asset_kind: line_pressure}
    signal: pressure_bar
    below: limit.low
    priority: high
  device_silent:
    kind: silent
    applies_to: {}
    silent_for: 5m
    priority: medium
"""


@pytest.fixture(scope="module")
def own_kinds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    folder = tmp_path_factory.mktemp("hillside-site")
    (folder / "kinds").mkdir()
    (folder / "profiles").mkdir()
    for name, text in OWN_KINDS.items():
        (folder / "kinds" / f"{name}.yaml").write_text(text)
    (folder / "profiles" / "inlet_meter.yaml").write_text(INLET_PROFILE)
    (folder / "hillside.yaml").write_text(OWN_SITE)
    rules = folder.parent / "hillside-rules.yaml"
    rules.write_text(OWN_RULES)
    (folder.parent / "hillside-scenario.yaml").write_text(OWN_SCENARIO)
    config = load_site_config(folder)
    assert {r.asset.kind for r in config.assets()} == {"gateway", *OWN_KINDS}
    scenario = load_scenario(folder.parent / "hillside-scenario.yaml", config)
    workdir = tmp_path_factory.mktemp("hillside")
    yield from _fill(config, scenario, rules, _yesterday_ms(), 3 * 3600.0, workdir)


def test_readings_land_in_measurements_named_after_their_kinds(riverside: Filled) -> None:
    day = riverside.day
    names = {v[0] for s in influx(day, "SHOW MEASUREMENTS") for v in s["values"]}
    kinds = {"energy_meter", "flow_meter", "pressure_transmitter", "chlorine_analyser"}
    assert kinds <= names
    assert not names & {"transformer", "water_quality", "pump"}
    assets = {
        kind: {v[1] for s in influx(day, f'SHOW TAG VALUES FROM "{kind}" WITH KEY = "asset"')
               for v in s["values"]}
        for kind in kinds
    }  # fmt: skip
    assert assets == {
        "energy_meter": {"incomer"},
        "flow_meter": {"outlet_flow"},
        "pressure_transmitter": {"main_pressure"},
        "chlorine_analyser": {"cl2"},
    }


@pytest.mark.parametrize("site", ["riverside", "own_kinds"])
def test_every_panel_query_returns_data(site: str, request: pytest.FixtureRequest) -> None:
    filled: Filled = request.getfixturevalue(site)
    boards = build_all(Facts(filled.config, load_rules(filled.rules, filled.config)))
    assert "facility-parking" not in boards  # no car park: no empty board
    assert {"facility-station", "facility-fleet", "facility-alarms"} <= set(boards)
    day = filled.day
    checked = 0
    for board in boards.values():
        rps = next((v for v in board["templating"]["list"] if v["name"] == "rp"), None)
        retention = [o["value"] for o in rps["options"]] if rps else ["raw"]
        selections = list(choices(day, board))
        for n, (chosen, panel) in enumerate(itertools.product(selections, panels(board))):
            # the rollups under the first selection: the same queries on other policies
            policies = retention if n < len(list(panels(board))) else ["raw"]
            for rp in policies:
                for target, variables, text, series in answered_targets(day, panel, chosen, rp):
                    checked += 1
                    where = f"{board['uid']} / {panel['title']} / {target['refId']} ({rp})"
                    if "Active" in panel["title"]:
                        continue  # whether alarms stand at the end: test_alarm_rules_by_kind
                    expected = _expected(panel, target, variables)
                    assert_answered(where, expected, text, series)
                    if expected is None:
                        _check_shape(where, text, series)
    assert checked > 50


def _station_panels(boards: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in panels(boards["facility-station"])}


def test_station_board_groups_every_signal_by_kind_with_profile_units(
    own_kinds: Filled,
) -> None:
    boards = build_all(Facts(own_kinds.config))
    rows = [p["title"] for p in boards["facility-station"]["panels"] if p["type"] == "row"]
    assert rows == ["Bulk water meter", "Incomer kWh meter", "Line pressure", "Residual monitor"]
    by_title = _station_panels(boards)
    assert by_title["Instantaneous flow"]["fieldConfig"]["defaults"]["unit"] == "suffix: m3/h"
    assert by_title["Pressure bar"]["fieldConfig"]["defaults"]["unit"] == "suffix: bar"
    totaliser = by_title["Forward totaliser (a counter): increase per interval"]
    assert "non_negative_difference" in totaliser["targets"][0]["query"]
    assert by_title["Empty pipe detected"]["type"] == "state-timeline"
    # the MQTT inlet meter's flow in L/s is on the bulk meters' board too
    assert "flow_l_s" in {
        t["query"].split("(/^(mean_)?")[1].split("$/")[0]
        for p in panels(boards["facility-station"])
        for t in p.get("targets", [])
        if "(/^(mean_)?" in t["query"]
    }


def _truth(filled: Filled, key: tuple[str, str, str], signal: str) -> float:
    """How much the device's own counter went up from the first poll of the day to the
    last (the report reads no further than the last reading)."""
    polls = sorted(filled.counted)
    return filled.counted[polls[-1]][key][signal] - filled.counted[polls[0]][key][signal]


def test_daily_report_water_and_energy_from_the_meters(riverside: Filled) -> None:
    day = riverside.day
    the_day = datetime.fromtimestamp(day.result.start_ms / 1000, TZ).date()
    period = day_period(the_day, TZ)
    assert (period.start_ms, period.end_ms) == (day.result.start_ms, day.result.end_ms)
    rules = load_rules(riverside.rules, riverside.config)
    with Influx(day.url, day.database) as db, alarm_book_snapshot(day.alarm_book) as book:
        report = operations_report(
            "daily", db, book, riverside.config, period, day.result.end_ms, rules
        )
    (site,) = report.sites
    (station,) = site.stations
    meters = {m.path: m for m in station.meters}
    water_truth = _truth(riverside, KEY_FLOW, "total_m3")
    energy_truth = _truth(riverside, KEY_ENERGY, "import_energy_kwh")
    assert water_truth > 500 and energy_truth > 200  # a day's worth, not a few polls
    # the totaliser is read in 0.1 m³ steps, the energy register as a float32
    assert meters[KEY_FLOW].water_m3 == pytest.approx(water_truth, abs=0.2)
    assert meters[KEY_FLOW].water_source == "total_m3 (counter)"
    assert meters[KEY_ENERGY].energy_kwh == pytest.approx(energy_truth, abs=0.05)
    assert meters[KEY_ENERGY].energy_source == "import_energy_kwh (counter)"
    assert site.water_m3 == pytest.approx(water_truth, abs=0.2)
    assert site.energy_kwh == pytest.approx(energy_truth, abs=0.05)
    assert station.energy_source == "energy meters"
    # the integrated flow agrees with the totaliser within the 1-minute means' error
    flow_only = meters[KEY_FLOW]
    assert flow_only.water_m3 is not None
    html = render_operations(report)
    assert "Meters and other equipment" in html
    assert f"{water_truth:,.0f}" in html or f"{site.water_m3:,.0f}" in html
    assert "Outlet flow meter" in html and "Flow meter" in html


def test_integrated_flow_and_power_agree_with_the_counters(riverside: Filled) -> None:
    """Without the counters (a meter that has only rates), the reports integrate the
    flow and the power: within 1 % of the counters over the day."""
    config = riverside.config
    day = riverside.day
    the_day = datetime.fromtimestamp(day.result.start_ms / 1000, TZ).date()
    period = day_period(the_day, TZ)
    with Influx(day.url, day.database) as db:
        series = read_series(db, period, 60_000, config)
    span = (period.start_ms, period.end_ms)
    flow_ref = next(r for r in config.assets() if r.key == KEY_FLOW)
    meter_ref = next(r for r in config.assets() if r.key == KEY_ENERGY)
    water, source = metered(series, KEY_FLOW, flow_ref.asset, config, span, Role.FLOW)
    energy, _ = metered(series, KEY_ENERGY, meter_ref.asset, config, span, Role.POWER)
    assert source == "flow_m3h (integrated)"
    assert water == pytest.approx(_truth(riverside, KEY_FLOW, "total_m3"), rel=0.01)
    assert energy == pytest.approx(_truth(riverside, KEY_ENERGY, "import_energy_kwh"), rel=0.01)


def test_alarm_rules_by_kind_raise_what_the_scenario_injects(riverside: Filled) -> None:
    day = riverside.day
    raised = influx(
        day,
        'SELECT "message", "rule", "asset" FROM "alarm_event" WHERE "event" = \'raised\'',
    )
    assert raised, "no alarm raised"
    cols = raised[0]["columns"]
    rules = {(row[cols.index("rule")], row[cols.index("asset")]) for row in raised[0]["values"]}
    assert ("main_pressure_low", "main_pressure") in rules
    assert ("device_not_responding", "incomer") in rules
    # nothing else: the nominal values sit inside every limit
    assert rules <= {
        ("main_pressure_low", "main_pressure"),
        ("main_pressure_low_low", "main_pressure"),
        ("device_not_responding", "incomer"),
    }


def test_the_example_site_folder_is_what_the_tutorial_copies(tmp_path: Path) -> None:
    """The example loads from a copy anywhere (no path inside the repository)."""
    copy = tmp_path / "site"
    shutil.copytree(EXAMPLE, copy)
    config = load_site_config(copy)
    kinds = {r.asset.kind for r in config.assets()}
    assert kinds == {
        "gateway",
        "energy_meter",
        "flow_meter",
        "pressure_transmitter",
        "chlorine_analyser",
    }
