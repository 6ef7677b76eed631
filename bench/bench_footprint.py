"""What the platform costs on a small box: CLI start-up, and a real gateway's start-up,
memory and CPU.

1. CLI start-up: wall time (median of 5) and peak RSS of `facility --help`, `facility
   gateway run --help` and `facility check` of the demo site.
2. `facility gateway run` for the demo's largest stations, polling `facility simulate
   --speed 60` over real Modbus TCP and delivering through a private Mosquitto to an
   acking ingest receiver: start-up (process start -> its retained "online" status on
   the broker; -> the first readings acknowledged), RSS after the run, CPU per reading.
3. What the gateway's RSS is made of: a fresh interpreter after importing the core
   libraries one by one, and the slowest imports of `gateway.daemon` (-X importtime).

    .venv/bin/python -m bench.bench_footprint [--seconds 20] [--facility PATH]

--facility measures another install's `facility` (e.g. a clean venv with only the
`gateway` extra); the simulator and the receiver always come from this checkout.
About 1 minute.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    DEMO,
    FACILITY,
    ROOT,
    import_rss_mb,
    memory_mb,
    print_header,
    print_summary,
)
from bench.common import verdict as met
from bench.simulated_demo import SimulatedDemo, simulated_demo

TARGET_HELP_S = 1.0
TARGET_RSS_MB = 60.0
TARGET_START_S = 1.5
# Assumption, not measured here: CPython on a Raspberry Pi 4 (Cortex-A72, 1.5 GHz) runs
# about 5x slower per core than this machine's server core (pyperformance-style suites
# put the Pi 4 at 4-6x); a Pi 5 (Cortex-A76, 2.4 GHz) about 2.5x.
PI4_SLOWDOWN = 5.0
PI5_SLOWDOWN = 2.5
# bench/bench_gateway.py 1a: the gateway's CPU per reading at full speed (docs/benchmarks.md)
FULL_SPEED_CPU_US_PER_READING = 5.9


@dataclass
class Timed:
    median_s: float
    peak_rss_mb: float


# Forks and times the command from a bare interpreter: a child forked from this (larger)
# process would report this process's RSS as its own peak (Linux keeps the high-water mark
# across exec).
LAUNCHER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - t0, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_timed(args: list[str], repeat: int = 5) -> Timed:
    """Wall time and peak RSS of a command, run `repeat` times."""
    times: list[float] = []
    peak = 0.0
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, *args], capture_output=True, text=True
        ).stdout.split()
        seconds, max_kb, code = float(out[0]), int(out[1]), int(out[2])
        if code != 0:
            raise RuntimeError(f"{args} exited {code}")
        times.append(seconds)
        peak = max(peak, max_kb / 1024)
    return Timed(statistics.median(times), peak)


def section_cli(facility: Path, summary: list[tuple[str, str, str]]) -> None:
    print("1. CLI start-up (median of 5, peak RSS)")
    for label, args, target in (
        ("facility --help", ["--help"], TARGET_HELP_S),
        ("facility gateway run --help", ["gateway", "run", "--help"], TARGET_HELP_S),
        ("facility check deploy/sites/demo", ["check", str(DEMO)], None),
    ):
        timed = run_timed([str(facility), *args])
        print(f"  {label}: {timed.median_s:.2f} s, peak RSS {timed.peak_rss_mb:.1f} MB")
        goal = "" if target is None else verdict(timed.median_s, target)
        summary.append((label, f"{timed.median_s:.2f} s, {timed.peak_rss_mb:.0f} MB", goal))


class StatusWatch:
    """Records when each gateway's first "online" status reaches the broker."""

    def __init__(self, port: int) -> None:
        self.online: dict[str, float] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-watch")
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("facility/v1/+/+/status", qos=1)
        self.client.loop_start()

    def _message(self, _client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            online = bool(json.loads(message.payload).get("online"))
        except (ValueError, AttributeError):
            return
        _, _, site, station, _ = message.topic.split("/")
        with self._lock:
            if online and f"{site}/{station}" not in self.online and not message.retain:
                self.online[f"{site}/{station}"] = time.monotonic()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class GatewayFigures:
    devices: int
    signals: int
    online_s: float
    first_ack_s: float
    rss_mb: float
    peak_mb: float
    readings_s: float
    cpu_us_per_reading: float
    cpu_share: float


def measure_gateways(facility: Path, seconds: float) -> dict[str, GatewayFigures]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp,
        simulated_demo(Path(tmp)) as demo,
    ):
        print("  site: a copy of deploy/sites/demo on free ports")
        watch = StatusWatch(demo.broker.port)
        try:
            figures: dict[str, GatewayFigures] = {}
            for name, (devices, signals) in demo.stations.items():
                figures[name] = run_gateway(facility, name, demo, watch, seconds)
                figures[name].devices, figures[name].signals = devices, signals
            return figures
        finally:
            watch.close()


def run_gateway(
    facility: Path, name: str, demo: SimulatedDemo, watch: StatusWatch, seconds: float
) -> GatewayFigures:
    """One gateway alone: start-up, then `seconds` of steady polling and delivery."""
    receiver = demo.receiver
    before = receiver.status().get("per_station", {}).get(name, 0)
    t0 = time.monotonic()
    gateway = demo.start_gateway(name, facility)
    try:
        first_ack = float("nan")
        while time.monotonic() - t0 < 30:
            if receiver.status().get("per_station", {}).get(name, 0) > before:
                first_ack = time.monotonic() - t0
                break
            if not gateway.alive():
                raise RuntimeError(f"gateway {name} exited:\n{gateway.log_tail()}")
            time.sleep(0.02)
        online = watch.online.get(name, float("nan")) - t0
        time.sleep(2.0)  # past the first polls' burst: measure the steady state
        cpu0, n0, t1 = gateway.cpu_s(), receiver.status()["per_station"][name], time.monotonic()
        time.sleep(seconds)
        cpu1, n1, t2 = gateway.cpu_s(), receiver.status()["per_station"][name], time.monotonic()
        problems = [
            line
            for line in gateway.log_tail(200).splitlines()
            if re.search("ERROR|Traceback", line)
        ]
        if problems or not gateway.alive():
            raise RuntimeError(f"gateway {name}: {problems[:3]}\n{gateway.log_tail()}")
        readings = max(1, n1 - n0)
        return GatewayFigures(
            devices=0,
            signals=0,
            online_s=online,
            first_ack_s=first_ack,
            rss_mb=memory_mb(gateway.pid, "VmRSS"),
            peak_mb=memory_mb(gateway.pid, "VmHWM"),
            readings_s=readings / (t2 - t1),
            cpu_us_per_reading=(cpu1 - cpu0) / readings * 1e6,
            cpu_share=(cpu1 - cpu0) / (t2 - t1),
        )
    finally:
        gateway.stop()


def section_gateway(facility: Path, seconds: float, summary: list[tuple[str, str, str]]) -> None:
    print(
        f"2. `facility gateway run`, alone, polling `facility simulate --speed 60`, "
        f"{seconds:.0f} s steady state"
    )
    figures = measure_gateways(facility, seconds)
    for name, f in figures.items():
        print(
            f"  {name} ({f.devices} devices, {f.signals} signals): online on the broker "
            f"{f.online_s:.2f} s after exec, first readings acked {f.first_ack_s:.2f} s; "
            f"RSS {f.rss_mb:.1f} MB (peak {f.peak_mb:.1f}); {f.readings_s:.0f} readings/s "
            f"for {f.cpu_share * 100:.1f} % of a core = {f.cpu_us_per_reading:.0f} µs CPU a "
            "reading at this rate (timers, health and polling overhead included)"
        )
        summary.append(
            (
                f"gateway start-up, {name}",
                f"{f.online_s:.2f} s",
                verdict(f.online_s, TARGET_START_S),
            )
        )
        summary.append(
            (f"gateway RSS, {name}", f"{f.rss_mb:.1f} MB", verdict(f.rss_mb, TARGET_RSS_MB))
        )
    worst = max(figures.values(), key=lambda f: f.cpu_share)
    print("  Raspberry Pi-class board (estimate: this machine's figures x the assumed slowdown):")
    for board, slowdown in (("Pi 4", PI4_SLOWDOWN), ("Pi 5", PI5_SLOWDOWN)):
        ceiling = 1e6 / (FULL_SPEED_CPU_US_PER_READING * slowdown)
        print(
            f"    {board} (x{slowdown:g}): start-up ~{worst.online_s * slowdown:.1f} s; the "
            f"largest station {worst.cpu_share * slowdown * 100:.0f} % of a core; ceiling "
            f"~{ceiling:,.0f} readings/s a core (full-speed {FULL_SPEED_CPU_US_PER_READING} µs "
            "a reading here); RSS about the same on 64-bit Pi OS"
        )


def verdict(value: float, target: float) -> str:
    return f"<= {target:g}: " + met(value <= target)


def section_imports() -> None:
    print("3. RSS of a fresh interpreter after importing (MB)")
    parts = ["", "typer", "pydantic", "yaml", "asyncio", "pymodbus", "aiomqtt", "facility.config"]
    parts += ["gateway.daemon", "wiring.cli"]
    for module in parts:
        print(f"  {module or '(nothing)'}: {import_rss_mb(module):.1f}")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import gateway.daemon"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    cumulative: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[1].strip().isdigit():
            name = fields[2].rstrip()
            depth = (len(name) - len(name.lstrip())) // 2
            if depth <= 1:
                cumulative.append((int(fields[1]), name.strip()))
    print("  slowest imports under gateway.daemon (cumulative ms):")
    for micros, name in sorted(cumulative, reverse=True)[:8]:
        print(f"    {name}: {micros / 1000:.0f}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--facility", type=Path, default=FACILITY)
    args = parser.parse_args(argv)
    print_header("mosquitto")
    print(f"facility: {args.facility}\n")
    summary: list[tuple[str, str, str]] = []
    section_cli(args.facility, summary)
    section_gateway(args.facility, args.seconds, summary)
    section_imports()
    print_summary(summary)


if __name__ == "__main__":
    main(sys.argv[1:])
