"""Kinds as data (facility/kinds/, facility/kind.py): the built-ins, a site's own kinds,
roles from the kind or the profile, and the role-driven values of kinds without physics
(simulators/role_signals.py)."""

from __future__ import annotations

import dataclasses
import itertools
import random
from pathlib import Path

import pytest

from dashboards.build import build_all
from dashboards.model import Facts
from facility.config import SiteConfig, builtin_kinds, load_site_config
from facility.kind import Role, report_factor
from facility.site import Asset, AssetKind
from simulators.role_signals import RoleSignalModel
from tests.conftest import ROOT

EXAMPLE = ROOT / "deploy" / "sites" / "examples" / "riverside"
ISSUE_KINDS = ("energy_meter", "flow_meter", "pressure_transmitter", "chlorine_analyser", "valve")


def test_builtin_kinds_cover_the_demo_the_issue_and_generic() -> None:
    kinds = builtin_kinds()
    assert {k.value for k in AssetKind} <= set(kinds)
    assert set(ISSUE_KINDS) <= set(kinds)
    assert kinds["pump"].ratings == ["motor_kw"]
    assert kinds["tank"].ratings == ["capacity_m3", "height_m"]
    assert not kinds["gateway"].polled and all(k.polled for n, k in kinds.items() if n != "gateway")
    assert kinds["generic"].roles == {}


def test_an_asset_kind_is_plain_text_equal_to_the_constants() -> None:
    asset = Asset(id="p", kind=AssetKind.PUMP)
    assert type(asset.kind) is str and asset.kind == "pump" and asset.kind == AssetKind.PUMP


def test_roles_of_the_example_devices_come_from_their_kinds() -> None:
    config = load_site_config(EXAMPLE)
    by_id = {r.asset.id: r.asset for r in config.assets()}
    assert config.signals_with(by_id["outlet_flow"], Role.VOLUME_COUNTER) == ["total_m3"]
    assert config.signals_with(by_id["outlet_flow"], Role.FLOW) == ["flow_m3h"]
    assert config.signals_with(by_id["incomer"], Role.ENERGY_COUNTER) == ["import_energy_kwh"]
    assert config.signals_with(by_id["incomer"], Role.POWER) == ["active_power_kw"]
    # the transmitter's profile names a role the kind does not: both count
    roles = config.roles_of(by_id["main_pressure"])
    assert roles == {
        "pressure_bar": Role.PRESSURE,
        "sensor_temp_c": Role.TEMPERATURE,
        "sensor_fault": Role.FAULT,
    }


def test_every_role_a_builtin_kind_names_is_a_signal_of_a_profile_of_that_kind() -> None:
    """A typo in a kind's roles would silently count nothing: every signal named in a
    built-in kind exists in some built-in profile its assets use."""
    demo = load_site_config(ROOT / "deploy" / "sites" / "demo")
    example = load_site_config(EXAMPLE)
    signals: dict[str, set[str]] = {}
    for config in (demo, example):
        for ref in config.assets():
            profile = config.profiles.get(ref.asset.profile or "")
            if profile is not None:
                signals.setdefault(ref.asset.kind, set()).update(s.name for s in profile.signals)
    for name, kind in builtin_kinds().items():
        if name in signals:
            assert set(kind.roles) <= signals[name], (name, set(kind.roles) - signals[name])


def test_a_site_kind_replaces_a_builtin_and_a_profile_role_wins(tmp_path: Path) -> None:
    (tmp_path / "kinds").mkdir()
    (tmp_path / "kinds" / "flow_meter.yaml").write_text(
        "kind: flow_meter\nname: Bulk meter\nratings: [rated_flow_m3h]\n"
        "roles: {flow_m3h: flow, total_m3: counter}\n"
    )
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "meter.yaml").write_text(
        "profile: meter\nprotocol: modbus\nsignals:\n"
        "  - {name: flow_m3h, table: input, address: 0, type: float32, unit: m3/h}\n"
        "  - {name: total_m3, table: input, address: 2, type: uint32, unit: m3,"
        " role: volume_counter}\n"
    )
    (tmp_path / "site.yaml").write_text(
        "id: s\nkind: water_supply\nstations:\n  - id: st\n"
        "    buses: [{id: b, transport: tcp}]\n    assets:\n"
        "      - {id: m, kind: flow_meter, profile: meter, modbus: {bus: b, unit_id: 1},"
        " ratings: {rated_flow_m3h: 40}}\n"
    )
    config = load_site_config(tmp_path)
    assert config.kinds["flow_meter"].name == "Bulk meter"
    (ref,) = config.assets()
    assert config.roles_of(ref.asset) == {"flow_m3h": Role.FLOW, "total_m3": Role.VOLUME_COUNTER}


@pytest.mark.parametrize(
    ("role", "unit", "factor"),
    [
        (Role.FLOW, "L/s", 3.6),
        (Role.FLOW, "m3/h", 1.0),
        (Role.POWER, "W", 0.001),
        (Role.ENERGY_COUNTER, "MWh", 1000.0),
        (Role.VOLUME_COUNTER, "L", 0.001),
        (Role.PRESSURE, "psi", 1.0),  # not converted: the reports do not count it
        (Role.FLOW, "gpm", None),
    ],
)
def test_report_units(role: Role, unit: str, factor: float | None) -> None:
    assert report_factor(role, unit) == factor


def test_role_values_count_exactly_what_they_flow() -> None:
    """The totaliser is the integral of the noiseless flow, in the counter's own unit;
    the reported flow is that rate in the flow signal's unit, with 1 % noise."""
    config = load_site_config(EXAMPLE)
    ref = next(r for r in config.assets() if r.asset.id == "outlet_flow")
    model = RoleSignalModel(
        profile=config.profile_of(ref),
        roles=config.roles_of(ref.asset),
        asset_id="outlet_flow",
        rng=random.Random(1),
        utc_offset_h=0.0,
    )
    start = model.counters["total_m3"]
    expected = 0.0
    t = 0
    for _ in range(360):  # an hour in 10 s steps
        model.t_ms = t
        expected += model.rate(Role.FLOW) * 10 / 3600
        model.advance(10.0, t)
        t += 10_000
    assert model.counters["total_m3"] - start == pytest.approx(expected, rel=1e-12)
    values = model.values()
    assert values["flow_m3h"] == pytest.approx(model.rate(Role.FLOW), rel=0.05)
    assert values["empty_pipe"] is False and values["coil_fault"] is False


def _only(config: SiteConfig, kinds: set[str]) -> SiteConfig:
    """The configuration with only the assets of `kinds` (and the gateways)."""
    sites = []
    for site in config.sites:
        stations = [
            st.model_copy(
                update={
                    "assets": [a for a in st.assets if a.kind in kinds | {"gateway"}],
                    "control": None,
                    "feeds": [],
                }
            )
            for st in site.stations
        ]
        sites.append(site.model_copy(update={"stations": stations}))
    return dataclasses.replace(config, sites=sites)


def _all_kinds() -> SiteConfig:
    demo = load_site_config(ROOT / "deploy" / "sites" / "demo")
    example = load_site_config(EXAMPLE)
    return dataclasses.replace(demo, sites=[*demo.sites, *example.sites])


KINDS_IN_USE = sorted(
    {"pump", "transformer", "tank", "reservoir", "water_quality", "parking_lot", "barrier_gate"}
    | {"energy_meter", "flow_meter", "pressure_transmitter", "chlorine_analyser"}
)


PAIRS = [set(p) for p in itertools.combinations(KINDS_IN_USE, 2)]
COMBINATIONS = [set(), set(KINDS_IN_USE)] + [{k} for k in KINDS_IN_USE] + PAIRS[::3]


@pytest.mark.parametrize("kinds", COMBINATIONS, ids=lambda k: "+".join(sorted(k)) or "none")
def test_boards_build_for_any_combination_of_kinds(kinds: set[str]) -> None:
    """No IndexError, no empty variable: every board is schema-valid (build_all checks
    each) and each kind in use has its row on the station board unless it has a board
    of its own (the car parks)."""
    config = _only(_all_kinds(), kinds)
    boards = build_all(Facts(config))
    assert {"facility-fleet", "facility-alarms", "facility-gateways"} <= set(boards)
    station = boards.get("facility-station")
    rows = {p["title"] for p in station["panels"] if p["type"] == "row"} if station else set()
    for kind in kinds - {"parking_lot", "barrier_gate"}:
        title = {"pump": "Pumps", "transformer": "Transformer"}.get(kind, config.kinds[kind].name)
        assert title in rows, (kind, rows)
    assert ("facility-parking" in boards) == bool(kinds & {"parking_lot", "barrier_gate"})


def test_a_generic_device_is_on_the_station_board_with_its_profile_roles(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "logger.yaml").write_text(
        "profile: logger\nprotocol: modbus\nsignals:\n"
        "  - {name: level_m, table: input, address: 0, type: uint16, scale: 0.01, unit: m,"
        " role: level}\n"
        "  - {name: pumped_m3, table: input, address: 1, type: uint32, unit: m3,"
        " role: volume_counter}\n"
    )
    (tmp_path / "site.yaml").write_text(
        "id: s\nkind: water_supply\nstations:\n  - id: st\n"
        "    buses: [{id: b, transport: tcp}]\n    assets:\n"
        "      - {id: x, kind: generic, profile: logger, modbus: {bus: b, unit_id: 1}}\n"
    )
    boards = build_all(Facts(load_site_config(tmp_path)))
    titles = [p["title"] for p in boards["facility-station"]["panels"]]
    assert titles[:3] == ["Other equipment", "Level m", "Pumped m3: increase per interval"]
    reservoir = [p["title"] for p in boards["facility-reservoir"]["panels"]]
    assert "Water delivered per interval" in reservoir
