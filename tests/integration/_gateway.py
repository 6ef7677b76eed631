"""Wiring for gateway tests: a simulated site served on free ports, a gateway pointed at
it, a private broker and the test receiver in between. All real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

from facility.config import SiteConfig
from facility.site import Site
from facility.wire import Reading
from gateway.daemon import Gateway
from simulators.runner import SiteRunner

FAST = {"poll_s": 0.5, "health_every_s": 1.0, "ack_timeout_s": 3.0}


def gateway_process(
    site_dir: Path,
    gateway: str,
    data_dir: Path,
    uplink: str,
    *options: str,
    stderr: int = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`facility gateway run` as its own process, its stdout discarded."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wiring.cli",
            "gateway",
            "run",
            "--site",
            str(site_dir),
            "--gateway",
            gateway,
            "--data-dir",
            str(data_dir),
            "--uplink",
            uplink,
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env=env,
    )


def one_station(config: SiteConfig, site_id: str, station_id: str, **gateway: object) -> SiteConfig:
    """The config cut down to one station, with test-speed gateway settings."""
    site = config.site(site_id)
    settings = site.gateway.model_copy(update={**FAST, **gateway})
    cut = site.model_copy(update={"stations": [site.station(station_id)], "gateway": settings})
    return dataclasses.replace(config, sites=[cut])


def served_at(config: SiteConfig, runner: SiteRunner) -> SiteConfig:
    """The same config with every bus pointing at the port the simulator really bound."""
    ports = {(e.station, e.bus.id): e.server.port for e in runner.endpoints}
    sites: list[Site] = []
    for site in config.sites:
        stations = []
        for station in site.stations:
            buses = [
                b.model_copy(update={"port": ports.get(((site.id, station.id), b.id), b.port)})
                for b in station.buses
            ]
            stations.append(station.model_copy(update={"buses": buses}))
        sites.append(site.model_copy(update={"stations": stations}))
    return dataclasses.replace(config, sites=sites)


class Recorder:
    """Keeps every reading the gateway acquired, on its way into the outbox."""

    def __init__(self, gateway: Gateway) -> None:
        self.readings: list[Reading] = []
        inner = gateway.acquired

        def acquired(readings: list[Reading]) -> list[Reading]:
            self.readings.extend(readings)
            return inner(readings)

        gateway.acquired = acquired  # type: ignore[method-assign]

    def keys(self, station: str, kind: str = "v") -> set[tuple[str, str, str, str, int]]:
        return {
            (station, r.kind, r.asset, r.signal, r.ts_ms) for r in self.readings if r.kind == kind
        }


def gateway_for(
    config: SiteConfig, site: str, station: str, data_dir: Path, broker_port: int
) -> Gateway:
    return Gateway(
        config,
        site,
        station,
        data_dir,
        uplink_address=("127.0.0.1", broker_port),
        devices_address=("127.0.0.1", broker_port),
    )


def recorded(gateway: Gateway) -> Recorder:
    """Starts the gateway with a Recorder on it, attached first so that it misses nothing."""
    recorder = Recorder(gateway)
    gateway.start()
    return recorder


async def record_for(
    seconds: float, gateway: Gateway, runner: SiteRunner, grace_s: float = 0.0
) -> Recorder:
    """What the gateway acquires from the served site in `seconds`; both stopped after.
    No grace by default: no ingest acknowledges what these gateways send, so a drain
    would wait out its whole grace (5 s) for acks that never come."""
    recorder = recorded(gateway)
    try:
        await asyncio.sleep(seconds)
    finally:
        await gateway.stop(grace_s)
        await runner.stop()
    return recorder
