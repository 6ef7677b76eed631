"""`facility gateway status` on what a gateway leaves on disk, damaged files included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from facility.clock import now_ms
from facility.wire import Reading
from gateway.outbox import Outbox
from wiring.cli import app


def outbox_with(data_dir: Path, readings: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    with Outbox(data_dir / "fengshou-xiba.outbox.sqlite") as outbox:
        outbox.put(
            [Reading("pump_1", "flow_m3h", 1_780_000_000_000 + i, 1.5) for i in range(readings)]
        )


def status(data_dir: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["gateway", "status", "--data-dir", str(data_dir), *extra])
    return result.exit_code, result.output


def test_the_outbox_alone_is_enough(tmp_path: Path) -> None:
    outbox_with(tmp_path, 7)
    code, text = status(tmp_path)
    assert code == 0 and "no status file" in text and "outbox readings" in text and "7" in text


def test_a_damaged_status_file_does_not_hide_the_outbox(tmp_path: Path) -> None:
    outbox_with(tmp_path, 3)
    status_file = tmp_path / "fengshou-xiba.status.json"
    for damage in (
        "{not json",
        '{"samples": "[red]x[/red]", "pid": "x"}',
        '{"samples": [1, null]}',
    ):
        status_file.write_text(damage)
        code, out = status(tmp_path, "--json")
        assert code == 0, out
        [report] = json.loads(out)
        assert report["outbox"]["readings"] == 3
        assert report["status"] != "running"


def test_a_status_file_of_a_live_process_says_running(tmp_path: Path) -> None:
    outbox_with(tmp_path, 1)
    document = {
        "pid": os.getpid(),
        "running": True,
        "written_ms": 0,
        "samples": [
            {"name": "facility_gateway_uplink_connected", "labels": {}, "value": 0},
            {"name": "facility_gateway_last_ack_age_seconds", "labels": {}, "value": -1},
        ],
    }
    status_file = tmp_path / "fengshou-xiba.status.json"
    status_file.write_text(json.dumps(document))
    code, text = status(tmp_path)
    assert code == 0 and "not running" in text  # written long ago: stale
    document["written_ms"] = now_ms()
    status_file.write_text(json.dumps(document))
    code, text = status(tmp_path, "--gateway", "fengshou/xiba")
    assert code == 0 and "running (pid" in text and "never" in text
    code, _ = status(tmp_path, "--gateway", "fengshou/other")
    assert code == 1


def test_a_gateway_without_a_metrics_port_never_imports_prometheus_client() -> None:
    """The gateway's memory budget: the library is loaded only to serve /metrics."""
    probe = (
        "import sys, gateway.daemon, gateway.metrics, gateway.status;"
        "sys.exit('prometheus_client' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", probe], timeout=60).returncode == 0
