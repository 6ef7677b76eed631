"""The built boards as Grafana reads them: the SDK's own models decode them again,
panel ids and grid positions are sane, every target is InfluxQL on our data source, and
the site model drives panels, overrides and variable values."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.models import dashboard as dm
from typer.testing import CliRunner

from dashboards import influxql, validate
from dashboards.build import build_all
from dashboards.commands import dashboards_app
from dashboards.macros import Variable, calculate_interval_ms, expand, ms_to_text
from dashboards.model import Facts
from facility.config import SiteConfig, load_site_config
from ingest.alarms.rules import load_rules
from tests.conftest import DEMO_SITE
from tests.history import RULES


@pytest.fixture(scope="module")
def boards(demo_config: SiteConfig) -> dict[str, dict[str, Any]]:
    return build_all(Facts(demo_config, load_rules(RULES, demo_config)))


def all_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_boards_follow_the_schemas_models(boards: dict[str, dict[str, Any]]) -> None:
    """Every board decodes through the SDK's models of Grafana's schema (panel options
    and custom field config by panel type, annotations included) and comes back
    unchanged, every value of the declared type (dashboards/validate.py)."""
    assert set(boards) == {
        "facility-fleet", "facility-reservoir", "facility-station",
        "facility-parking", "facility-gateways", "facility-alarms",
    }  # fmt: skip
    for board in boards.values():
        assert validate.problems(board) == [], board["uid"]
        model = dm.Dashboard.from_json(board)
        panels = [p for p in model.panels or [] if isinstance(p, dm.Panel)]
        targets = [t for p in panels for t in p.targets or []]
        assert targets and all(isinstance(t, influxql.InfluxQuery) for t in targets)
        # options are the panel type's model, not a bag of keys
        assert all(type(p.options).__module__.endswith(f".{_module(p)}") for p in panels)


def _module(panel: dm.Panel) -> str:
    return panel.type_val.replace("-", "")


def _panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    panel: dict[str, Any] = next(p for p in board["panels"] if p.get("title") == title)
    return panel


def _break_grid_width(b: dict[str, Any]) -> None:
    _panel(b, "Power")["gridPos"]["w"] = "12"


def _break_unit(b: dict[str, Any]) -> None:
    _panel(b, "Power")["fieldConfig"]["defaults"]["unit"] = "kilowattz"


def _break_options_type(b: dict[str, Any]) -> None:
    _panel(b, "Power")["options"] = ["legend"]


def _break_legend_flag(b: dict[str, Any]) -> None:
    _panel(b, "Power")["options"]["legend"]["showLegend"] = "yes"


def _break_draw_style(b: dict[str, Any]) -> None:
    _panel(b, "Power")["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "dots"


def _break_option_key(b: dict[str, Any]) -> None:
    _panel(b, "Power")["options"]["legendd"] = {}


def _break_threshold(b: dict[str, Any]) -> None:
    steps = _panel(b, "Bearing temperature")["fieldConfig"]["defaults"]["thresholds"]["steps"]
    steps[1]["value"] = "80"


def _break_override_unit(b: dict[str, Any]) -> None:
    props = _panel(b, "Power")["fieldConfig"]["overrides"][0]["properties"]
    props.append({"id": "unit", "value": "kilowattz"})


def _break_annotation(b: dict[str, Any]) -> None:
    b["annotations"]["list"][0]["target"]["query"] = 5


def _break_panel_type(b: dict[str, Any]) -> None:
    _panel(b, "Power")["type"] = "graph"  # the old panel: no model, no options schema


BROKEN = {
    "gridPos.w a string": (_break_grid_width, ".gridPos.w: expected int, got '12'"),
    "unknown unit": (_break_unit, ".fieldConfig.defaults.unit: unknown unit 'kilowattz'"),
    "options a list": (_break_options_type, ".options: expected an object, got ['legend']"),
    "legend flag a string": (_break_legend_flag, ".options.legend.showLegend: expected bool"),
    "draw style not an enum value": (_break_draw_style, ".custom.drawStyle: 'dots' is not one"),
    "unknown options key": (_break_option_key, ".options.legendd: not in the schema"),
    "threshold a string": (_break_threshold, ".steps[1].value: expected float, got '80'"),
    "override with an unknown unit": (_break_override_unit, "unknown unit 'kilowattz'"),
    "annotation query a number": (_break_annotation, "annotations.list[0].target.query"),
    "panel type without a model": (_break_panel_type, ".type: no model for panel type 'graph'"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_the_schema_check_rejects_a_broken_board(
    name: str, boards: dict[str, dict[str, Any]]
) -> None:
    """The check bites: each deliberately broken board is refused, at the broken spot."""
    board = json.loads(json.dumps(boards["facility-station"]))
    breaks, expected = BROKEN[name]
    breaks(board)
    found = validate.problems(board)
    assert any(expected in problem for problem in found), found
    with pytest.raises(validate.BoardInvalid) as refused:
        validate.check(board)
    assert "facility-station" in str(refused.value)


def test_ids_grid_and_datasources(boards: dict[str, dict[str, Any]]) -> None:
    for uid, board in boards.items():
        panels = all_panels(board)
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), uid
        for p in panels:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, (uid, p)
            for t in p.get("targets", []):
                assert t["datasource"] == {"type": "influxdb", "uid": influxql.DATASOURCE_UID}
                assert t["rawQuery"] is True
                assert "$timeFilter" in t["query"] or "${__to}" in t["query"]
            if p["type"] not in ("row", "text"):
                assert p["datasource"]["uid"] == influxql.DATASOURCE_UID
        anno = board["annotations"]["list"][0]
        assert anno["target"]["fromAnnotations"] is True
        assert "alarm_event" in anno["target"]["query"]


def test_units_thresholds_and_out_of_service_from_the_model(
    boards: dict[str, dict[str, Any]],
) -> None:
    station = {p["title"]: p for p in all_panels(boards["facility-station"])}
    assert station["Flow"]["fieldConfig"]["defaults"]["unit"] == "suffix: m3/h"
    assert station["Bearing temperature"]["fieldConfig"]["defaults"]["unit"] == "celsius"
    bearing = station["Bearing temperature"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in bearing] == [None, 80.0]  # rule bearing_temp_high
    load = station["Transformer load"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in load] == [None, 100.0, 120.0]  # the two overload rules
    names = {
        o["matcher"]["options"]: o["properties"]
        for o in station["Flow"]["fieldConfig"]["overrides"]
    }
    broken = names["fengshou/xiba/pump_3"]
    assert any(p["id"] == "displayName" and "out of service" in p["value"] for p in broken)
    assert any(p["id"] == "color" for p in broken)
    assert (
        "fengshou/xiba/pump_3" in station["Out of service (asset register)"]["options"]["content"]
    )
    fleet = {p["title"]: p for p in all_panels(boards["facility-fleet"])}
    tank = [
        p
        for o in fleet["Tank levels against alarm levels"]["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == "fengshou/xiba/tank_no4"
        for p in o["properties"]
    ]
    steps = next(p["value"]["steps"] for p in tank if p["id"] == "thresholds")
    assert [(s["value"], s["color"]) for s in steps] == [
        (None, "red"), (0.75, "orange"), (1.25, "green"), (4.75, "orange"), (4.9, "red"),
    ]  # fmt: skip
    assert {"id": "max", "value": 5.0} in tank  # the tank's height


def test_macros_expand_like_grafana() -> None:
    day = 86_400_000
    assert calculate_interval_ms(0, day, 720, "10s") == 120_000  # 120 s rounds to 2m
    assert calculate_interval_ms(0, 3_600_000, 720, "10s") == 10_000  # 5 s, floor 10 s
    assert ms_to_text(120_000) == "2m" and ms_to_text(500) == "500ms"
    text = expand(
        'SELECT 1 FROM x WHERE "site" =~ /^$site$/ AND "a" =~ /^${asset}$/ AND $timeFilter '
        "GROUP BY time($__interval) LIMIT $__interval_ms",
        {"site": Variable(["a", "b"], multi=True), "asset": Variable(["p1"])},
        1000,
        2000,
        60_000,
    )
    assert text == (
        'SELECT 1 FROM x WHERE "site" =~ /^(a|b)$/ AND "a" =~ /^p1$/ AND '
        "time >= 1000ms and time <= 2000ms GROUP BY time(1m) LIMIT 60000"
    )
    with pytest.raises(KeyError):
        expand("$nope", {}, 0, 1, 1)


def _added_station(tmp_path: Path) -> Path:
    site = tmp_path / "demo"
    shutil.copytree(DEMO_SITE, site)
    text = (site / "fengshou.yaml").read_text(encoding="utf-8")
    extra = """
  - id: newtown
    name: Newtown booster
    buses: [{id: rtu_gw, transport: tcp, host: 127.0.0.1, port: 15099}]
    assets:
      - {id: gateway, kind: gateway}
      - {id: pump_1, kind: pump, profile: pump_vfd, modbus: {bus: rtu_gw, unit_id: 1},
         ratings: {motor_kw: 30, rated_flow_m3h: 100, rated_head_m: 40}}
      - id: tank_new
        kind: tank
        profile: tank_level
        modbus: {bus: rtu_gw, unit_id: 20}
        ratings: {capacity_m3: 100, height_m: 2.0}
        limits: {level_m: {low_low: 0.3, low: 0.5, high: 1.9, high_high: 1.95}}
"""
    (site / "fengshou.yaml").write_text(text + extra, encoding="utf-8")
    return site


def test_an_added_station_appears_without_code(tmp_path: Path, demo_config: SiteConfig) -> None:
    config = load_site_config(_added_station(tmp_path))
    boards = build_all(Facts(config, load_rules(RULES, config)))
    fleet = {p["title"]: p for p in all_panels(boards["facility-fleet"])}
    assert "Newtown booster" in fleet
    base = build_all(Facts(demo_config, load_rules(RULES, demo_config)))
    assert len(all_panels(boards["facility-fleet"])) == len(all_panels(base["facility-fleet"])) + 1
    gauges = fleet["Tank levels against alarm levels"]["fieldConfig"]["overrides"]
    assert any(o["matcher"]["options"] == "fengshou/newtown/tank_new" for o in gauges)
    gw = boards["facility-gateways"]["templating"]["list"][1]
    assert "newtown" in [o["value"] for o in gw["options"]]


def test_cli_build_writes_boards_and_provisioning(tmp_path: Path) -> None:
    result = CliRunner().invoke(dashboards_app, ["build", str(DEMO_SITE), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    boards = sorted(p.name for p in (tmp_path / "dashboards").glob("*.json"))
    assert len(boards) == 6
    source = yaml.safe_load(
        (tmp_path / "provisioning/datasources/facility-influxdb.yaml").read_text()
    )
    assert source["datasources"][0]["uid"] == influxql.DATASOURCE_UID
    assert source["datasources"][0]["jsonData"]["dbName"] == "facility"
    provider = yaml.safe_load((tmp_path / "provisioning/dashboards/facility.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    json.loads((tmp_path / "dashboards" / boards[0]).read_text())


def test_cli_build_reports_a_bad_site_file(tmp_path: Path) -> None:
    site = _added_station(tmp_path)
    bad = (site / "fengshou.yaml").read_text().replace("motor_kw: 30", "motor_kw: -30")
    (site / "fengshou.yaml").write_text(bad)
    result = CliRunner().invoke(dashboards_app, ["build", str(site), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "fengshou.yaml:" in result.output and "motor_kw" in result.output
    assert not (tmp_path / "o").exists()


def test_committed_sample_matches_a_fresh_build(tmp_path: Path) -> None:
    """deploy/grafana/ is exactly what `facility dashboards build` writes: boards and
    provisioning files, no file more or less."""
    result = CliRunner().invoke(dashboards_app, ["build", str(DEMO_SITE), "--out", str(tmp_path)])
    assert result.exit_code == 0
    committed = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    kept = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    assert fresh == kept
    assert any(p.parts[0] == "provisioning" for p in fresh)
    for path in fresh:
        assert (committed / path).read_text() == (tmp_path / path).read_text(), path


def test_alarm_panels_keep_latched_and_unacknowledged_alarms(
    boards: dict[str, dict[str, Any]],
) -> None:
    alarms = {p["title"]: p for p in all_panels(boards["facility-alarms"])}
    for title in ("Active alarms", "Active by priority"):
        query = alarms[title]["targets"][0]["query"]
        assert "\"state\" != 'normal'" in query and '"active" = true' not in query, title
        assert "${__to}ms - 400d" in query, title


def test_alarm_rate_per_operator_position_uses_eemuas_bands(
    boards: dict[str, dict[str, Any]],
) -> None:
    """Per position, not per site: one crew watches several sites, so `$site` does not
    filter it; green to 1 alarm per 10 min, amber above, red from a flood's 10, as the
    per-site rate chart."""
    alarms = {p["title"]: p for p in all_panels(boards["facility-alarms"])}
    panel = alarms["Alarms per 10 min per operator position"]
    (target,) = panel["targets"]
    assert 'FROM "alarm_kpi_position"' in target["query"] and "$site" not in target["query"]
    assert target["query"].endswith('"position" fill(none)')
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in steps] == [
        (None, "green"),
        (1.0, "yellow"),
        (10.0, "red"),
    ]
    site_rate = alarms["Alarm rate (24 h window)"]["fieldConfig"]["defaults"]["thresholds"]
    assert site_rate["steps"] == steps


def test_fleet_counts_only_fresh_reports_and_gateways_per_site(
    boards: dict[str, dict[str, Any]], demo_config: SiteConfig
) -> None:
    fleet = {p["title"]: p for p in all_panels(boards["facility-fleet"])}
    for title in ("Stations running", "Stations stopped", "Stations faulted", "Gateways online"):
        query = fleet[title]["targets"][0]["query"]
        assert "time > ${__to}ms - 5m AND time <= ${__to}ms" in query, title
        assert "$timeFilter" not in query, title
    gateways = fleet["Gateways online"]
    assert gateways["targets"][0]["query"].endswith('GROUP BY "site"')
    fengshou = next(
        o["properties"]
        for o in gateways["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == "fengshou"
    )
    site = next(s for s in demo_config.sites if s.id == "fengshou")
    total = sum(1 for st in site.stations for a in st.assets if a.kind == "gateway")
    steps = next(p["value"]["steps"] for p in fengshou if p["id"] == "thresholds")
    assert steps == [{"value": None, "color": "red"}, {"value": total, "color": "green"}]


def _overrides(panel: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {o["matcher"]["options"]: o["properties"] for o in panel["fieldConfig"]["overrides"]}


def test_station_tiles_show_trips_stopped_neutral_and_out_of_service_grey(
    boards: dict[str, dict[str, Any]],
) -> None:
    tile = next(
        p for p in all_panels(boards["facility-fleet"]) if p["title"] == "西壩 Xiba pump station"
    )
    running, tripped = tile["targets"]
    for target in (running, tripped):
        assert '"site" =~ /^$site$/' in target["query"] and "${__to}ms - 5m" in target["query"]
    assert '"tripped"' in tripped["query"] and '"v" = true' in tripped["query"]
    mapping = tile["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert mapping["false"]["color"] == mapping["0"]["color"] == "#C7D0D9"
    overrides = _overrides(tile)
    trip = next(p["value"] for p in overrides["pump_1 tripped"] if p["id"] == "mappings")
    assert trip[0]["options"]["true"] == {"text": "TRIPPED", "color": "red", "index": 0}
    _assert_greyed(overrides["pump_3"])
    station = {p["title"]: p for p in all_panels(boards["facility-station"])}
    for title in ("Run state", "Tripped"):
        _assert_greyed(_overrides(station[title])["fengshou/xiba/pump_3"])


def _assert_greyed(props: list[dict[str, Any]]) -> None:
    """A value mapping's colour beats the field colour: the mappings must be grey too."""
    mappings = next(p["value"] for p in props if p["id"] == "mappings")
    colours = {r["color"] for m in mappings for r in m["options"].values()}
    assert colours == {"#808080"}


def test_gateway_counters_are_plotted_per_interval(boards: dict[str, dict[str, Any]]) -> None:
    gateways = {p["title"]: p for p in all_panels(boards["facility-gateways"])}
    for field, title in (
        ("poll_overruns", "Poll overruns per interval"),
        ("device_errors", "Device errors per interval"),
    ):
        query = gateways[title]["targets"][0]["query"]
        assert query.startswith(f"SELECT non_negative_difference(max(/^(max_)?{field}$/))")


def test_every_variable_id_is_its_name(boards: dict[str, dict[str, Any]]) -> None:
    for board in boards.values():
        for var in board["templating"]["list"]:
            assert var["id"] == var["name"], (board["uid"], var["name"])


def test_cli_build_refuses_a_missing_rules_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    args = ["build", str(DEMO_SITE), "--out", str(tmp_path / "o"), "--rules", str(missing)]
    result = CliRunner().invoke(dashboards_app, args)
    assert result.exit_code == 1
    assert str(missing) in result.output.replace("\n", "")
    assert not (tmp_path / "o").exists()


def test_turnover_tiles_follow_the_site_variable(
    boards: dict[str, dict[str, Any]], demo_config: SiteConfig
) -> None:
    parking = {p["title"]: p for p in all_panels(boards["facility-parking"])}
    tiles = [p for title, p in parking.items() if title.startswith("Turnover ")]
    lots = [a for a in demo_config.assets() if a.asset.kind == "parking_lot"]
    assert len(tiles) == len(lots) == 2
    for tile in tiles:
        assert '"site" =~ /^$site$/' in tile["targets"][0]["query"], tile["title"]
