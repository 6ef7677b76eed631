"""What the signal generator costs: devices without physics stepped through a day.

Builds the four devices of docs/your-own-devices.md (tests/own_devices.py: 24 signals,
every generator kind) 25 times over, steps them through a simulated day at the
engine's 1 s step, and reads their values once a simulated minute, as the runner does
more often; then a whole Simulation of the four devices (with its stand-in physics).

    .venv/bin/python -m bench.bench_generator
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import print_header
from facility.config import load_site_config
from simulators.engine import Simulation
from simulators.generator import GeneratedDevice, generated_device
from simulators.physics.common import seeded_rng
from tests.own_devices import write_site

START = 1_780_264_800_000
COPIES = 25
DAY_S = 86_400


def main() -> None:
    print_header()
    folder = write_site(Path(tempfile.mkdtemp()) / "site")
    config = load_site_config(folder)
    devices: list[GeneratedDevice] = []
    for copy in range(COPIES):
        for ref in config.assets():
            if ref.asset.profile is None:
                continue
            rng = seeded_rng(1, *ref.key, str(copy))
            device = generated_device(ref.key, ref.asset, config.profile_of(ref), set(), rng, START)
            assert device is not None
            devices.append(device)
    signals = sum(len(d.specs) for d in devices)
    t0 = time.perf_counter()
    for second in range(1, DAY_S + 1):
        for device in devices:
            device.step(1.0)
            if second % 60 == 0:
                device.values()
    took = time.perf_counter() - t0
    steps = len(devices) * DAY_S
    print(
        f"{len(devices)} devices, {signals} signals, one simulated day at 1 s: {took:.1f} s "
        f"({took / steps * 1e6:.1f} us a device step, {took / (signals * DAY_S) * 1e6:.2f} "
        f"us a signal step)"
    )
    sim = Simulation(config, seed=1, start_ms=START)
    t0 = time.perf_counter()
    sim.advance_to(START + DAY_S * 1000)
    took = time.perf_counter() - t0
    print(f"Simulation of the four devices, one day at 1 s: {took:.1f} s "
          f"({DAY_S / took:,.0f} simulated s per wall s)")  # fmt: skip


if __name__ == "__main__":
    main()
