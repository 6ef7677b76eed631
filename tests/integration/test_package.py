"""The package as an operator installs it.

The sdist is built from the tracked files and the wheel from the sdist (as a release
would be). The wheel must carry every file the code reads at run time; its `gateway`
extra, installed into a clean venv, runs a real gateway without the central server's
libraries; the ingest with its alarm console runs from the wheel's own files and stores
what that gateway delivers. The soak variant installs the `central` extra into a clean
venv too (about 80 s more here, most of it matplotlib and its dependencies).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from facility.config import SiteConfig
from ingest.influx import InfluxV1Writer
from tests.conftest import ROOT
from tests.integration._gateway import one_station, served_at
from tests.integration._ingest import DB, read_log_until, write_ingest_config
from tests.integration.conftest import Dist, run_ok
from tests.integration.test_gateway_crash import write_site
from tests.integration.test_gateway_e2e import start_site
from tests.services import Mosquitto, free_port
from wiring.services import InfluxDB

PACKAGES = ("facility", "gateway", "ingest", "dashboards", "simulators")
CENTRAL_ONLY = ("fastapi", "uvicorn", "matplotlib", "apprise", "influxdb_client", "grafana_client")
TOKEN = "package-test-viewer-token"


def _venv(path: Path, requirement: str) -> Path:
    """A clean venv with `requirement` installed by this venv's pip (no ensurepip: faster)."""
    run_ok([sys.executable, "-m", "venv", "--without-pip", path])
    python = path / "bin" / "python"
    run_ok([sys.executable, "-m", "pip", "--python", python, "install", "-q", requirement])
    return path / "bin"


@pytest.fixture(scope="module")
def gateway_bin(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _venv(tmp_path_factory.mktemp("venv") / "gateway", f"{dist.wheel}[gateway]")


def test_wheel_and_sdist_carry_every_runtime_file(dist: Dist) -> None:
    runtime = sorted(
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file()
        and path.suffix not in (".py", ".pyc", ".md")
        and "__pycache__" not in path.parts
    )
    assert (
        "ingest/api/static/console.js" in runtime and "facility/profiles/pump_vfd.yaml" in runtime
    )
    in_wheel = set(zipfile.ZipFile(dist.wheel).namelist())
    missing = [name for name in runtime if name not in in_wheel]
    assert not missing, f"the wheel leaves out {missing}"
    with tarfile.open(dist.sdist) as tar:
        in_sdist = {name.partition("/")[2] for name in tar.getnames()}
    for name in [*runtime, "deploy/install.sh", "deploy/systemd/facility-gateway@.service"]:
        assert name in in_sdist, f"the sdist leaves out {name}"


def test_the_gateway_extra_has_no_central_libraries(gateway_bin: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib.util, facility\n"
        f"print(facility.__file__, [m for m in {CENTRAL_ONLY!r} if importlib.util.find_spec(m)])"
    )
    where, found = run_ok([gateway_bin / "python", "-c", probe], cwd=tmp_path).split(" ", 1)
    assert where.startswith(str(gateway_bin.parent)), where
    assert found.strip() == "[]"
    # a central command says which extra it needs instead of a traceback
    done = subprocess.run(
        [gateway_bin / "facility", "ingest", "run", "--config", "x.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "pip install 'facility-telemetry[central]'" in done.stderr
    assert "Traceback" not in done.stderr


def _console_config(folder: Path, site_dir: Path, api_port: int) -> dict[str, object]:
    tokens = folder / "api-tokens.yaml"
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    tokens.write_text(
        yaml.safe_dump({"users": [{"name": "viewer", "role": "viewer", "token_sha256": digest}]})
    )
    return {
        "rules": str(ROOT / "deploy" / "alarms" / "rules.yaml"),
        "api": {"host": "127.0.0.1", "port": api_port, "tokens": str(tokens)},
    }


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return int(answer.status), answer.read().decode()


async def _data_path_and_console(
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
    gateway_cmd: list[str],
    ingest_cmd: list[str],
    ingest_env: dict[str, str],
) -> None:
    config = one_station(demo_config, "fengshou", "xiba")
    runner = await start_site(config, mosquitto)
    site_dir = write_site(served_at(config, runner), tmp_path / "site")
    ingest_file = write_ingest_config(
        tmp_path / "ingest", mosquitto.port, influxdb.url, site_dir=site_dir
    )
    api_port = free_port()
    settings = yaml.safe_load(ingest_file.read_text())
    settings["ingest"]["alarms"] = _console_config(tmp_path / "ingest", site_dir, api_port)
    ingest_file.write_text(yaml.safe_dump(settings))
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    ingest = subprocess.Popen(
        [*ingest_cmd, "ingest", "run", "--config", str(ingest_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=ingest_env,
    )
    gateway = subprocess.Popen(
        [
            *gateway_cmd,
            *("gateway", "run", "--site", str(site_dir), "--gateway", "fengshou/xiba"),
            *("--data-dir", str(tmp_path / "gw"), "--uplink", f"127.0.0.1:{mosquitto.port}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        read_log_until(ingest, "serving", 60)
        status, page = await asyncio.to_thread(_get, f"http://127.0.0.1:{api_port}/")
        assert status == 200 and "<html" in page.lower()
        status, script = await asyncio.to_thread(
            _get, f"http://127.0.0.1:{api_port}/static/console.js"
        )
        assert status == 200 and len(script) > 1000
        deadline = time.monotonic() + 40
        stored = 0
        while stored == 0 and time.monotonic() < deadline:
            answer = await writer.query('SELECT count("flow_m3h") FROM "pump"')
            series = answer["results"][0].get("series") or [{"values": [[0, 0]]}]
            stored = int(series[0]["values"][0][1])
            await asyncio.sleep(0.5)
        assert stored > 0, "the gateway's readings reached InfluxDB through the ingest"
        assert gateway.poll() is None and ingest.poll() is None
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(20) == 0
    finally:
        for process in (gateway, ingest):
            if process.poll() is None:
                process.kill()
            process.wait(10)
        await writer.close()
        await runner.stop()


async def test_data_path_and_console_from_the_wheel(
    dist: Dist,
    gateway_bin: Path,
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
) -> None:
    """The gateway from the clean `gateway` venv; the ingest and its console from the
    wheel's own files (unpacked, on this venv's libraries: the quick stand-in for a clean
    `central` venv, which the soak test below installs)."""
    unpacked = tmp_path / "wheel"
    run_ok(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            unpacked,
            dist.wheel,
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    probe = "import ingest.api.app as a; print(a.STATIC)"
    static = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert static.startswith(str(unpacked)), static
    await _data_path_and_console(
        demo_config,
        mosquitto,
        influxdb,
        tmp_path,
        [str(gateway_bin / "facility")],
        [sys.executable, "-m", "wiring.cli"],
        env,
    )


@pytest.mark.soak
async def test_data_path_and_console_from_clean_gateway_and_central_installs(
    dist: Dist,
    gateway_bin: Path,
    demo_config: SiteConfig,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
) -> None:
    central_bin = _venv(tmp_path / "central", f"{dist.wheel}[central]")
    await _data_path_and_console(
        demo_config,
        mosquitto,
        influxdb,
        tmp_path,
        [str(gateway_bin / "facility")],
        [str(central_bin / "facility")],
        dict(os.environ),
    )


@pytest.fixture(autouse=True)
def _no_checkout_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The installed code must not be shadowed by the checkout through PYTHONPATH."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    yield
