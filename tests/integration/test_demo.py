"""The README's main command, shortened: simulators, 13 gateways, broker, ingest with
alarms, the notifier mailing a local catcher, and the scripted crew acknowledging and
resetting at the web console, in headless Chromium."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import DEMO_PORTS, DEMO_SITE, ROOT
from tests.services import free_port

pytestmark = DEMO_PORTS  # the demo serves the site's own ports 15021-15042

# Faults early and short enough that 20 real seconds at 60x hold the whole story: raised,
# mailed, acknowledged, cleared (latched: a trip) and reset.
STORY = """
scenario: demo_story
start: "2026-06-01T06:00:00+08:00"
seed: 7
faults:
  - {kind: pump_trip, target: fengshou/xiba/pump_1, at: 30s, duration: 9m,
     params: {fault_code: 1}, expect: {alarm: pump_trip, priority: high, within: 30s}}
  - {kind: transformer_overload, target: huilongba/nongken/transformer, at: 1m, duration: 5m,
     params: {extra_pct: 125}, expect: {alarm: transformer_overload, priority: critical}}
"""


def test_demo_runs_through_an_outage_and_delivers(tmp_path: Path) -> None:
    scenario = tmp_path / "story.yaml"
    scenario.write_text(STORY)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wiring.cli",
            "demo",
            str(DEMO_SITE),
            "--plain",
            "--speed",
            "60",
            "--duration",
            "20m",
            "--api-port",
            "0",
            "--crew-ack-after",
            "1s",
            "--outage-at",
            "15s",
            "--outage-for",
            "2s",
            "--broker-port",
            str(free_port()),
            "--run-dir",
            str(tmp_path / "run"),
            "--scenario",
            str(scenario),
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
    trip = "fengshou/xiba/pump_1/pump_trip"
    story = [
        f"ALARM RAISED high {trip}",
        "MAIL to ",
        "ALARM ACKNOWLEDGED by demo.crew",
        f"ALARM CLEARED high {trip}",
        "ALARM RESET by demo.crew",
    ]
    happened = out.split("what happened:", 1)[1]
    told = [happened.find(step) for step in story]
    assert all(at >= 0 for at in told) and told == sorted(told), f"the trip's story: {told}"
    assert "alarm console http://127.0.0.1:" in out
    mails = int(out.split("notifications: ", 1)[1].split()[0])
    assert mails >= 2, "the trip and the overload were mailed"
    crew = " ".join(out.split("the crew acknowledged ", 1)[1].split())  # rich wraps lines
    acks, resets = int(crew.split()[0]), int(crew.split(" and reset ", 1)[1].split()[0])
    assert acks >= 2 and resets >= 1, crew[:200]
    assert "alarms at the web console (headless Chromium)" in crew, crew[:200]
