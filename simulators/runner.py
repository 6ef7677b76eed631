"""Run a simulated site live: Modbus servers per bus, MQTT devices, a simulated clock.

Every tick the runner moves its source (physics or a replayed feed) to the simulated
clock's time, re-encodes each polled device's registers, publishes what MQTT devices
sent, and applies communication faults and link cuts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from facility.config import SiteConfig
from facility.profile import ModbusProfile, MqttProfile, Table
from facility.registers import RegisterImage
from facility.site import Broker, Bus, Transport
from simulators.clock import SimClock
from simulators.engine import Advance, FeedSource
from simulators.modbus_server import BusServer
from simulators.mqtt_devices import MqttDevicePublisher
from simulators.netlink import LinkProxy
from simulators.world import AssetKey

log = logging.getLogger(__name__)


class DeviceClock(StrEnum):
    """What simulated MQTT devices stamp their messages with."""

    SIMULATED = "simulated"
    REAL = "real"


LIVE_TABLES = (Table.COIL, Table.DISCRETE, Table.INPUT)  # holding registers are settings


def live_tables(profile: ModbusProfile) -> tuple[Table, ...]:
    """The tables re-encoded every tick. Holding registers hold settings a client may
    write (kept as written), unless the device writes none there: then they are its
    measurements (many meters and transmitters map readings to holding registers)."""
    settings = any(s.table is Table.HOLDING and s.access == "rw" for s in profile.signals)
    return LIVE_TABLES if settings else (*LIVE_TABLES, Table.HOLDING)


@dataclass
class Endpoint:
    """Where one simulated bus listens, and which device answers on which unit id."""

    station: tuple[str, str]
    bus: Bus
    server: BusServer
    units: dict[int, AssetKey]

    @property
    def address(self) -> str:
        if self.bus.transport is Transport.RTU:
            return f"rtu {self.bus.serial_port} {self.bus.baudrate} {self.bus.parity}"
        kind = "rtu-over-tcp" if self.bus.transport is Transport.RTU_OVER_TCP else "tcp"
        return f"{kind} {self.bus.host}:{self.server.port}"


@dataclass
class SiteRunner:
    config: SiteConfig
    source: FeedSource
    clock: SimClock
    any_port: bool = False  # bind every TCP bus to a free port (tests, parallel runs)
    broker: Broker | None = None  # override every site's broker
    uplink_target: tuple[str, int] | None = None  # central broker behind per-gateway links
    tick_s: float = 0.2
    # what MQTT devices put in `ts`: simulated time, or the real time at which the
    # simulated clock showed it (the gateway checks a device clock against its own)
    device_clock: DeviceClock = DeviceClock.SIMULATED
    endpoints: list[Endpoint] = field(default_factory=list)
    publishers: dict[tuple[str, int], MqttDevicePublisher] = field(default_factory=dict)
    links: dict[AssetKey, LinkProxy] = field(default_factory=dict)
    on_advance: list[Callable[[Advance], None]] = field(default_factory=list)
    _images: dict[AssetKey, tuple[Endpoint, int, RegisterImage]] = field(default_factory=dict)
    _mqtt_sites: dict[str, tuple[str, int]] = field(default_factory=dict)
    _settings_pushed: bool = False
    mqtt_latest: dict[tuple[str, str, str, str], dict[str, object]] = field(default_factory=dict)
    _last_device_ms: dict[tuple[str, str, str], int] = field(default_factory=dict)

    async def start(self) -> None:
        for site in self.config.sites:
            for station in site.stations:
                for bus in station.buses:
                    await self._start_bus(site.id, station.id, bus)
            broker = self.broker or site.broker
            self._mqtt_sites[site.id] = (broker.host, broker.port)
        for host, port in set(self._mqtt_sites.values()):
            if self._has_mqtt_devices():
                publisher = MqttDevicePublisher(host, port, client_id=f"sim-devices-{port}")
                publisher.start()
                self.publishers[(host, port)] = publisher
        if self.uplink_target is not None:
            for ref in self.config.assets():
                if ref.asset.kind == "gateway":
                    proxy = LinkProxy(*self.uplink_target)
                    await proxy.start()
                    self.links[ref.key] = proxy
        await self.tick()

    def _has_mqtt_devices(self) -> bool:
        return any(
            isinstance(self.config.profiles.get(r.asset.profile or ""), MqttProfile)
            for r in self.config.assets()
        )

    async def _start_bus(self, site_id: str, station_id: str, bus: Bus) -> None:
        if self.any_port and bus.transport is not Transport.RTU:
            bus = bus.model_copy(update={"port": 0})
        station = self.config.site(site_id).station(station_id)
        images: dict[int, RegisterImage] = {}
        units: dict[int, AssetKey] = {}
        strict: set[int] = set()
        for asset in station.assets:
            if asset.modbus is None or asset.modbus.bus != bus.id:
                continue
            profile = self.config.profiles[asset.profile or ""]
            assert isinstance(profile, ModbusProfile)
            images[asset.modbus.unit_id] = RegisterImage(profile)
            units[asset.modbus.unit_id] = (site_id, station_id, asset.id)
            if (asset.modbus.unmapped_registers or profile.unmapped_registers) == "refuse":
                strict.add(asset.modbus.unit_id)
        server = BusServer(bus, images, strict=strict)
        endpoint = Endpoint((site_id, station_id), bus, server, units)
        for unit, key in units.items():
            self._images[key] = (endpoint, unit, images[unit])
        await server.start()
        self.endpoints.append(endpoint)

    async def tick(self) -> Advance:
        """Bring every device up to the simulated clock's time."""
        step = self.source.advance_to(self.clock.now_ms())
        for key, (endpoint, unit, image) in self._images.items():
            values = self.source.values(key)
            if not values:
                continue
            image.write_values(values)
            live = live_tables(image.profile) if self._settings_pushed else tuple(Table)
            await endpoint.server.push(unit, live)
        self._settings_pushed = True
        self._apply_comms()
        self._publish(step)
        for key, proxy in self.links.items():
            proxy.set_up(key not in self.source.links_down)
        for callback in self.on_advance:
            callback(step)
        return step

    def _apply_comms(self) -> None:
        for endpoint in self.endpoints:
            endpoint.server.faults = {
                unit: self.source.comms[key]
                for unit, key in endpoint.units.items()
                if key in self.source.comms
            }

    def _publish(self, step: Advance) -> None:
        for (site_id, station_id), msg in step.messages:
            site = self.config.site(site_id)
            asset = site.station(station_id).asset(msg.asset)
            profile = self.config.profiles[asset.profile or ""]
            if not isinstance(profile, MqttProfile):
                continue
            topic = profile.topic_for(msg.topic, site_id, station_id, asset.id)
            payload = self._on_device_clock(site_id, msg.asset, msg.topic, msg.payload)
            self.mqtt_latest[(site_id, station_id, asset.id, msg.topic)] = payload
            self.publishers[self._mqtt_sites[site_id]].publish(topic, payload)

    def _on_device_clock(
        self, site_id: str, asset: str, topic: str, payload: dict[str, object]
    ) -> dict[str, object]:
        ts = payload.get("ts")
        if self.device_clock is DeviceClock.SIMULATED or not isinstance(ts, int):
            return payload
        # At 60x two events a few simulated ms apart map to one real ms; a device's
        # millisecond clock never stamps two of its messages alike.
        key = (site_id, asset, topic)
        real = max(self.clock.real_ms(ts), self._last_device_ms.get(key, 0) + 1)
        self._last_device_ms[key] = real
        return {**payload, "ts": real}

    async def run(self, duration_s: float | None = None) -> None:
        """Tick until the simulated duration has passed (or forever)."""
        end = None if duration_s is None else self.clock.start_ms + int(duration_s * 1000)
        while end is None or self.source.t_ms < end:
            await self.tick()
            await asyncio.sleep(self.tick_s)

    async def stop(self) -> None:
        for publisher in self.publishers.values():
            await publisher.drain(2.0)
            await publisher.stop()
        for endpoint in self.endpoints:
            await endpoint.server.stop()
        for proxy in self.links.values():
            await proxy.stop()

    def mqtt_devices(self, broker: tuple[str, int]) -> list[str]:
        """The MQTT devices that publish to this broker, as site/station/asset."""
        return [
            ref.path
            for ref in self.config.assets()
            if self._mqtt_sites.get(ref.site.id) == broker
            and isinstance(self.config.profiles.get(ref.asset.profile or ""), MqttProfile)
        ]

    def endpoint_of(self, key: AssetKey) -> tuple[Endpoint, int]:
        endpoint, unit, _ = self._images[key]
        return endpoint, unit
