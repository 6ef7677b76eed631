"""The site model: sites -> stations -> assets, and the asset register.

A site is one operator's system (a reservoir with its pump stations and tanks, or a car
park). A station is one place with one gateway box. An asset is one piece of equipment
with its register entry (model, ratings, owner, status, network address).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from facility.simspec import SignalSim

Ident = str  # validated by IDENT_PATTERN
IDENT_PATTERN = r"^[a-z][a-z0-9_]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


Identified = TypeVar("Identified", bound=_Identified)


def by_id(items: Iterable[Identified], wanted: str) -> Identified:
    """The item whose id is `wanted`; a KeyError naming it when there is none."""
    for item in items:
        if item.id == wanted:
            return item
    raise KeyError(wanted)


class AssetKind(StrEnum):
    """The built-in kinds with physics in the simulators and figures of their own in the
    reports. An asset's kind may be any kind declared in YAML (facility/kind.py); these
    are constants to compare `Asset.kind` with."""

    PUMP = "pump"
    TRANSFORMER = "transformer"
    TANK = "tank"
    RESERVOIR = "reservoir"
    WATER_QUALITY = "water_quality"
    BARRIER_GATE = "barrier_gate"
    PARKING_LOT = "parking_lot"
    GATEWAY = "gateway"
    GENERIC = "generic"


# The built-in kinds the simulators have physics for and the reports figures of their own
# for; every other kind is simulated and reported by its signals' roles.
MODELLED_KINDS = frozenset(
    {
        AssetKind.PUMP,
        AssetKind.TANK,
        AssetKind.TRANSFORMER,
        AssetKind.RESERVOIR,
        AssetKind.WATER_QUALITY,
        AssetKind.PARKING_LOT,
        AssetKind.BARRIER_GATE,
        AssetKind.GATEWAY,
    }
)


class AssetStatus(StrEnum):
    IN_SERVICE = "in_service"
    STANDBY = "standby"
    OUT_OF_SERVICE = "out_of_service"


class Transport(StrEnum):
    TCP = "tcp"  # Modbus TCP (MBAP framing)
    RTU = "rtu"  # Modbus RTU on a local serial port
    RTU_OVER_TCP = "rtu_over_tcp"  # RTU framing through a serial-to-Ethernet converter


class Bus(Strict):
    """One physical Modbus bus: a TCP endpoint or a serial line."""

    id: Ident = Field(pattern=IDENT_PATTERN)
    transport: Transport
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=0, le=65535)
    serial_port: str = ""
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: float = Field(default=1.0, gt=0)  # per request
    pause_ms: float = Field(default=0.0, ge=0)  # between requests (slow RS-485 devices)
    connect_pause_ms: float = Field(default=0.0, ge=0)  # after (re)connecting
    max_gap: int = Field(default=8, ge=0)  # registers read through to merge requests

    @model_validator(mode="after")
    def _serial_needs_port(self) -> Bus:
        if self.transport is Transport.RTU and not self.serial_port:
            raise ValueError("transport rtu needs serial_port (e.g. /dev/ttyUSB0)")
        return self


class ModbusAddress(Strict):
    bus: Ident
    unit_id: int = Field(ge=1, le=247)
    poll_s: float | None = Field(default=None, gt=0)  # None: the site's gateway default
    # this device's answer to reads of registers its map lacks (None: the profile's)
    unmapped_registers: Literal["answer", "refuse"] | None = None


class Ratings(Strict):
    """Nameplate figures. Only the ones that apply to the asset kind are set."""

    motor_kw: float | None = Field(default=None, gt=0)
    rated_flow_m3h: float | None = Field(default=None, gt=0)
    rated_head_m: float | None = Field(default=None, gt=0)
    kva: float | None = Field(default=None, gt=0)
    voltage_v: float | None = Field(default=None, gt=0)
    capacity_m3: float | None = Field(default=None, gt=0)
    height_m: float | None = Field(default=None, gt=0)
    area_km2: float | None = Field(default=None, gt=0)
    spaces: int | None = Field(default=None, gt=0)
    treatment_m3h: float | None = Field(default=None, gt=0)


class Limits(Strict):
    """Alarm levels of one signal, in its engineering unit."""

    low_low: float | None = None
    low: float | None = None
    high: float | None = None
    high_high: float | None = None


class Asset(Strict):
    id: Ident = Field(pattern=IDENT_PATTERN)
    kind: str = Field(pattern=IDENT_PATTERN)  # a kind id (facility/kinds/, site kinds/)
    name: str = ""
    profile: str | None = None  # device profile name; None only for gateways
    model: str = ""
    ratings: Ratings = Ratings()
    owner: str = ""
    install_year: int | None = Field(default=None, ge=1950, le=2100)
    location: str = ""
    status: AssetStatus = AssetStatus.IN_SERVICE
    modbus: ModbusAddress | None = None
    lanes: list[Literal["in", "out"]] = Field(default_factory=list)  # barrier gates only
    closed_hours: tuple[int, int] | None = None  # gate shut from hour to hour (local time)
    limits: dict[str, Limits] = Field(default_factory=dict)
    # signal -> how the simulator makes it up (overrides the profile's; simulators.md)
    simulate: dict[str, SignalSim] = Field(default_factory=dict)
    notes: str = ""

    @field_validator("kind", mode="before")
    @classmethod
    def _plain_kind(cls, value: object) -> object:
        # AssetKind members are str too; stored as plain text, so `==` is the one test
        return value.value if isinstance(value, AssetKind) else value


class LevelControl(Strict):
    """How a station runs its pumps: start at a low tank level, stop at a high one."""

    lead_tank: Ident
    start_level_m: float = Field(gt=0)
    stop_level_m: float = Field(gt=0)
    duty_pumps: int = Field(default=1, ge=1)  # pumps started together
    pump_order: list[Ident] = Field(default_factory=list)  # preference; empty: asset order

    @model_validator(mode="after")
    def _order(self) -> LevelControl:
        if self.start_level_m >= self.stop_level_m:
            raise ValueError("start_level_m must be below stop_level_m")
        return self


class Station(Strict):
    id: Ident = Field(pattern=IDENT_PATTERN)
    name: str = ""
    kind: Literal["pump_station", "intake", "booster", "car_park"] = "pump_station"
    owner: str = ""
    mode: Literal["normal", "standby"] = "normal"  # standby: drought mode only
    location: str = ""
    buses: list[Bus] = Field(default_factory=list)
    control: LevelControl | None = None
    feeds: list[Ident] = Field(default_factory=list)  # tanks this station fills
    static_head_m: float | None = Field(default=None, gt=0)  # lift to the tanks (assumed)
    drive_hz: float = Field(default=50.0, gt=0, le=60)  # VFD speed the station runs at
    assets: list[Asset] = Field(default_factory=list)

    def asset(self, asset_id: str) -> Asset:
        return by_id(self.assets, asset_id)

    def bus(self, bus_id: str) -> Bus:
        return by_id(self.buses, bus_id)


class Broker(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=0, le=65535)


class Uplink(Strict):
    """The central broker a site's gateways deliver to.

    username, cert_file and key_file may name the gateway: `{site}` and `{station}` are
    replaced by its ids, so each station has its own credential (`facility broker config`
    writes the broker's side). The password comes from the environment variable
    password_env, one per station on its box (systemd: /etc/facility/gateway-SITE-STATION.env).
    """

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=0, le=65535)
    tls: bool = False
    ca_file: str | None = None
    username: str | None = None
    password_env: str | None = None  # name of the environment variable holding it
    cert_file: str | None = None  # a client certificate (TLS client authentication)
    key_file: str | None = None

    @field_validator("username", "cert_file", "key_file")
    @classmethod
    def _placeholders(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.format(site="s", station="s")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"only {{site}} and {{station}} may stand in braces, not {exc}"
                ) from None
        return value

    @model_validator(mode="after")
    def _pair(self) -> Uplink:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    def username_for(self, site: str, station: str) -> str | None:
        return None if self.username is None else self.username.format(site=site, station=station)

    def cert_chain_for(self, site: str, station: str) -> tuple[str, str] | None:
        if self.cert_file is None or self.key_file is None:
            return None
        names = {"site": site, "station": station}
        return self.cert_file.format(**names), self.key_file.format(**names)


class GatewaySettings(Strict):
    """How a site's gateways poll, buffer and deliver (defaults suit the demo)."""

    poll_s: float = Field(default=5.0, gt=0)
    report_by_exception: bool = False
    max_silence_s: float = Field(default=300.0, gt=0)  # with report by exception
    health_every_s: float = Field(default=10.0, gt=0)
    outbox_max_mb: float = Field(default=256.0, gt=0)
    outbox_max_age_h: float = Field(default=168.0, gt=0)
    outbox_sync: Literal["full", "normal", "off"] = "normal"
    batch_max_readings: int = Field(default=5000, gt=0)
    in_flight_batches: int = Field(default=8, gt=0)
    ack_timeout_s: float = Field(default=30.0, gt=0)
    backfill_readings_per_s: float = Field(default=100000.0, gt=0)
    live_window_s: float = Field(default=10.0, gt=0)  # younger readings take the live lane
    # Prometheus /metrics on this local port (off when unset; `--metrics-port` overrides)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    uplink: Uplink = Uplink()


class Site(Strict):
    id: Ident = Field(pattern=IDENT_PATTERN)
    name: str = ""
    kind: Literal["water_supply", "parking"]
    timezone: str = "Asia/Shanghai"
    owner: str = ""
    households: int | None = Field(default=None, ge=0)
    population: int | None = Field(default=None, ge=0)
    industrial_users: list[str] = Field(default_factory=list)
    # litres per person per day; the source gives none (assumption, see the site file)
    demand_l_per_person_day: float = Field(default=100.0, gt=0)
    broker: Broker = Broker()
    gateway: GatewaySettings = GatewaySettings()
    stations: list[Station] = Field(min_length=1)

    def station(self, station_id: str) -> Station:
        return by_id(self.stations, station_id)


class AssetRef(BaseModel):
    """An asset with the place it sits in: the tags of every reading it produces."""

    model_config = ConfigDict(frozen=True)

    site: Site
    station: Station
    asset: Asset

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.site.id, self.station.id, self.asset.id)

    @property
    def path(self) -> str:
        return "/".join(self.key)
