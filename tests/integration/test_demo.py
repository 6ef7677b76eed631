"""The README's main command, shortened: simulators, 13 gateways, broker, receiver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import DEMO_SITE, ROOT
from tests.services import free_port


def test_demo_runs_through_an_outage_and_delivers(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "facility.cli",
            "demo",
            str(DEMO_SITE),
            "--plain",
            "--speed",
            "300",
            "--duration",
            "40m",
            "--outage-at",
            "3s",
            "--outage-for",
            "3s",
            "--broker-port",
            str(free_port()),
            "--run-dir",
            str(tmp_path / "run"),
            "--scenario",
            str(DEMO_SITE / "scenarios" / "demo_incidents.yaml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    ours = [
        line
        for line in result.stderr.splitlines()
        if line.strip().startswith("File ")
        and any(f"/{pkg}/" in line for pkg in ("facility", "gateway", "ingest", "simulators"))
    ]
    assert not ours, "a traceback through our code:\n" + result.stderr[-3000:]
    assert "broker STOPPED" in out and "broker back" in out
    assert "FAULT pump_trip fengshou/xiba/pump_1" in out
    assert "DOWN" in out, "the gateways' uplinks were seen down during the outage"
    delivered = int(out.rsplit("delivered ", 1)[1].split()[0])
    assert delivered > 2000
    assert out.count("Modbus ok") >= 11
    written = int(out.split("database facility: ", 1)[1].split()[0])
    assert written > 500, "readings reached InfluxDB"
    assert "tank levels now (m): chaheihai/tank_no1" in out
