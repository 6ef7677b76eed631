"""Alarm rule evaluations per second on one core, for the demo site's rule set.

Builds the batches the 13 demo gateways would send for two simulated hours (5 s polls,
every asset's values and device status, a pump trip and a tank overflow among them),
then times the alarm engine alone over them, and engine + alarm book (SQLite, every
transition committed) for the same feed.

    .venv/bin/python bench/bench_alarms.py [--hours 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from facility.config import SiteConfig, load_site_config
from facility.wire import Reading
from ingest.alarms.book import AlarmBook
from ingest.alarms.engine import AlarmEngine
from ingest.alarms.rules import load_rules
from simulators.engine import Simulation
from simulators.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "deploy" / "sites" / "demo"
RULES = ROOT / "deploy" / "alarms" / "rules.yaml"
POLL_MS = 5_000
Batch = tuple[str, str, list[Reading], int]


def feed(config: SiteConfig, hours: float) -> list[Batch]:
    scenario = load_scenario(DEMO / "scenarios" / "demo_incidents.yaml", config)
    assert scenario.start is not None
    start = int(scenario.start.timestamp() * 1000)
    sim = Simulation(config, seed=1, start_ms=start, scenario=scenario, step_s=5.0)
    batches: list[Batch] = []
    while sim.t_ms < start + hours * 3_600_000:
        sim.advance_to(sim.t_ms + POLL_MS)
        for site in config.sites:
            for station in site.stations:
                batches.append((site.id, station.id, poll(sim, site.id, station.id), sim.t_ms))
    return batches


def poll(sim: Simulation, site: str, station: str) -> list[Reading]:
    t = sim.t_ms
    out: list[Reading] = []
    for asset in sim.config.site(site).station(station).assets:
        if asset.modbus is None:
            continue
        key = (site, station, asset.id)
        out.append(Reading(asset.id, "comm_ok", t, key not in sim.comms, "g", "s"))
        out.append(Reading(asset.id, "exception_code", t, 0, "g", "s"))
        out += [Reading(asset.id, s, t, v) for s, v in sim.values(key).items()]
    return out


def run_engine(config: SiteConfig, batches: list[Batch]) -> tuple[float, int, int]:
    engine = AlarmEngine(load_rules(RULES, config), config)
    changes = 0
    began = time.process_time()
    for site, station, readings, t in batches:
        changes += len(engine.observe(site, station, readings, t))
    return time.process_time() - began, engine.evaluations, changes


def run_with_book(config: SiteConfig, batches: list[Batch]) -> tuple[float, int]:
    engine = AlarmEngine(load_rules(RULES, config), config)
    with tempfile.TemporaryDirectory() as folder:
        book = AlarmBook(Path(folder) / "alarms.sqlite")
        transitions = 0
        began = time.perf_counter()
        for site, station, readings, t in batches:
            for change in engine.observe(site, station, readings, t):
                transitions += len(book.apply(change))
        elapsed = time.perf_counter() - began
        book.close()
    return elapsed, transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours of feed")
    args = parser.parse_args()
    config = load_site_config(DEMO)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    batches = feed(config, args.hours)
    readings = sum(len(b[2]) for b in batches)
    rules = len(load_rules(RULES, config).bound)
    print(f"feed: {len(batches):,} batches, {readings:,} readings, {rules} bound rules")
    cpu_s, evaluations, changes = run_engine(config, batches)
    print(
        f"engine alone: {evaluations:,} rule evaluations in {cpu_s:.2f} s CPU = "
        f"{evaluations / cpu_s:,.0f} evaluations/s, {readings / cpu_s:,.0f} readings/s, "
        f"{cpu_s / readings * 1e6:.2f} µs a reading; {changes} condition changes"
    )
    wall_s, transitions = run_with_book(config, batches)
    print(
        f"engine + alarm book: {wall_s:.2f} s wall, {readings / wall_s:,.0f} readings/s, "
        f"{transitions} transitions committed"
    )


if __name__ == "__main__":
    main()
