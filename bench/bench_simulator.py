"""How fast the simulators run and how much they cost.

Prints: physics speed for the whole demo site (simulated seconds per wall second at a
1 s step), feed recording rate, Modbus requests per second one client gets from a
simulated station, and the RSS of a process serving the whole demo site.

    .venv/bin/python -m bench.bench_simulator
"""

from __future__ import annotations

import asyncio
import io
import time

from pymodbus.client import AsyncModbusTcpClient

from bench.common import DEMO, memory_mb, print_header
from facility.config import load_site_config
from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.feed import record
from simulators.runner import SiteRunner

START_MS = 1780264800000


def physics_speed() -> float:
    sim = Simulation(load_site_config(DEMO), seed=1, start_ms=START_MS, step_s=1.0)
    t0 = time.perf_counter()
    sim.advance_to(START_MS + 6 * 3600 * 1000)
    return 6 * 3600 / (time.perf_counter() - t0)


def record_rate() -> tuple[float, int]:
    sim = Simulation(load_site_config(DEMO), seed=1, start_ms=START_MS, step_s=5.0)
    out = io.StringIO()
    t0 = time.perf_counter()
    count = record(sim, out, duration_s=6 * 3600, sample_s=10)
    return count / (time.perf_counter() - t0), len(out.getvalue())


async def modbus_rate(seconds: float = 3.0) -> tuple[float, float]:
    config = load_site_config(DEMO)
    sim = Simulation(config, seed=1, start_ms=START_MS)
    runner = SiteRunner(config, sim, SimClock(START_MS, speed=60.0), any_port=True)
    await runner.start()
    endpoint, unit = runner.endpoint_of(("fengshou", "xiba", "pump_1"))
    ticker = asyncio.create_task(runner.run(None))
    client = AsyncModbusTcpClient("127.0.0.1", port=endpoint.server.port)
    await client.connect()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await client.read_input_registers(0, count=16, device_id=unit)
        count += 1
    rate = count / (time.perf_counter() - t0)
    client.close()
    rss_mb = memory_mb()
    ticker.cancel()
    await runner.stop()
    return rate, rss_mb


def main() -> None:
    print_header()
    reads, rss = asyncio.run(modbus_rate())  # first: the RSS is this process's, now
    speed = physics_speed()
    print(
        f"physics, whole demo site, 1 s step: {speed:,.0f} simulated s per wall s "
        f"({speed / 86400 * 60:.1f} simulated days per wall minute)"
    )
    rate, size = record_rate()
    print(
        f"feed recording, 5 s step, 10 s samples: {rate:,.0f} records/s, "
        f"{size / 6 / 1e6:.1f} MB per simulated hour"
    )
    print(f"Modbus TCP, one client, 16-register reads, site ticking at 60x: {reads:,.0f} req/s")
    print(f"RSS serving the whole demo site (13 stations, 11 buses): {rss:.0f} MB")


if __name__ == "__main__":
    main()
