"""How many Modbus requests the planner saves on the demo site, and what planning costs.

For every Modbus device of the demo site (each with its bus's max_gap), compares the
requests of one full poll: planned (greedy) vs the exhaustive minimum vs one request per
signal, with the registers/bits and RTU frame bytes they move; then the time to plan the
whole site.

    .venv/bin/python -m bench.bench_planner
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from bench.common import DEMO, print_header
from facility.config import SiteConfig, load_site_config
from facility.profile import ModbusProfile, ModbusSignal, Table
from gateway.modbus.planner import ReadRequest, RequestPlan, minimum_requests, plan_reads

RTU_REQUEST_BYTES = 8  # unit, function, address, count, CRC
RTU_RESPONSE_OVERHEAD = 5  # unit, function, byte count, CRC


@dataclass(frozen=True)
class Device:
    path: str
    profile: ModbusProfile
    max_gap: int


def modbus_devices(config: SiteConfig) -> list[Device]:
    devices: list[Device] = []
    for ref in config.assets():
        if ref.asset.modbus is None or ref.asset.profile is None:
            continue
        profile = config.profile_of(ref)
        assert isinstance(profile, ModbusProfile)
        bus = next(b for b in ref.station.buses if b.id == ref.asset.modbus.bus)
        devices.append(Device(ref.path, profile, bus.max_gap))
    return devices


def response_bytes(table: Table, count: int) -> int:
    data = (count + 7) // 8 if table.is_bit_table else 2 * count
    return RTU_RESPONSE_OVERHEAD + data


def plan_bytes(requests: list[ReadRequest] | RequestPlan) -> int:
    return sum(RTU_REQUEST_BYTES + response_bytes(r.table, r.count) for r in requests)


def naive_requests(device: Device) -> list[ReadRequest]:
    """One request per signal."""
    profile = device.profile
    return [
        ReadRequest(s.table, profile.protocol_address(s), s.count, (s,)) for s in profile.signals
    ]


def wanted_registers(device: Device) -> int:
    """Distinct registers (bits) that belong to the device's signals."""
    profile = device.profile
    return len(
        {
            (s.table, r)
            for s in profile.signals
            for r in range(profile.protocol_address(s), profile.protocol_address(s) + s.count)
        }
    )


def minimum(device: Device) -> int:
    signals: list[ModbusSignal] = device.profile.signals
    return sum(
        minimum_requests(device.profile, signals, table, max_gap=device.max_gap) for table in Table
    )


def main() -> None:
    config = load_site_config(DEMO)
    devices = modbus_devices(config)
    print_header()
    print(
        f"demo configuration: {len(config.sites)} sites, {len(devices)} Modbus devices "
        "(every Modbus asset, whatever its status)"
    )
    print()

    per_profile: Counter[str] = Counter(d.profile.profile for d in devices)
    totals: Counter[str] = Counter()
    print("requests per device and poll (naive: one per signal):")
    print(f"  {'profile':<22}{'devices':>8}{'naive':>7}{'planned':>9}{'minimum':>9}")
    for name in sorted(per_profile):
        device = next(d for d in devices if d.profile.profile == name)
        plan = plan_reads(device.profile, max_gap=device.max_gap)
        best = minimum(device)
        assert len(plan) == best, f"{name}: planned {len(plan)}, minimum {best}"
        signals = len(device.profile.signals)
        print(f"  {name:<22}{per_profile[name]:>8}{signals:>7}{len(plan):>9}{best:>9}")
    for device in devices:
        plan = plan_reads(device.profile, max_gap=device.max_gap)
        naive = naive_requests(device)
        totals["naive"] += len(naive)
        totals["planned"] += len(plan)
        totals["minimum"] += minimum(device)
        totals["naive_words"] += sum(r.count for r in naive)
        totals["wanted_words"] += wanted_registers(device)
        totals["planned_words"] += plan.registers_read
        totals["naive_bytes"] += plan_bytes(naive)
        totals["planned_bytes"] += plan_bytes(plan)
    print()
    print("one full poll of the demo site (max_gap from each bus):")
    print(
        f"  requests: planned {totals['planned']}, minimum {totals['minimum']}, "
        f"naive {totals['naive']} ({totals['naive'] / totals['planned']:.1f}x fewer)"
    )
    print(
        f"  registers+bits read: planned {totals['planned_words']} "
        f"({totals['planned_words'] - totals['wanted_words']} read through gaps), "
        f"naive {totals['naive_words']}, belonging to signals {totals['wanted_words']}"
    )
    print(f"  RTU frame bytes: planned {totals['planned_bytes']}, naive {totals['naive_bytes']}")
    print()
    print("requests per full poll by max_gap (planned = minimum checked):")
    for gap in (0, 1, 2, 4, 8, 16, 19, 32):
        planned = sum(len(plan_reads(d.profile, max_gap=gap)) for d in devices)
        best = sum(
            minimum_requests(d.profile, d.profile.signals, t, max_gap=gap)
            for d in devices
            for t in Table
        )
        assert planned == best
        read = sum(plan_reads(d.profile, max_gap=gap).registers_read for d in devices)
        print(f"  max_gap {gap:>2}: {planned:>4} requests, {read:>5} registers+bits read")
    print()

    rounds = 200
    t0 = time.perf_counter()
    for _ in range(rounds):
        for device in devices:
            plan_reads(device.profile, max_gap=device.max_gap)
    every = (time.perf_counter() - t0) / rounds
    t0 = time.perf_counter()
    for _ in range(rounds):
        compiled: dict[tuple[str, int], RequestPlan] = {}
        for device in devices:
            key = (device.profile.profile, device.max_gap)
            if key not in compiled:
                compiled[key] = plan_reads(device.profile, max_gap=device.max_gap)
    once = (time.perf_counter() - t0) / rounds
    t0 = time.perf_counter()
    for device in devices:
        minimum(device)
    brute = time.perf_counter() - t0
    print("planning time for the whole site:")
    per_device = every / len(devices) * 1e6
    print(f"  every device planned: {every * 1e3:.2f} ms ({per_device:.0f} µs a device)")
    print(f"  once per (profile, max_gap), {len(compiled)} plans: {once * 1e3:.3f} ms")
    print(f"  brute-force minimum for comparison: {brute * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
