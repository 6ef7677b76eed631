"""The demo site (deploy/sites/demo) against the facts in site-facts.md."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from facility.config import SiteConfig, load_site_config
from facility.site import AssetKind, AssetRef, AssetStatus

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo"

WATER_SITES = ["fengshou", "huilongba", "lianhuatang", "chaheihai"]
PARKING_SITES = ["wanda", "xingshui"]

# site-facts.md §1: station -> (site, pump motors in kW, broken count, transformer kVA)
STATIONS: dict[str, tuple[str, list[float], int, float | None]] = {
    "xiba": ("fengshou", [110, 110, 110], 1, 250),
    "sankeshu": ("fengshou", [110, 110, 110], 0, 315),
    "laozhengfu": ("fengshou", [99, 99, 22], 0, 100),
    "zhongba": ("fengshou", [37], 0, None),
    "pingyuan": ("fengshou", [37, 37], 0, 50),
    "fengshou_office": ("fengshou", [55, 55], 1, 100),
    "nongken": ("huilongba", [75, 75], 1, 100),
    "wuxiao": ("huilongba", [90, 90, 90, 90], 0, 500),
    "yancao": ("huilongba", [35, 35, 35], 0, 100),
    "lianhuatang_intake": ("lianhuatang", [90, 90], 0, 100),
    "chaheihai_intake": ("chaheihai", [13], 0, 30),
}

# The installed power as listed in site-facts.md, station by station.
INSTALLED_KW = (
    110 * 3 + 110 * 3 + 99 * 2 + 22 + 37 + 37 * 2 + 55 * 2 + 75 * 2 + 90 * 4 + 35 * 3 + 90 * 2 + 13
)

# site-facts.md §1 supply tanks: capacities in m³ (None: unreadable in the source,
# an assumption in the demo files).
TANKS: dict[str, list[float | None]] = {
    "fengshou": [1000, 1000, None, 4000, 300, 200],
    "huilongba": [None, 1000, 100],
    "lianhuatang": [500, 200, 100, 50],
    "chaheihai": [300, 100, 100],
}

POPULATION = {
    "fengshou": (14410, 57640),
    "huilongba": (2411, 9644),
    "lianhuatang": (1347, 5388),
    "chaheihai": (356, 1646),
}


@pytest.fixture(scope="module")
def demo() -> SiteConfig:
    return load_site_config(DEMO)


def of_kind(config: SiteConfig, kind: AssetKind, site: str | None = None) -> list[AssetRef]:
    return [
        r for r in config.assets() if r.asset.kind == kind and (site is None or r.site.id == site)
    ]


def test_demo_loads_without_issues(demo: SiteConfig) -> None:
    # load_site_config raises ConfigError listing every issue; reaching here means none
    assert demo.sites


def test_six_sites(demo: SiteConfig) -> None:
    assert sorted(s.id for s in demo.sites) == sorted(WATER_SITES + PARKING_SITES)
    assert {s.id for s in demo.sites if s.kind == "water_supply"} == set(WATER_SITES)
    assert {s.id for s in demo.sites if s.kind == "parking"} == set(PARKING_SITES)


@pytest.mark.parametrize("site_id", WATER_SITES)
def test_households_and_population(demo: SiteConfig, site_id: str) -> None:
    site = demo.site(site_id)
    assert (site.households, site.population) == POPULATION[site_id]


def test_eleven_pump_stations_across_the_water_sites(demo: SiteConfig) -> None:
    stations = {
        st.id: site.id for site in demo.sites if site.kind == "water_supply" for st in site.stations
    }
    assert len(stations) == 11
    assert stations == {sid: facts[0] for sid, facts in STATIONS.items()}


def test_drought_relief_stations_are_standby(demo: SiteConfig) -> None:
    fengshou = demo.site("fengshou")
    standby = {st.id for st in fengshou.stations if st.mode == "standby"}
    assert standby == {"zhongba", "pingyuan"}


def test_26_pumps(demo: SiteConfig) -> None:
    assert len(of_kind(demo, AssetKind.PUMP)) == 26


@pytest.mark.parametrize("station_id", sorted(STATIONS))
def test_pumps_per_station(demo: SiteConfig, station_id: str) -> None:
    site_id, motors, broken, _ = STATIONS[station_id]
    station = demo.site(site_id).station(station_id)
    pumps = [a for a in station.assets if a.kind == AssetKind.PUMP]
    assert sorted(a.ratings.motor_kw or 0 for a in pumps) == sorted(motors)
    assert sum(a.status is AssetStatus.OUT_OF_SERVICE for a in pumps) == broken


def test_exactly_three_pumps_out_of_service(demo: SiteConfig) -> None:
    broken = [
        r for r in of_kind(demo, AssetKind.PUMP) if r.asset.status is AssetStatus.OUT_OF_SERVICE
    ]
    assert len(broken) == 3
    assert sorted(r.station.id for r in broken) == ["fengshou_office", "nongken", "xiba"]


def test_installed_pump_power(demo: SiteConfig) -> None:
    assert INSTALLED_KW == 1909  # "about 1,909 kW installed"
    total = sum(r.asset.ratings.motor_kw or 0 for r in of_kind(demo, AssetKind.PUMP))
    assert total == INSTALLED_KW


def test_ten_transformers_totalling_1645_kva(demo: SiteConfig) -> None:
    transformers = of_kind(demo, AssetKind.TRANSFORMER)
    assert len(transformers) == 10
    assert sum(r.asset.ratings.kva or 0 for r in transformers) == 1645
    kva = {r.station.id: r.asset.ratings.kva for r in transformers}
    assert kva == {sid: f[3] for sid, f in STATIONS.items() if f[3] is not None}


def test_sixteen_tanks(demo: SiteConfig) -> None:
    assert len(of_kind(demo, AssetKind.TANK)) == 16


@pytest.mark.parametrize("site_id", WATER_SITES)
def test_tank_capacities(demo: SiteConfig, site_id: str) -> None:
    tanks = sorted(of_kind(demo, AssetKind.TANK, site_id), key=lambda r: r.asset.id)
    assert len(tanks) == len(TANKS[site_id])
    for number, (ref, capacity) in enumerate(zip(tanks, TANKS[site_id], strict=True), 1):
        assert ref.asset.id == f"tank_no{number}"
        if capacity is not None:
            assert ref.asset.ratings.capacity_m3 == capacity, ref.path


def test_tank_levels_are_ordered_inside_the_tank(demo: SiteConfig) -> None:
    for ref in of_kind(demo, AssetKind.TANK):
        height = ref.asset.ratings.height_m
        assert height is not None
        lim = ref.asset.limits["level_m"]
        levels = [lim.low_low, lim.low, lim.high, lim.high_high]
        known = [v for v in levels if v is not None]
        assert len(known) == len(levels), ref.path
        assert [0, *known, height] == sorted([0, *known, height]), ref.path
        control = ref.station.control
        if control is not None and control.lead_tank == ref.asset.id:
            assert 0 < control.start_level_m < control.stop_level_m < height, ref.path


def test_two_water_quality_assets(demo: SiteConfig) -> None:
    quality = of_kind(demo, AssetKind.WATER_QUALITY)
    assert len(quality) == 2
    assert sorted(r.station.id for r in quality) == ["chaheihai_intake", "lianhuatang_intake"]


def test_every_asset_but_gateways_has_a_loaded_profile(demo: SiteConfig) -> None:
    for ref in demo.assets():
        if ref.asset.kind == AssetKind.GATEWAY:
            continue
        assert demo.profile_of(ref).profile == ref.asset.profile


@pytest.mark.parametrize(
    ("site_id", "spaces", "gates"),
    [
        ("wanda", 453, {"main_gate", "north_gate", "west_exit"}),
        ("xingshui", 500, {"east_in_1", "east_in_2", "north_out_1", "north_out_2"}),
    ],
)
def test_parking_lots(demo: SiteConfig, site_id: str, spaces: int, gates: set[str]) -> None:
    lots = of_kind(demo, AssetKind.PARKING_LOT, site_id)
    assert len(lots) == 1
    assert lots[0].asset.ratings.spaces == spaces
    assert {r.asset.id for r in of_kind(demo, AssetKind.BARRIER_GATE, site_id)} == gates


def test_xingshui_gates_two_in_two_out(demo: SiteConfig) -> None:
    gates = of_kind(demo, AssetKind.BARRIER_GATE, "xingshui")
    lanes = Counter(lane for r in gates for lane in r.asset.lanes)
    assert lanes == Counter({"in": 2, "out": 2})
    closed = [r.asset.id for r in gates if r.asset.closed_hours is not None]
    assert closed == ["north_out_2"]  # the north exit is closed at night


def test_asset_kinds_overall(demo: SiteConfig) -> None:
    kinds = Counter(r.asset.kind for r in demo.assets())
    assert kinds[AssetKind.PUMP] == 26
    assert kinds[AssetKind.TRANSFORMER] == 10
    assert kinds[AssetKind.TANK] == 16
    assert kinds[AssetKind.WATER_QUALITY] == 2
    assert kinds[AssetKind.RESERVOIR] == 4  # one level gauge per reservoir
    assert kinds[AssetKind.PARKING_LOT] == 2
    assert kinds[AssetKind.BARRIER_GATE] == 7
