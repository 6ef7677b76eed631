"""The `facility` command as an operator uses it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.conftest import DEMO_SITE, ROOT
from wiring.cli import COMMANDS, app

runner = CliRunner()


def test_check_accepts_the_demo_site() -> None:
    result = runner.invoke(app, ["check", str(DEMO_SITE)])
    assert result.exit_code == 0, result.output
    assert "6 sites, 13 stations, 80 assets" in result.output


def test_check_lists_every_error_with_file_line_and_field() -> None:
    case = ROOT / "tests" / "testcases" / "site" / "several_errors_at_once"
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


def with_scenario(scenario: Path, text: str, *args: str) -> Result:
    """The command `args` run with `--scenario` naming `scenario`, written with `text`."""
    scenario.write_text(text)
    return runner.invoke(app, [*args, "--scenario", str(scenario)])


def test_a_scenario_with_a_wrong_target_names_its_line(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    result = with_scenario(
        scenario,
        "scenario: bad\nduration: 1h\nfaults:\n"
        "  - kind: pump_trip\n    target: fengshou/xiba/tank_no4\n    at: 5m\n",
        *("record", str(DEMO_SITE), "--out", str(tmp_path / "f.jsonl")),
    )
    assert result.exit_code == 1
    assert f"{scenario}:5: faults[0].target: pump_trip applies to pump, not tank" in result.output


def test_every_lazy_summary_is_the_loaded_commands_own_help() -> None:
    for entry in COMMANDS:
        command = entry.load()
        own = (command.help or "").split("\n\n")[0].strip()
        assert entry.summary == own, f"wiring.cli COMMANDS[{entry.name!r}] summary is stale"


def _modules_loaded_by(args: list[str]) -> set[str]:
    probe = (
        "import sys\nfrom wiring.cli import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('\\n'.join(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return set(done.stderr.splitlines())


def test_help_loads_no_command_code() -> None:
    # (typer itself loads pydantic to convert option values)
    heavy = {"matplotlib", "fastapi", "apprise", "pymodbus", "aiomqtt", "yaml", "paho"}
    for args in (["--help"], ["gateway", "run", "--help"]):
        loaded = _modules_loaded_by(args)
        assert not heavy & loaded, (args, heavy & loaded)
        assert not {"gateway.daemon", "wiring.demo", "ingest.service"} & loaded, args


def test_a_command_loads_only_its_own_code() -> None:
    loaded = _modules_loaded_by(["ingest", "init", "--help"])
    assert "ingest.commands" in loaded
    assert not {"matplotlib", "wiring.demo", "dashboards.commands"} & loaded


def test_check_takes_the_rules_and_the_notifier_config_and_needs_no_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notify = ROOT / "deploy" / "alarms" / "notify.yaml"
    for name in re.findall(r"_env: *([A-Z_][A-Z0-9_]*)", notify.read_text()):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(
        app,
        ["check", str(DEMO_SITE), "--rules", str(ROOT / "deploy" / "alarms" / "rules.yaml"),
         "--notify", str(notify)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "21 alarm rules" in result.output and "4 crews" in result.output


def test_check_reports_every_error_of_site_rules_and_notifier_in_one_run(
    tmp_path: Path,
) -> None:
    """A broken site, rules with a typo and a notifier config with a typo and a
    missing crew: all of it in one report; the rules checked for shape only."""
    cases = ROOT / "tests" / "testcases"
    result = runner.invoke(
        app,
        ["check", str(cases / "site" / "unknown_bus"),
         "--rules", str(cases / "rules" / "typo_hides_nothing" / "rules.yaml"),
         "--notify", str(cases / "notify" / "typo_hides_nothing" / "notify.yaml")],
    )  # fmt: skip
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error ")]
    files = {e.split()[1].split(":")[0].rsplit("/", 1)[-1] for e in errors}
    assert files == {"site.yaml", "rules.yaml", "notify.yaml"}, errors
    assert sum("notify.yaml" in e for e in errors) == 6  # shape and meaning alike
    assert any("on_dealy" in e for e in errors) and not any("trippd" in e for e in errors)


def test_simulate_refuses_a_link_fault_it_could_not_apply(tmp_path: Path) -> None:
    result = with_scenario(
        tmp_path / "cut.yaml",
        "scenario: cut\nfaults:\n"
        "  - {kind: gateway_link_down, target: chaheihai/chaheihai_intake/gateway, at: 1m}\n",
        *("simulate", str(DEMO_SITE / "chaheihai.yaml")),
    )
    assert result.exit_code == 2
    assert "give --uplink HOST:PORT" in " ".join(result.output.split())
