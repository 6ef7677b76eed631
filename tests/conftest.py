"""Fixtures shared by every test: the demo site and private real services; the
hooks that spread the suite over pytest-xdist workers (tests/parallel.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from facility.config import SiteConfig, load_site_config
from tests.parallel import GROUPS_FOLDER_ENV, SharedFixtureScheduling, slow_first, write_groups
from tests.services import Mosquitto, PtyPair
from wiring.services import InfluxDB, VictoriaMetrics

if TYPE_CHECKING:
    from tests.history import SimulatedDay

ROOT = Path(__file__).resolve().parents[1]
DEMO_SITE = ROOT / "deploy" / "sites" / "demo"
# The demo site's own Modbus ports (15021-15042): a test serving them carries this
# mark, so no two such tests run at once on the workers; nothing else binds them.
DEMO_PORTS = pytest.mark.xdist_group("demo_site_ports")
# Workers beyond the cores for `-n auto` (pyproject's addopts): many tests wait on
# services, subprocesses and sleeps, but the longest are CPU-bound; measured on the
# 2-core CI machine (docs/testing.md, "Parallel workers").
EXTRA_WORKERS = 1


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    wanted = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")  # as xdist's own default
    return int(wanted) if wanted else (os.cpu_count() or 1) + EXTRA_WORKERS


def pytest_configure(config: pytest.Config) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:  # the controller: workers inherit it
        folder = tempfile.mkdtemp(prefix="facility-test-groups-")
        os.environ[GROUPS_FOLDER_ENV] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow_first(items)
    write_groups(items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None  # another --dist asked for: xdist's own
    return SharedFixtureScheduling(config, log, Path(os.environ[GROUPS_FOLDER_ENV]))


@pytest.fixture(scope="session")
def demo_config() -> SiteConfig:
    return load_site_config(DEMO_SITE)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.workdir.mkdir()
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(tmp_path)
    pair.start()
    yield pair
    pair.stop()


@pytest.fixture
def influxdb(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[InfluxDB]:
    """A private influxd, started. Options through indirect parametrization, e.g.
    @pytest.mark.parametrize("influxdb", [{"auth_enabled": True}], indirect=True)."""
    options: dict[str, Any] = getattr(request, "param", {})
    server = InfluxDB(tmp_path / "influxdb", **options)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def victoria_metrics(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[VictoriaMetrics]:
    """A private VictoriaMetrics, started. Options through indirect parametrization, e.g.
    @pytest.mark.parametrize("victoria_metrics", [{"username": "u", "password": "p"}],
    indirect=True)."""
    options: dict[str, Any] = getattr(request, "param", {})
    server = VictoriaMetrics(tmp_path / "victoria-metrics", **options)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def simulated_day(
    demo_config: SiteConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimulatedDay]:
    """Yesterday of the demo site with the demo's incidents, in a private InfluxDB
    (tests/history.py). Made once per session (~1 min); tests must not write to it."""
    from tests.history import make_simulated_day  # imports this module's DEMO_SITE

    day = make_simulated_day(demo_config, tmp_path_factory.mktemp("simulated_day"))
    yield day
    day.close()
    day.influxdb.stop()
