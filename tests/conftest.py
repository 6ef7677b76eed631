"""Fixtures shared by every test: the demo site and private real services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from facility.config import SiteConfig, load_site_config
from tests.services import Mosquitto, PtyPair
from wiring.services import InfluxDB, VictoriaMetrics

if TYPE_CHECKING:
    from tests.history import SimulatedDay

ROOT = Path(__file__).resolve().parents[1]
DEMO_SITE = ROOT / "deploy" / "sites" / "demo"


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
    day.influxdb.stop()
