"""The `facility` command as an operator uses it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from facility.cli import app
from tests.conftest import DEMO_SITE, ROOT

runner = CliRunner()


def test_check_accepts_the_demo_site() -> None:
    result = runner.invoke(app, ["check", str(DEMO_SITE)])
    assert result.exit_code == 0, result.output
    assert "6 sites, 13 stations, 80 assets" in result.output


def test_check_lists_every_error_with_file_line_and_field() -> None:
    case = ROOT / "tests" / "testcases" / "several_errors_at_once"
    expected = [
        line
        for line in (case / "expected_errors.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    result = runner.invoke(app, ["check", str(case)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error ")]
    assert len(errors) == len(expected) >= 3
    for line in expected:
        file, lineno = line.split(":")[:2]
        assert any(f"{file}:{lineno}:" in e for e in errors), line
    assert f"{len(expected)} error(s)" in result.output


def test_check_of_a_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "no such file or folder" in result.output


def test_record_writes_a_replayable_feed(tmp_path: Path) -> None:
    out = tmp_path / "feed.jsonl"
    result = runner.invoke(
        app,
        [
            "record",
            str(DEMO_SITE / "chaheihai.yaml"),
            "--out",
            str(out),
            "--duration",
            "30m",
            "--sample",
            "60s",
            "--seed",
            "4",
            "--start",
            "2026-06-01T06:00:00+08:00",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "facility-feed" and header["seed"] == 4
    assert len(lines) == 1 + 31 * 7  # 31 samples x 7 polled devices


def test_a_scenario_with_a_wrong_target_names_its_line(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(
        "scenario: bad\nduration: 1h\nfaults:\n"
        "  - kind: pump_trip\n    target: fengshou/xiba/tank_no4\n    at: 5m\n"
    )
    result = runner.invoke(
        app,
        ["record", str(DEMO_SITE), "--out", str(tmp_path / "f.jsonl"), "--scenario", str(scenario)],
    )
    assert result.exit_code == 1
    assert f"{scenario}:5: faults[0].target: pump_trip applies to pump, not tank" in result.output
