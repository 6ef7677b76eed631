"""Text from data or config is printed as it is, never read as rich markup: a profile
named `[/oops]` (a closing tag rich cannot match) is reported instead of crashing into a
traceback, a dead letter holding `[/…]` or `[bold]` is listed literally, and a refusal
quoting `^[a-z][a-z0-9_]*$` keeps its brackets. Also `facility check`'s warning about
unscaled 64-bit unsigned signals."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from ingest.config import load_ingest_config
from ingest.deadletters import DeadLetters
from tests.conftest import ROOT
from tests.integration._ingest import write_ingest_config
from wiring.cli import app

runner = CliRunner()
MINIMAL = ROOT / "tests" / "testcases" / "site" / "valid_minimal"
MARKUP = ["[/oops]", "[bold red]loud[/bold red]", "[link=file:///etc/passwd]x", "[/]"]


def _site(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "site"
    shutil.copytree(MINIMAL, folder)
    site = folder / "site.yaml"
    text = site.read_text()
    assert old in text
    site.write_text(text.replace(old, new, 1))
    return folder


def test_check_reports_a_profile_name_that_looks_like_markup(tmp_path: Path) -> None:
    folder = _site(tmp_path, "profile: tank_level", 'profile: "[/oops]"')
    result = runner.invoke(app, ["check", str(folder)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit(1), not a MarkupError
    assert "no device profile '[/oops]'" in result.output


def test_a_refusal_keeps_the_brackets_of_the_pattern_it_quotes(tmp_path: Path) -> None:
    folder = _site(tmp_path, "id: site_min", "id: Site-Min")
    result = runner.invoke(app, ["check", str(folder)])
    assert result.exit_code == 1
    assert "^[a-z][a-z0-9_]*$" in result.output, result.output


def test_check_of_a_folder_whose_name_looks_like_markup(tmp_path: Path) -> None:
    folder = tmp_path / "[/oops]"
    shutil.copytree(MINIMAL, folder)
    result = runner.invoke(app, ["check", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"ok {folder}:" in result.output


def test_dead_letters_with_markup_are_listed_as_they_are(tmp_path: Path) -> None:
    config_file = write_ingest_config(tmp_path, 1883, "http://127.0.0.1:9")
    config = load_ingest_config(config_file)
    dead = DeadLetters(config.dead_letters_path)
    dead.add_rows("fengshou", "xiba", [(["v", m, "x", 1, 1.0, "g"], m) for m in MARKUP])
    dead.add_batch("fengshou", "xiba", b"[/oops]", "not zlib-compressed JSON: [/oops]")
    dead.close()
    result = runner.invoke(app, ["ingest", "dead-letters", "list", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    for text in MARKUP:
        assert text in result.output, text
    assert "not zlib-compressed JSON: [/oops]" in result.output
    assert "5 pending" in result.output


def test_check_warns_about_unscaled_uint64_signals(tmp_path: Path) -> None:
    folder = _site(tmp_path, "profile: tank_level", "profile: meter")
    (folder / "profiles").mkdir()
    (folder / "profiles" / "meter.yaml").write_text(
        "profile: meter\n"
        "protocol: modbus\n"
        "signals:\n"
        "  - {name: level_m, table: holding, address: 0, type: float32}\n"
        "  - {name: pulses, table: holding, address: 2, type: uint64}\n"
        "  - {name: energy_kwh, table: holding, address: 6, type: uint64, scale: 0.1}\n"
    )
    result = runner.invoke(app, ["check", str(folder)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1, result.output
    assert "profiles/meter.yaml:5: signals[1].type: 'pulses' is an unscaled uint64" in warnings[0]
