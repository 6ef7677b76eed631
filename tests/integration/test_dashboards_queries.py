"""Every panel query and query variable of the built boards, run against a real
InfluxDB holding a simulated day of the demo site (the `simulated_day` fixture), with
the variables and macros expanded as Grafana expands them (dashboards/macros.py)."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from dashboards.build import build_all
from dashboards.macros import Variable, calculate_interval_ms, expand
from dashboards.model import Facts
from facility.config import SiteConfig
from facility.site import AssetKind
from ingest.alarms.rules import load_rules
from tests.history import RULES, SimulatedDay, demo_notify


@pytest.fixture(scope="module")
def boards(demo_config: SiteConfig) -> dict[str, dict[str, Any]]:
    return build_all(Facts(demo_config, load_rules(RULES, demo_config)))


def influx(day: SimulatedDay, query: str) -> list[dict[str, Any]]:
    result = day.statement(query)
    assert "error" not in result, f"{query}\n-> {result['error']}"
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def choices(day: SimulatedDay, board: dict[str, Any]) -> Iterator[dict[str, Variable]]:
    """Selections as a user makes them, honouring each variable's `multi` flag as
    Grafana does: a multi-value variable with all it offers selected at once, a
    single-value one with one value at a time (each in turn). Query variables chained
    on earlier ones are asked what they offer under each selection."""
    partial: list[dict[str, Variable]] = [{}]
    for var in board["templating"]["list"]:
        if var["name"] == "rp":
            continue  # every retention policy is run separately
        grown = []
        for chosen in partial:
            values = _offered(day, var, chosen)
            assert values, f"variable {var['name']} of {board['uid']} offers nothing"
            picks = [values] if var.get("multi") else [[v] for v in values]
            grown += [
                {**chosen, var["name"]: Variable(pick, bool(var.get("multi")))} for pick in picks
            ]
        partial = grown
    yield from partial


def _offered(day: SimulatedDay, var: dict[str, Any], chosen: dict[str, Variable]) -> list[str]:
    if var["type"] != "query":
        return [o["value"] for o in var["options"] if o["value"] != "$__all"]
    query = expand(var["query"], chosen, day.result.start_ms, day.result.end_ms, 0)
    return sorted(v for s in influx(day, query) for _, v in s["values"])


def _annotations(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for annotation in board.get("annotations", {}).get("list", []):
        if "query" in annotation.get("target", {}):
            yield annotation


def test_annotation_queries_return_the_raised_alarms(
    simulated_day: SimulatedDay, boards: dict[str, dict[str, Any]]
) -> None:
    day = simulated_day
    start, end = day.result.start_ms, day.result.end_ms
    for board in boards.values():
        annotations = list(_annotations(board))
        assert annotations, board["uid"]
        for annotation, chosen in itertools.product(annotations, list(choices(day, board))):
            text = expand(annotation["target"]["query"], chosen, start, end, 60_000)
            series = influx(day, text)
            columns = set(series[0]["columns"]) if series else set()
            wanted = {
                annotation["target"]["textColumn"],
                *annotation["target"]["tagsColumn"].split(","),
            }
            if series:  # columns the annotation reads must come back
                assert wanted <= columns, (board["uid"], wanted - columns)
    fleet = next(_annotations(boards["facility-fleet"]))
    sites = next(v for v in boards["facility-fleet"]["templating"]["list"] if v["name"] == "site")
    everywhere = {"site": Variable(_offered(day, sites, {}), multi=True)}
    raised = influx(day, expand(fleet["target"]["query"], everywhere, start, end, 60_000))
    rules = {row[raised[0]["columns"].index("rule")] for row in raised[0]["values"]}
    assert {"pump_trip", "gate_stuck_open", "transformer_overload"} <= rules


def test_every_panel_query_returns_its_series(
    simulated_day: SimulatedDay, boards: dict[str, dict[str, Any]]
) -> None:
    day = simulated_day
    with day.remembering():
        checked = sum(_check_board(day, board) for board in boards.values())
    assert checked > 200


def _check_board(day: SimulatedDay, board: dict[str, Any]) -> int:
    """Every panel of the board under every selection; how many targets were checked."""
    checked = 0
    rps = next((v for v in board["templating"]["list"] if v["name"] == "rp"), None)
    retention = [o["value"] for o in rps["options"]] if rps else ["raw"]
    rolled_up: set[tuple[str, ...]] = set()
    for chosen in list(choices(day, board)):
        # every selection on raw data; the rollups (the same query on another
        # policy) once per site: the station board alone has ~30 panels × 13 stations
        sites = tuple(chosen["site"].values)
        policies = retention if sites not in rolled_up else ["raw"]
        rolled_up.add(sites)
        for panel, rp in itertools.product(panels(board), policies):
            _check_panel(day, board, panel, chosen, rp)
            checked += len(panel.get("targets", []))
    return checked


Series = list[dict[str, Any]]


def answered_targets(
    day: SimulatedDay, panel: dict[str, Any], chosen: dict[str, Variable], rp: str
) -> Iterator[tuple[dict[str, Any], dict[str, Variable], str, Series]]:
    """Each of the panel's targets expanded as Grafana expands it under the selection and
    retention policy, with the day's answer: (target, variables, query, series)."""
    start, end = day.result.start_ms, day.result.end_ms
    interval = calculate_interval_ms(
        start, end, panel.get("maxDataPoints", 720), panel.get("interval", "")
    )
    for target in panel.get("targets", []):
        variables = {**chosen, "rp": Variable([rp])}
        text = expand(target["query"], variables, start, end, interval)
        yield target, variables, text, influx(day, text)


def assert_answered(where: str, expected: set[str] | None, text: str, series: Series) -> None:
    """Per-asset series (`expected` from `_expected`): exactly those assets; any other
    query: some series."""
    if expected is not None:
        got = {"/".join(s["tags"][k] for k in ("site", "station", "asset")) for s in series}
        assert got == expected, f"{where}: {sorted(got ^ expected)}\n{text}"
    else:
        assert series, f"{where}: nothing for\n{text}"


def _check_panel(
    day: SimulatedDay,
    board: dict[str, Any],
    panel: dict[str, Any],
    chosen: dict[str, Variable],
    rp: str,
) -> None:
    zero = panel.get("fieldConfig", {}).get("defaults", {}).get("noValue") in ("0", "none")
    for target, variables, text, series in answered_targets(day, panel, chosen, rp):
        if zero or '"v" = true' in text:
            continue  # counts, trips: checked against the incidents below
        where = f"{board['uid']} / {panel['title']} / {target['refId']} ({rp})"
        where += f" sites {chosen['site'].values}"
        expected = _expected(panel, target, variables)
        assert_answered(where, expected, text, series)
        if expected is None:
            _check_shape(where, text, series)


def _expected(
    panel: dict[str, Any], target: dict[str, Any], chosen: dict[str, Variable]
) -> set[str] | None:
    """Per-asset series: exactly the assets the panel has overrides for (from the site
    model) under the selected site/station/asset."""
    if target.get("alias") != "$tag_site/$tag_station/$tag_asset":
        return None
    names = {
        o["matcher"]["options"]
        for o in panel["fieldConfig"]["overrides"]
        if o["matcher"]["id"] == "byName"
    }
    keys = ("site", "station", "asset")
    chosen = {k: v for k, v in chosen.items() if f'"{k}" =~ /^${k}$/' in target["query"]}
    return {
        n
        for n in names
        if all(
            k not in chosen or v in chosen[k].values
            for k, v in zip(keys, n.split("/"), strict=True)
        )
    }


def _check_shape(where: str, query: str, series: list[dict[str, Any]]) -> None:
    outer = re.search(r'FROM "(?:\$rp|raw|rollup_1m|rollup_1h)?"?\.?"?(\w+)"', query)
    grouped = re.findall(r"GROUP BY ([^()]*?)(?: fill|$| ORDER)", query)
    measurement = re.findall(r'FROM (?:"\w+"\.)?"(\w+)"', query)
    if measurement and "FROM (" not in query:
        assert {s["name"] for s in series} == {measurement[-1]}, where
    if grouped and "FROM (" not in query:
        tags = re.findall(r'"(\w+)"', grouped[-1])
        for s in series:
            assert set(tags) <= set(s.get("tags", {})), f"{where}: {s.get('tags')} lacks {tags}"
    assert outer or "FROM (" in query, where


def _by_title(boards: dict[str, dict[str, Any]], uid: str, title: str) -> str:
    panel = next(p for p in panels(boards[uid]) if p["title"] == title)
    query: str = panel["targets"][0]["query"]
    return query


def test_counts_and_active_alarms_during_the_incidents(
    simulated_day: SimulatedDay, boards: dict[str, dict[str, Any]]
) -> None:
    """35 minutes in: Xiba's pump 1 is tripped, the Wanda main gate stuck open and the
    Nongken transformer overloaded (deploy/sites/demo/scenarios/demo_incidents.yaml)."""
    day = simulated_day
    start, end = day.result.start_ms, day.result.start_ms + 35 * 60_000
    options = boards["facility-fleet"]["templating"]["list"][0]["options"]
    chosen = {"site": Variable([o["value"] for o in options if o["value"] != "$__all"], True)}
    faulted = expand(
        _by_title(boards, "facility-fleet", "Stations faulted"), chosen, start, end, 60_000
    )
    assert influx(day, faulted)[0]["values"][0][1] == 1
    active = expand(
        _by_title(boards, "facility-alarms", "Active alarms"), chosen, start, end, 60_000
    )
    rules = {s["tags"]["rule"] + "@" + s["tags"]["asset"] for s in influx(day, active)}
    assert {
        "pump_trip@pump_1",
        "gate_stuck_open@main_gate",
        "transformer_overload@transformer",
    } <= rules
    by_priority = expand(
        _by_title(boards, "facility-alarms", "Active by priority"), chosen, start, end, 60_000
    )
    counts = {s["tags"]["priority"]: s["values"][0][1] for s in influx(day, by_priority)}
    assert counts.get("critical", 0) >= 1 and counts.get("high", 0) >= 1


def test_latched_trip_stays_on_the_board_after_it_clears(
    simulated_day: SimulatedDay, boards: dict[str, dict[str, Any]]
) -> None:
    """The Xiba trip clears at 40 minutes; latched, it waits for a reset that never
    comes in the simulated day, so an hour in it is still on the board."""
    day = simulated_day
    start, end = day.result.start_ms, day.result.start_ms + 60 * 60_000
    chosen = {"site": Variable(["fengshou"], True)}
    active = expand(
        _by_title(boards, "facility-alarms", "Active alarms"), chosen, start, end, 60_000
    )
    states = {
        s["tags"]["rule"] + "@" + s["tags"]["asset"]: s["values"][0][s["columns"].index("state")]
        for s in influx(day, active)
    }
    assert states.get("pump_trip@pump_1") == "latched", states
    by_priority = expand(
        _by_title(boards, "facility-alarms", "Active by priority"), chosen, start, end, 60_000
    )
    counts = {s["tags"]["priority"]: s["values"][0][1] for s in influx(day, by_priority)}
    assert counts.get("high", 0) >= 1


def test_counts_and_tiles_are_fresh(
    simulated_day: SimulatedDay, boards: dict[str, dict[str, Any]]
) -> None:
    """During the trip Xiba's tile shows it; every gateway is online at the end of the
    day, and none an hour after the last report (silent is offline)."""
    day = simulated_day
    chosen = {"site": Variable(["fengshou"], True)}
    tile = next(
        p for p in panels(boards["facility-fleet"]) if p["title"] == "西壩 Xiba pump station"
    )
    trip = tile["targets"][1]["query"]
    at_35 = day.result.start_ms + 35 * 60_000
    tripped = influx(day, expand(trip, chosen, day.result.start_ms, at_35, 60_000))
    assert [s["tags"]["asset"] for s in tripped] == ["pump_1"]
    running = expand(tile["targets"][0]["query"], chosen, day.result.start_ms, at_35, 60_000)
    assert {s["tags"]["asset"] for s in influx(day, running)} >= {"pump_1", "pump_2"}
    online = _by_title(boards, "facility-fleet", "Gateways online")
    end = day.result.end_ms
    counts = influx(day, expand(online, chosen, end - 3_600_000, end, 60_000))
    assert counts and counts[0]["tags"]["site"] == "fengshou" and counts[0]["values"][0][1] >= 1
    later = end + 3_600_000
    assert influx(day, expand(online, chosen, end, later, 60_000)) == []
    stations = _by_title(boards, "facility-fleet", "Stations running")
    assert influx(day, expand(stations, chosen, end, later, 60_000)) == []


def test_alarm_rate_per_operator_position_is_per_crew(
    simulated_day: SimulatedDay, boards: dict[str, dict[str, Any]]
) -> None:
    """The positions are the crews the demo's notifier routes to (deploy/alarms/notify.yaml),
    not the sites; the car-park crew's rate is Wanda's and Xingshui's together."""
    day = simulated_day
    start, end = day.result.start_ms, day.result.end_ms
    notify = demo_notify()
    crews = {r.crew for r in notify.routes}
    assert {"parking", "fengshou_water", "huilongba_water", "south_water"} == crews
    query = _by_title(boards, "facility-alarms", "Alarms per 10 min per operator position")
    series = influx(day, expand(query, {}, start, end, 600_000))
    assert {s["tags"]["position"] for s in series} == crews
    averages = {
        s["tags"]["position"]: [row[s["columns"].index("average")] for row in s["values"]]
        for s in series
    }
    assert max(averages["parking"]) > 0  # the Wanda gate stuck open, the lot full
    last = 'SELECT last("per_10min_average") FROM "{}" WHERE time <= {}ms GROUP BY "{}"'
    sites = {
        s["tags"]["site"]: s["values"][0][1]
        for s in influx(day, last.format("alarm_kpi", end, "site"))
    }
    positions = {
        s["tags"]["position"]: s["values"][0][1]
        for s in influx(day, last.format("alarm_kpi_position", end, "position"))
    }
    assert positions["parking"] > 0
    assert positions["parking"] == pytest.approx(sites["wanda"] + sites["xingshui"], abs=0.002)
    assert positions["south_water"] == pytest.approx(
        sites["lianhuatang"] + sites["chaheihai"], abs=0.002
    )


# -- the counts and the gateways against the simulated day's ground truth ----------------

MINUTE = 60_000


def _value(day: SimulatedDay, boards: dict[str, dict[str, Any]], title: str, to_ms: int) -> int:
    """A fleet count at `to_ms` over every site; no row is the tile's "0"."""
    options = boards["facility-fleet"]["templating"]["list"][0]["options"]
    chosen = {"site": Variable([o["value"] for o in options if o["value"] != "$__all"], True)}
    query = expand(_by_title(boards, "facility-fleet", title), chosen, to_ms - 3_600_000, to_ms, 0)
    series = influx(day, query)
    return int(series[0]["values"][0][1]) if series else 0


def test_station_counts_are_the_physics(
    simulated_day: SimulatedDay, boards: dict[str, dict[str, Any]], demo_config: SiteConfig
) -> None:
    """At polls through the day, "Stations running" is the number of stations with a
    pump running in the physics (tests/history.py records them at every poll), and
    "Stations stopped" the number with pumps, none running."""
    day = simulated_day
    pumped = {r.key[:2] for r in demo_config.assets() if r.asset.kind == AssetKind.PUMP}
    seen = []
    for offset in (35 * MINUTE, 6 * 3_600_000, 12 * 3_600_000, 18 * 3_600_000, 1439 * MINUTE):
        at = day.result.start_ms + offset
        running = {key[:2] for key in day.result.running[at]}
        counts = (
            _value(day, boards, "Stations running", at),
            _value(day, boards, "Stations stopped", at),
        )
        assert counts == (len(running), len(pumped - running)), offset / 3_600_000
        seen.append(counts)
    # not 0 == 0: stations run at some of the instants, and stand still at all of them
    assert max(r for r, _ in seen) >= 2 and min(s for _, s in seen) > 0, seen


def _gateways_online(
    day: SimulatedDay, boards: dict[str, dict[str, Any]], at: int
) -> dict[str, int]:
    options = boards["facility-fleet"]["templating"]["list"][0]["options"]
    chosen = {"site": Variable([o["value"] for o in options if o["value"] != "$__all"], True)}
    query = expand(
        _by_title(boards, "facility-fleet", "Gateways online"), chosen, at - 3_600_000, at, 0
    )
    return {s["tags"]["site"]: int(s["values"][0][1]) for s in influx(day, query)}


def _outage(day: SimulatedDay) -> tuple[str, str, int, int]:
    (fault,) = [f for f in day.scenario.faults if f.kind.value == "gateway_link_down"]
    assert fault.duration_s is not None
    start = day.result.start_ms + int(fault.at_s * 1000)
    return fault.key[0], fault.key[1], start, start + int(fault.duration_s * 1000)


def test_gateways_online_are_the_models_but_the_cut_one(
    simulated_day: SimulatedDay, boards: dict[str, dict[str, Any]], demo_config: SiteConfig
) -> None:
    """Every gateway of the site model is online, except during the injected uplink
    outage, when its site counts one fewer."""
    day = simulated_day
    model = Counter(r.site.id for r in demo_config.assets() if r.asset.kind == AssetKind.GATEWAY)
    site, _, start, end = _outage(day)
    assert _gateways_online(day, boards, start - 10 * MINUTE) == dict(model)
    during = _gateways_online(day, boards, start + 10 * MINUTE)
    assert during == {**model, site: model[site] - 1}
    assert _gateways_online(day, boards, end + 5 * MINUTE) == dict(model)


def _gateway_series(
    day: SimulatedDay, boards: dict[str, dict[str, Any]], title: str, start: int, end: int
) -> dict[str, list[tuple[int, float]]]:
    """A gateways-board panel over [start, end], the outage's site selected."""
    board = boards["facility-gateways"]
    site, *_ = _outage(day)
    chosen = {"site": Variable([site], True), "rp": Variable(["raw"])}
    stations = next(v for v in board["templating"]["list"] if v["name"] == "station")
    chosen["station"] = Variable(_offered(day, stations, chosen), True)
    panel = next(p for p in panels(board) if p["title"] == title)
    interval = calculate_interval_ms(start, end, panel["maxDataPoints"], panel["interval"])
    text = expand(panel["targets"][0]["query"], chosen, start, end, interval)
    return {
        s["tags"]["station"]: [(int(t), float(v)) for t, v in s["values"]]
        for s in influx(day, text)
    }


def test_the_outbox_fills_during_the_outage_and_drains(
    simulated_day: SimulatedDay, boards: dict[str, dict[str, Any]]
) -> None:
    """The cut gateway keeps its polls (wiring/history.py's outbox): its depth and the
    age of its oldest reading grow a poll at a time while the uplink is down, the
    backlog goes out when it returns; the site's other gateways keep nothing back."""
    day = simulated_day
    _, station, start, end = _outage(day)
    window = (start - 30 * MINUTE, end + 30 * MINUTE)
    depth = _gateway_series(day, boards, "Outbox depth", *window)
    age = _gateway_series(day, boards, "Outbox age (oldest waiting reading)", *window)
    delay = _gateway_series(day, boards, "Delivery delay (live lane, max)", *window)
    assert set(depth) == set(age) == set(delay) and len(depth) > 1
    for other in set(depth) - {station}:
        assert {v for _, v in depth[other]} == {0.0}, other
        assert {v for _, v in delay[other]} == {70.0}, other  # history's live-lane delay
    held = [(t, v) for t, v in depth[station] if v > 0]
    # from the second poll of the outage to the one that finds the link back
    assert held[0][0] == start + 2 * MINUTE and held[-1][0] == end + MINUTE, held
    values = [v for _, v in held]
    assert values == sorted(values) and len(set(values)) == len(values)  # grows each poll
    assert all(v == 0 for t, v in depth[station] if t > end + MINUTE)  # drained
    oldest = max(v for _, v in age[station])
    assert (end - start) / 1000 - 120 <= oldest <= (end - start) / 1000
    assert {v for t, v in delay[station] if start < t <= end} == {0.0}  # nothing live


def test_turnover_tiles_follow_the_site_variable(
    simulated_day: SimulatedDay, boards: dict[str, dict[str, Any]], demo_config: SiteConfig
) -> None:
    """A lot's turnover tile answers while its site is selected, with the gates' true
    vehicles in over the lot's spaces; nothing while another site is."""
    day = simulated_day
    truth0, truth1 = day.result.truth_start, day.result.truth_end
    start, end = day.result.start_ms, day.result.end_ms
    lots = [r for r in demo_config.assets() if r.asset.kind == AssetKind.PARKING_LOT]
    for lot in lots:
        tile = next(
            p
            for p in panels(boards["facility-parking"])
            if p["title"] == f"Turnover {lot.site.name or lot.site.id}"
        )
        query = tile["targets"][0]["query"]
        others = [r.site.id for r in lots if r.site.id != lot.site.id]
        assert influx(day, expand(query, {"site": Variable(others, True)}, start, end, 0)) == []
        (series,) = influx(
            day, expand(query, {"site": Variable([lot.site.id], True)}, start, end, 0)
        )
        came = sum(
            int(truth1[k]["vehicles_in_total"]) - int(truth0[k]["vehicles_in_total"])
            for k in truth1
            if k[:2] == lot.key[:2] and "vehicles_in_total" in truth1[k]
        )
        spaces = lot.asset.ratings.spaces or 1
        # 10-minute buckets: the cars of the day's first bucket before its first reading
        # are not seen
        assert series["values"][0][1] == pytest.approx(came / spaces, abs=5 / spaces)
