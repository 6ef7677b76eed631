"""Fixtures shared by the integration tests of the package and its install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


def run_ok(args: list[str | Path], cwd: Path | None = None, timeout_s: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist from the tracked (and new, not ignored) files, the wheel from the sdist,
    as a release is built. About 20 s: once a session."""
    work = tmp_path_factory.mktemp("dist")
    source = work / "source"
    listed = run_ok(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT).splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = work / "out"
    build = f"from setuptools import build_meta as b; print(b.build_sdist({str(out)!r}))"
    sdist = out / run_ok([sys.executable, "-c", build], cwd=source).strip().splitlines()[-1]
    run_ok([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, sdist])
    (wheel,) = out.glob("*.whl")
    return Dist(sdist, wheel)
