"""`facility demo --scenario` with a gateway link fault: the demo's gateways reach the
broker through the cuttable links, so the cut station goes dark (uplink DOWN, outbox
filling, a gateway_offline alarm) while the others deliver, and it catches up after.
Real Mosquitto, InfluxDB, Modbus simulators, gateways and the ingest with alarms, in
one process (the README command's own `Demo`), on two stations."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import yaml

from facility.config import SiteConfig
from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.scenario import load_scenario
from tests.conftest import ROOT
from tests.integration._wire import subset_config
from wiring.demo import Demo, GatewayRow
from wiring.services import free_port

START_MS = 1_780_264_800_000  # 2026-06-01 06:00 +08:00
CUT = "chaheihai/chaheihai_intake"
KEPT = "huilongba/wuxiao"
SCENARIO = f"""
scenario: link_cut
faults:
  - {{kind: gateway_link_down, target: {CUT}/gateway, at: 6m, duration: 30m,
     expect: {{alarm: gateway_offline, priority: high, within: 2m}}}}
"""


def on_free_ports(config: SiteConfig) -> SiteConfig:
    """The stations' Modbus endpoints moved to free ports: the demo site's own (15021...)
    may be held by another demo running on the machine."""
    sites = []
    for site in config.sites:
        stations = []
        for station in site.stations:
            buses = [b.model_copy(update={"port": free_port()}) for b in station.buses]
            stations.append(station.model_copy(update={"buses": buses}))
        sites.append(site.model_copy(update={"stations": stations}))
    return dataclasses.replace(config, sites=sites)


def fast_deadman_rules(folder: Path) -> Path:
    """The demo rules with the gateway deadman at 8 s instead of 60 s: the gateways
    deliver every poll (5 s), so a healthy one is never that quiet."""
    rules = yaml.safe_load((ROOT / "deploy" / "alarms" / "rules.yaml").read_text())
    rules["rules"]["gateway_offline"]["silent_for"] = "8s"
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


async def test_a_cut_link_takes_its_station_offline_and_only_it(
    demo_config: SiteConfig, tmp_path: Path
) -> None:
    config = on_free_ports(
        subset_config(demo_config, {"chaheihai": ["chaheihai_intake"], "huilongba": ["wuxiao"]})
    )
    scenario_file = tmp_path / "link_cut.yaml"
    scenario_file.write_text(SCENARIO)
    scenario = load_scenario(scenario_file, config)
    source = Simulation(config, seed=1, start_ms=START_MS, scenario=scenario)
    clock = SimClock(START_MS, speed=120.0)  # the cut lasts 15 real seconds
    show = Demo(config, source, clock, tmp_path / "run", free_port(), None,
                fast_deadman_rules(tmp_path), None, 0)  # fmt: skip
    seen: dict[str, set[str]] = {CUT: set(), KEPT: set()}  # once first connected
    deepest = 0

    async def watch() -> None:
        nonlocal deepest
        while True:
            for row in show.rows():
                if seen[row.gateway] or row.uplink == "up":
                    seen[row.gateway].add(row.uplink)
                if row.gateway == CUT:
                    deepest = max(deepest, row.outbox)
            await asyncio.sleep(0.5)

    await show.start()
    watcher = asyncio.create_task(watch())
    try:
        await show.run(duration_s=40 * 60)
        await until_drained(show, CUT)
    finally:
        watcher.cancel()
        await show.stop()
    assert seen[CUT] == {"up", "DOWN"}, "the cut gateway's uplink went down and came back"
    assert seen[KEPT] == {"up"}, "the other gateway's link was never cut"
    assert deepest > 100, "the cut gateway kept polling into its outbox"
    raised = [e for e in show.events if "ALARM RAISED" in e and "gateway_offline" in e]
    assert [e.split()[4].rstrip(":") for e in raised] == [f"{CUT}/gateway/gateway_offline"], (
        show.events
    )
    cleared = [e for e in show.events if "ALARM CLEARED" in e and "gateway_offline" in e]
    assert len(cleared) == 1, show.events


async def until_drained(show: Demo, gateway: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row: GatewayRow = next(r for r in show.rows() if r.gateway == gateway)
        if row.uplink == "up" and row.outbox == 0:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{gateway}'s outbox did not drain after the cut")
