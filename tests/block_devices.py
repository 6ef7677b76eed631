"""Stations of identical Modbus devices, each one block of uint16 registers: what the
overload tests and the gateway benches poll at high rates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from facility.codec import DataType
from facility.config import SiteConfig
from facility.profile import ModbusProfile, ModbusSignal, Table
from facility.site import Asset, AssetKind, Bus, GatewaySettings, ModbusAddress, Site, Station


def uint16_block(name: str, registers: int, table: Table) -> ModbusProfile:
    """`registers` consecutive uint16 signals r0.. (as wide as the last one's number)
    from address 0: one read a poll."""
    width = len(str(registers - 1))
    return ModbusProfile(
        profile=name,
        protocol="modbus",
        signals=[
            ModbusSignal(name=f"r{i:0{width}d}", table=table, address=i, type=DataType.UINT16)
            for i in range(registers)
        ],
    )


def block_station(
    tmp: Path,
    ids: tuple[str, str],
    profile: ModbusProfile,
    buses: Sequence[Bus],
    devices: Sequence[tuple[str, str, int]],
    settings: GatewaySettings,
) -> SiteConfig:
    """A site `ids` (site, station) of one station: its gateway, and a device of
    `profile` for each (asset id, bus id, unit id) of `devices`."""
    assets = [Asset(id="gateway", kind=AssetKind.GATEWAY)] + [
        Asset(
            id=asset,
            kind=AssetKind.PUMP,
            profile=profile.profile,
            modbus=ModbusAddress(bus=bus, unit_id=unit),
        )
        for asset, bus, unit in devices
    ]
    site = Site(
        id=ids[0],
        kind="water_supply",
        gateway=settings,
        stations=[Station(id=ids[1], buses=list(buses), assets=assets)],
    )
    return SiteConfig(root=tmp, sites=[site], profiles={profile.profile: profile})
