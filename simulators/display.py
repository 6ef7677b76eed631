"""What the live table shows: one line per station, in an operator's words."""

from __future__ import annotations

from dataclasses import dataclass

from facility.config import SiteConfig
from facility.kind import Role
from facility.site import Asset, AssetKind, AssetStatus, Station
from simulators.engine import FeedSource


@dataclass
class StationRow:
    station: str
    pumps: str
    flow: str
    tanks: str
    power: str
    other: str


def _num(v: object, default: float = 0.0) -> float:
    return float(v) if isinstance(v, int | float) else default


MqttLatest = dict[tuple[str, str, str, str], dict[str, object]]  # (site, station, asset, topic)


def station_rows(
    config: SiteConfig, source: FeedSource, mqtt_latest: MqttLatest | None = None
) -> list[StationRow]:
    latest = mqtt_latest or {}
    return [
        _row(site.id, station, source, latest, config)
        for site in config.sites
        for station in site.stations
    ]


# What the `other` column shows of equipment of any other kind: its first signal of these.
SHOWN_ROLES = (Role.FLOW, Role.PRESSURE, Role.POWER, Role.LEVEL, Role.CONCENTRATION)
SHOWN_ELSEWHERE = frozenset(AssetKind) - {AssetKind.GENERIC}


def _by_role(config: SiteConfig, asset: Asset, values: dict[str, object]) -> str:
    roles = config.roles_of(asset)
    for role in SHOWN_ROLES:
        for name, value in values.items():
            if roles.get(name) is role and isinstance(value, int | float):
                return f"{asset.id} {value:.3g} {config.unit_of(asset, name)}".rstrip()
    return ""


def _row(
    site_id: str,
    station: Station,
    source: FeedSource,
    latest: MqttLatest,
    config: SiteConfig | None = None,
) -> StationRow:
    def vals(asset_id: str) -> dict[str, object]:
        key = (site_id, station.id, asset_id)
        return dict(source.values(key)) if asset_id in polled else {}

    polled = {a.id for a in station.assets if a.modbus is not None}
    pumps = [a for a in station.assets if a.kind == AssetKind.PUMP]
    running = sum(1 for p in pumps if vals(p.id).get("running"))
    broken = sum(1 for p in pumps if p.status is AssetStatus.OUT_OF_SERVICE)
    tripped = sum(1 for p in pumps if vals(p.id).get("tripped"))
    flow = sum(_num(vals(p.id).get("flow_m3h")) for p in pumps)
    pump_text = f"{running}/{len(pumps)} run" if pumps else "-"
    if broken:
        pump_text += f", {broken} o/s"
    if tripped:
        pump_text += f", {tripped} TRIP"
    tanks = [
        f"{a.id.removeprefix('tank_')}:{_num(vals(a.id).get('level_pct')):.0f}%"
        for a in station.assets
        if a.kind == AssetKind.TANK
    ]
    power = ""
    other: list[str] = []
    for asset in station.assets:
        v = vals(asset.id)
        if asset.kind == AssetKind.TRANSFORMER:
            power = f"{_num(v.get('load_pct')):.0f}% {_num(v.get('top_oil_temp_c')):.0f}°C"
        elif asset.kind == AssetKind.RESERVOIR:
            other.append(f"reservoir {_num(v.get('water_level_m')):.2f} m")
        elif asset.kind == AssetKind.WATER_QUALITY:
            other.append(f"ClO2 {_num(v.get('clo2_residual_mg_l')):.2f} mg/L")
        elif asset.kind == AssetKind.PARKING_LOT:
            occ = latest.get((site_id, station.id, asset.id, "occupancy"), {})
            other.insert(0, f"occupied {occ.get('occupied', '?')}/{asset.ratings.spaces}")
        elif asset.kind == AssetKind.BARRIER_GATE:
            state = latest.get((site_id, station.id, asset.id, "state"), {})
            if state.get("barrier") == "open":
                other.append(f"{asset.id} open")
        elif config is not None and asset.kind not in SHOWN_ELSEWHERE and v:
            other.append(_by_role(config, asset, v))
    return StationRow(
        station=f"{site_id}/{station.id}" + (" (standby)" if station.mode == "standby" else ""),
        pumps=pump_text,
        flow=f"{flow:.0f}" if pumps else "-",
        tanks=" ".join(tanks) or "-",
        power=power or "-",
        other=", ".join(o for o in other if o),
    )
