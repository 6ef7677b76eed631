"""The benches' shared helpers (bench/common.py) where a mistake would bend a figure
silently: the demo copied onto free ports, the percentile, the summary table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.common import DEMO, demo_site_on_free_ports, percentile, print_summary
from facility.config import load_site_config
from facility.site import Transport


def bus_ports(folder: Path) -> dict[tuple[str, str, str], int]:
    config = load_site_config(folder)
    return {
        (site.id, station.id, bus.id): bus.port
        for site in config.sites
        for station in site.stations
        for bus in station.buses
        if bus.transport is not Transport.RTU
    }


def test_the_demo_copy_has_every_bus_on_a_port_of_its_own(tmp_path: Path) -> None:
    original = bus_ports(DEMO)
    copied = bus_ports(demo_site_on_free_ports(tmp_path / "site"))
    assert copied.keys() == original.keys()
    assert not set(copied.values()) & set(original.values())
    # The same port stays one port (buses sharing one keep sharing), distinct stay distinct.
    by_original: dict[int, set[int]] = {}
    for key, port in original.items():
        by_original.setdefault(port, set()).add(copied[key])
    assert all(len(new) == 1 for new in by_original.values())
    assert len(set(copied.values())) == len(set(original.values()))
    assert (tmp_path / "site" / "scenarios" / "demo_incidents.yaml").is_file()


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(10, 0, -1)]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 99) == 10.0
    assert percentile(values, 1) == 1.0
    assert math.isnan(percentile([], 50))


def test_the_summary_right_aligns_what_was_measured(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary([("a long figure", "1", "t"), ("b", "123,456", "target")], head=("f", "m", "x"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["", "summary"]
    assert lines[2:] == [
        "  f                    m  x",
        "  a long figure        1  t",
        "  b              123,456  target",
    ]
