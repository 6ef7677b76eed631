"""The demo site simulated for the benches that run real `facility gateway run`
processes (bench_gateway section 3, bench_footprint): the site on free ports, `facility
simulate --speed 60` serving it, a private Mosquitto and an acking receiver."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import acking_receiver
from bench.common import (
    FACILITY,
    Child,
    demo_site_on_free_ports,
    start_broker,
    stop_service,
    wait_for_port,
)
from facility.config import SiteConfig, load_site_config
from wiring.services import Mosquitto


def largest_stations(config: SiteConfig) -> dict[str, tuple[int, int]]:
    """The station with the most devices and the one with the most signals:
    `site/station` -> (devices, signals)."""
    sizes: dict[str, tuple[int, int]] = {}
    for site in config.sites:
        for station in site.stations:
            profiles = [config.profiles[a.profile] for a in station.assets if a.profile]
            sizes[f"{site.id}/{station.id}"] = (
                len(profiles),
                sum(len(p.signals) for p in profiles),
            )
    by_devices = max(sizes, key=lambda k: sizes[k])
    by_signals = max(sizes, key=lambda k: (sizes[k][1], sizes[k][0]))
    return {name: sizes[name] for name in dict.fromkeys((by_devices, by_signals))}


@dataclass
class SimulatedDemo:
    work: Path
    site_dir: Path
    config: SiteConfig
    broker: Mosquitto
    receiver: Child
    simulator: Child
    children: list[Child] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    @property
    def stations(self) -> dict[str, tuple[int, int]]:
        return largest_stations(self.config)

    def start_gateway(self, name: str, facility: Path = FACILITY) -> Child:
        """`facility gateway run` for station `site/station`, polling the simulator and
        delivering to the receiver; stopped with the rest."""
        args = [str(facility), "gateway", "run", "--site", str(self.site_dir), "--gateway", name]
        args += ["--data-dir", str(self.work / name.replace("/", "-"))]
        args += ["--uplink", self.address, "--devices-broker", self.address]
        args += ["--log-level", "warning"]
        gateway = Child(f"gateway-{name.replace('/', '-')}", args, self.work, status=False)
        self.children.append(gateway)
        return gateway


@contextlib.contextmanager
def simulated_demo(work: Path) -> Iterator[SimulatedDemo]:
    """The demo simulated, its largest stations' buses listening; all stopped at exit."""
    site_dir = demo_site_on_free_ports(work / "demo-site")
    config = load_site_config(site_dir)
    broker = start_broker(work / "mqtt")
    children: list[Child] = []
    try:
        address = f"127.0.0.1:{broker.port}"
        receiver = Child("receiver", acking_receiver.command(broker.port), work)
        children.append(receiver)
        sim_args = [str(FACILITY), "simulate", str(site_dir), "--speed", "60", "--plain"]
        sim = Child("simulate", [*sim_args, "--broker", address], work, status=False)
        children.append(sim)
        receiver.wait_for("ready")
        demo = SimulatedDemo(work, site_dir, config, broker, receiver, sim, children)
        for name in demo.stations:
            site_id, _, station_id = name.partition("/")
            for bus in config.site(site_id).station(station_id).buses:
                if not wait_for_port(bus.port, 30.0):
                    raise RuntimeError(f"simulator not listening on {bus.port}:\n{sim.log_tail()}")
        yield demo
    finally:
        for child in reversed(children):
            child.stop()
        stop_service(broker)
