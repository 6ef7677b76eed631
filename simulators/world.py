"""The simulated world: every asset of a site configuration, stepped in simulated time.

Build it from a validated SiteConfig and a seed; call `step(dt_s)` to advance it. The
same seed and the same sequence of steps give the same values, bit for bit: every
asset has its own random stream derived from (seed, site, station, asset), and nothing
reads the wall clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from facility.config import SiteConfig
from facility.site import MODELLED_KINDS, Asset, AssetKind, AssetStatus, Site, Station
from simulators.physics.common import (
    Value,
    ambient_temp_c,
    diurnal_demand_factor,
    hour_of_day,
    seeded_rng,
)
from simulators.physics.parking import DeviceMessage, GateModel, ParkingLotModel
from simulators.physics.pump import PumpCurve, PumpModel
from simulators.physics.reservoir import ReservoirModel
from simulators.physics.station import StationModel
from simulators.physics.tank import TankModel
from simulators.physics.transformer import TransformerModel
from simulators.physics.water_quality import WaterQualityModel
from simulators.role_signals import RoleSignalModel

AssetKey = tuple[str, str, str]  # site, station, asset
Model = (
    PumpModel
    | TankModel
    | TransformerModel
    | ReservoirModel
    | WaterQualityModel
    | ParkingLotModel
    | GateModel
    | RoleSignalModel
)
# Built once: an isinstance on `ParkingLotModel | GateModel` builds the union each call,
# and the gateway view asks for every polled asset's values every poll.
CAR_PARK_MODELS = (ParkingLotModel, GateModel)
# Kinds whose values come from physics; every other kind's from its signals' roles.
PHYSICS_KINDS = MODELLED_KINDS

RESERVOIR_START_FRACTION = 0.65  # ASSUMPTION: storage at the start of a run
BASEFLOW_SHARE = 0.7  # ASSUMPTION: catchment inflow as a share of mean demand
# Car-park traffic (ASSUMPTION): regular vehicles and the visitors' evening peak rate.
PARKING_TRAFFIC: dict[str, tuple[float, float]] = {"wanda": (330 / 453, 32.0)}
DEFAULT_PARKING_TRAFFIC = (0.88, 8.0)


@dataclass
class SiteDemand:
    """Water demand of one site, shared among its tanks by capacity."""

    mean_m3h: float
    tank_share: dict[AssetKey, float]
    wobble: float = 1.0
    rng: random.Random = field(default_factory=random.Random)

    def advance(self) -> None:
        # AR(1) wobble around 1: demand is never a perfectly smooth curve
        self.wobble = 1.0 + 0.98 * (self.wobble - 1.0) + self.rng.gauss(0, 0.004)


@dataclass
class World:
    config: SiteConfig
    seed: int
    t_ms: int
    stations: dict[tuple[str, str], StationModel] = field(default_factory=dict)
    reservoirs: dict[str, tuple[AssetKey, ReservoirModel]] = field(default_factory=dict)
    car_parks: dict[tuple[str, str], ParkingLotModel] = field(default_factory=dict)
    models: dict[AssetKey, Model] = field(default_factory=dict)
    demand: dict[str, SiteDemand] = field(default_factory=dict)
    demand_multiplier: dict[AssetKey, float] = field(default_factory=dict)  # fault: main burst
    utc_offset_h: dict[str, float] = field(default_factory=dict)
    generated: dict[AssetKey, RoleSignalModel] = field(default_factory=dict)

    @classmethod
    def build(cls, config: SiteConfig, seed: int, start_ms: int) -> World:
        world = cls(config=config, seed=seed, t_ms=start_ms)
        for site in config.sites:
            world.utc_offset_h[site.id] = _utc_offset_h(site.timezone, start_ms)
            for station in site.stations:
                world._build_station(site, station)
                world._build_generated(site, station)
            if site.kind == "water_supply":
                world._build_demand(site)
        return world

    def rng(self, *names: str) -> random.Random:
        return seeded_rng(self.seed, *names)

    def _build_generated(self, site: Site, station: Station) -> None:
        """Equipment of kinds without physics (simulators/role_signals.py)."""
        for asset in station.assets:
            profile = self.config.profiles.get(asset.profile or "")
            if asset.kind in PHYSICS_KINDS or profile is None:
                continue
            akey = (site.id, station.id, asset.id)
            model = RoleSignalModel(
                profile=profile,
                roles=self.config.roles_of(asset),
                asset_id=asset.id,
                rng=self.rng(*akey),
                utc_offset_h=self.utc_offset_h[site.id],
                rated_flow_m3h=asset.ratings.rated_flow_m3h,
                rated_kw=asset.ratings.motor_kw,
                t_ms=self.t_ms,
            )
            self.generated[akey] = model
            self.models[akey] = model

    def _build_station(self, site: Site, station: Station) -> None:
        if station.kind == "car_park":
            self._build_car_park(site, station)
            return
        key = (site.id, station.id)
        pumps: dict[str, PumpModel] = {}
        tanks: dict[str, TankModel] = {}
        transformer: TransformerModel | None = None
        quality: WaterQualityModel | None = None
        offset = self.utc_offset_h[site.id]
        for asset in station.assets:
            akey = (site.id, station.id, asset.id)
            rng = self.rng(*akey)
            if asset.kind == AssetKind.PUMP:
                pumps[asset.id] = _pump(asset, rng)
                self.models[akey] = pumps[asset.id]
            elif asset.kind == AssetKind.TANK:
                tanks[asset.id] = _tank(asset, rng, station)
                self.models[akey] = tanks[asset.id]
            elif asset.kind == AssetKind.TRANSFORMER:
                transformer = TransformerModel(
                    kva=asset.ratings.kva or 100.0,
                    voltage_v=asset.ratings.voltage_v or 400.0,
                    rng=rng,
                )
                transformer.ambient_c = ambient_temp_c(self.t_ms, offset)
                transformer.top_oil_c = transformer.ambient_c + 10.0
                self.models[akey] = transformer
            elif asset.kind == AssetKind.WATER_QUALITY:
                quality = WaterQualityModel(rng=rng, utc_offset_h=offset)
                self.models[akey] = quality
            elif asset.kind == AssetKind.RESERVOIR:
                self._build_reservoir(site, akey, asset, rng)
        order = _pump_order(station, pumps)
        control = station.control
        lead = tanks.get(control.lead_tank) if control else None
        model = StationModel(
            pumps=pumps,
            pump_order=order,
            tanks={t: tanks[t] for t in station.feeds},
            static_head_m=station.static_head_m or 30.0,
            drive_hz=station.drive_hz,
            standby=station.mode == "standby" or control is None,
            transformer=transformer,
            water_quality=quality,
        )
        if control is not None and lead is not None:
            model.start_fraction = control.start_level_m / lead.height_m
            model.stop_fraction = control.stop_level_m / lead.height_m
            model.duty_pumps = control.duty_pumps
        rng = self.rng(site.id, station.id, "levels")
        for tank in model.tanks.values():
            span = model.stop_fraction - model.start_fraction
            tank.level_m = tank.height_m * (model.start_fraction + span * rng.uniform(0.2, 0.9))
        self.stations[key] = model

    def _build_reservoir(
        self, site: Site, akey: AssetKey, asset: Asset, rng: random.Random
    ) -> None:
        capacity = asset.ratings.capacity_m3 or 1e6
        area = (asset.ratings.area_km2 or 0.2) * 1e6
        model = ReservoirModel(
            capacity_m3=capacity,
            area_m2=area,
            rng=rng,
            utc_offset_h=self.utc_offset_h[site.id],
            volume_m3=capacity * RESERVOIR_START_FRACTION,
        )
        self.reservoirs[site.id] = (akey, model)
        self.models[akey] = model

    def _build_demand(self, site: Site) -> None:
        mean = (site.population or 0) * site.demand_l_per_person_day / 1000.0 / 24.0
        tanks = {
            (site.id, st.id, a.id): a.ratings.capacity_m3 or 0.0
            for st in site.stations
            for a in st.assets
            if a.kind == AssetKind.TANK
        }
        total = sum(tanks.values()) or 1.0
        self.demand[site.id] = SiteDemand(
            mean_m3h=mean,
            tank_share={k: v / total for k, v in tanks.items()},
            rng=self.rng(site.id, "demand"),
        )
        if site.id in self.reservoirs:
            self.reservoirs[site.id][1].inflow_m3h = BASEFLOW_SHARE * mean

    def _build_car_park(self, site: Site, station: Station) -> None:
        lot = next((a for a in station.assets if a.kind == AssetKind.PARKING_LOT), None)
        if lot is None:
            return  # a car-park station of other equipment only
        spaces = lot.ratings.spaces or 100
        regular_share, peak = PARKING_TRAFFIC.get(site.id, DEFAULT_PARKING_TRAFFIC)
        gates = {
            a.id: GateModel(id=a.id, lanes=list(a.lanes), closed_hours=a.closed_hours)
            for a in station.assets
            if a.kind == AssetKind.BARRIER_GATE
        }
        model = ParkingLotModel(
            lot_id=lot.id,
            capacity=spaces,
            regulars=round(spaces * regular_share),
            visitor_peak_per_h=peak,
            gates=gates,
            rng=self.rng(site.id, station.id, lot.id),
            utc_offset_h=self.utc_offset_h[site.id],
        )
        model.start(self.t_ms)
        self.car_parks[(site.id, station.id)] = model
        self.models[(site.id, station.id, lot.id)] = model
        for gate_id, gate in gates.items():
            self.models[(site.id, station.id, gate_id)] = gate

    def step(self, dt_s: float) -> list[tuple[tuple[str, str], DeviceMessage]]:
        """Advance the world by dt_s; return the MQTT device messages it produced."""
        for site_id, demand in self.demand.items():
            demand.advance()
            factor = diurnal_demand_factor(hour_of_day(self.t_ms, self.utc_offset_h[site_id]))
            for tkey, share in demand.tank_share.items():
                tank = self.models[tkey]
                assert isinstance(tank, TankModel)
                burst = self.demand_multiplier.get(tkey, 1.0)
                tank.demand_m3h = demand.mean_m3h * share * factor * demand.wobble * burst
        drawn: dict[str, float] = {}
        for (site_id, _), station in self.stations.items():
            ambient = ambient_temp_c(self.t_ms, self.utc_offset_h[site_id])
            station.advance(dt_s, self.t_ms, ambient)
            drawn[site_id] = drawn.get(site_id, 0.0) + station.flow_m3h
        for site_id, (_, reservoir) in self.reservoirs.items():
            reservoir.drawdown_m3h = drawn.get(site_id, 0.0)
            reservoir.advance(dt_s, self.t_ms)
        messages: list[tuple[tuple[str, str], DeviceMessage]] = []
        for key, lot in self.car_parks.items():
            messages.extend((key, m) for m in lot.advance(self.t_ms, dt_s))
        for (site_id, station_id, _), model in self.generated.items():
            messages.extend(((site_id, station_id), m) for m in model.advance(dt_s, self.t_ms))
        self.t_ms += round(dt_s * 1000)
        return messages

    def values(self, key: AssetKey) -> dict[str, Value]:
        """The physical state of a polled (Modbus) asset as its profile's signals."""
        model = self.models[key]
        if isinstance(model, CAR_PARK_MODELS) or (
            isinstance(model, RoleSignalModel) and model.publishes
        ):
            raise KeyError(f"{'/'.join(key)} publishes over MQTT; it has no register image")
        return model.values()


def _utc_offset_h(tz: str, t_ms: int) -> float:
    offset = datetime.fromtimestamp(t_ms / 1000, UTC).astimezone(ZoneInfo(tz)).utcoffset()
    return offset.total_seconds() / 3600.0 if offset else 0.0


def _pump(asset: Asset, rng: random.Random) -> PumpModel:
    r = asset.ratings
    motor_kw = r.motor_kw or 10.0
    head = r.rated_head_m or 50.0
    flow = r.rated_flow_m3h or motor_kw * 0.72 * 3600 / (9.81 * head)
    pump = PumpModel(
        curve=PumpCurve(flow, head),
        motor_kw=motor_kw,
        voltage_v=r.voltage_v or 380.0,
        rng=rng,
        model_name=asset.model or "VFD-PUMP-1",
        available=asset.status is not AssetStatus.OUT_OF_SERVICE,
    )
    pump.run_hours = round(rng.uniform(4000, 30000), 1)  # counters of a used machine
    pump.starts = rng.randrange(400, 4000)
    pump.bearing_temp_c = 18.0
    return pump


def _tank(asset: Asset, rng: random.Random, station: Station) -> TankModel:
    return TankModel(
        capacity_m3=asset.ratings.capacity_m3 or 100.0,
        height_m=asset.ratings.height_m or 3.0,
        rng=rng,
    )


def _pump_order(station: Station, pumps: dict[str, PumpModel]) -> list[str]:
    preferred = [p for p in (station.control.pump_order if station.control else []) if p in pumps]
    return preferred + [p for p in pumps if p not in preferred]
