"""deploy/install.sh and the systemd units, as far as a test machine allows.

Covered: `systemd-analyze verify` and `security --offline` on both units (as instances);
install, re-install, upgrade and uninstall of the gateway role in a throwaway root
(`--root`: the system user made with useradd --prefix in the tree's own /etc, the venv,
/etc/facility and its modes, the unit), then the installed `facility` run on a site
folder. Not covered here: systemctl itself (daemon-reload, enable, start: no systemd
runs as PID 1 in the test sandbox), the ownership root:facility (the tree's facility
group is not this host's), apt-get, and the units' sandbox at run time.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DEMO_SITE, ROOT
from tests.integration.conftest import Dist, run_ok

INSTALL = ROOT / "deploy" / "install.sh"
UNITS = ROOT / "deploy" / "systemd"
INSTANCES = {
    "facility-gateway@.service": "facility-gateway@fengshou-xiba.service",
    "facility-ingest@.service": "facility-ingest@ingest-1.service",
}
MAX_EXPOSURE = 3.0  # systemd-analyze security: 0 is locked down, 10 is root unconfined


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    return found


def instance_units(folder: Path, facility: Path) -> list[Path]:
    """Each template as an instance, ExecStart pointing at an installed `facility` (the
    only change: verify checks that the program exists)."""
    folder.mkdir(parents=True, exist_ok=True)
    units = []
    for template, instance in INSTANCES.items():
        text = (UNITS / template).read_text()
        path = folder / instance
        path.write_text(text.replace("/opt/facility/venv/bin/facility", str(facility)))
        units.append(path)
    return units


def test_units_verify_clean_and_are_hardened(tmp_path: Path) -> None:
    facility = Path(shutil.which("facility") or ROOT / ".venv" / "bin" / "facility")
    for unit in instance_units(tmp_path, facility):
        done = subprocess.run(
            [systemd_analyze(), "verify", str(unit)], capture_output=True, text=True
        )
        # verify exits 0 on unknown keys too: any word from it is a finding
        assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
            f"{unit.name}:\n{done.stdout}{done.stderr}"
        )
        security = subprocess.run(
            [systemd_analyze(), "security", "--offline=true", str(unit)],
            capture_output=True,
            text=True,
        ).stdout
        exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", security)
        assert exposure and float(exposure[1]) <= MAX_EXPOSURE, security[-400:]
        text = unit.read_text()
        unit_section = text.split("[Service]")[0]
        assert "StartLimitIntervalSec=" in unit_section and "StartLimitBurst=" in unit_section
        for line in ("User=facility", "ProtectSystem=strict", "NoNewPrivileges=true"):
            assert f"\n{line}\n" in text, (unit.name, line)
        assert "ReadWritePaths=" in text and "StateDirectory=facility/" in text
    gateway = (UNITS / "facility-gateway@.service").read_text()
    assert "demo" not in gateway and "--gateway %i" in gateway
    assert "EnvironmentFile=-/etc/facility/gateway-%i.env" in gateway


def throwaway_root(folder: Path) -> Path:
    """A tree with this host's account files, for useradd --prefix to edit."""
    (folder / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        if (Path("/etc") / name).exists():
            shutil.copy2(Path("/etc") / name, folder / "etc" / name)
    return folder


def install(root: Path, *args: str | Path) -> str:
    return run_ok(["bash", INSTALL, "--root", root, *args])


def test_install_upgrade_uninstall_a_gateway_in_a_throwaway_root(
    dist: Dist, tmp_path: Path
) -> None:
    root = throwaway_root(tmp_path / "root")
    out = install(root, "--from", dist.wheel, "gateway")
    assert "systemctl enable --now facility-gateway@SITE-STATION" in out

    account = next(
        line.split(":")
        for line in (root / "etc/passwd").read_text().splitlines()
        if line.startswith("facility:")
    )
    assert int(account[2]) < 1000 and account[6] == "/usr/sbin/nologin"
    assert any(
        line.startswith("facility:") for line in (root / "etc/group").read_text().splitlines()
    )
    etc = root / "etc/facility"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o750
    env = etc / "gateway.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o640
    assert "FACILITY_SITE=/etc/facility/sites" in env.read_text()
    unit = root / "etc/systemd/system/facility-gateway@.service"
    assert unit.read_text() == (UNITS / "facility-gateway@.service").read_text()
    assert (root / "opt/facility/role").read_text().strip() == "gateway"

    facility = root / "opt/facility/venv/bin/facility"
    shutil.copytree(DEMO_SITE, etc / "sites", dirs_exist_ok=True)
    assert "13 stations" in run_ok([facility, "check", etc / "sites"], cwd=tmp_path)
    for path in instance_units(tmp_path / "units", facility):
        run_ok([systemd_analyze(), "verify", path])

    env.write_text("FACILITY_SITE=/srv/sites\n")  # the operator's edit survives a re-run
    install(root, "--from", dist.wheel, "gateway")
    assert env.read_text() == "FACILITY_SITE=/srv/sites\n"

    (installed,) = (root / "opt/facility/venv/lib").glob("python3*/site-packages/wiring/cli.py")
    installed.write_text(installed.read_text() + "\nSTALE = True\n")
    assert "upgraded the gateway install" in install(root, "--from", dist.wheel, "upgrade")
    assert "STALE" not in installed.read_text(), "upgrade replaces the code, same version or not"

    install(root, "uninstall")
    assert not (root / "opt/facility").exists() and not unit.exists()
    assert env.exists(), "config is kept without --purge"
    install(root, "uninstall", "--purge")
    assert not etc.exists()
    assert "facility:" not in (root / "etc/passwd").read_text()


def test_install_refuses_misuse_with_usage_or_a_reason(tmp_path: Path) -> None:
    misplaced = subprocess.run(
        ["bash", INSTALL, "upgrade", "--root", str(tmp_path)], capture_output=True, text=True
    )
    assert misplaced.returncode == 2 and "install.sh gateway" in misplaced.stdout
    nothing = subprocess.run(
        ["bash", INSTALL, "--root", str(tmp_path), "upgrade"], capture_output=True, text=True
    )
    assert nothing.returncode == 1 and "nothing installed" in nothing.stderr


@pytest.mark.soak
def test_install_central_in_a_throwaway_root_gives_a_valid_ingest_config(
    dist: Dist, tmp_path: Path
) -> None:
    """About 90 s: the `central` extra is big (matplotlib, FastAPI, Grafana libraries)."""
    root = throwaway_root(tmp_path / "root")
    out = install(root, "--from", dist.wheel, "central")
    assert "systemctl enable --now facility-ingest@ingest-1" in out
    etc = root / "etc/facility"
    for name in ("ingest-1.yaml", "ingest.env", "alarms/rules.yaml", "alarms/api-tokens.yaml"):
        assert stat.S_IMODE((etc / name).stat().st_mode) == 0o640, name
    shutil.copytree(DEMO_SITE, etc / "sites", dirs_exist_ok=True)
    python = root / "opt/facility/venv/bin/python"
    probe = (
        "import sys; from pathlib import Path; from ingest.config import load_ingest_config\n"
        "c = load_ingest_config(Path(sys.argv[1]))\n"
        "print(c.settings.site_config, c.dead_letters_path, len(c.site.sites))"
    )
    answer = run_ok([python, "-c", probe, etc / "ingest-1.yaml"], cwd=tmp_path).split()
    assert answer == ["sites", "/var/lib/facility/ingest/ingest-1/dead-letters.sqlite", "6"]
    assert (root / "etc/systemd/system/facility-ingest@.service").exists()
