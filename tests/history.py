"""A simulated day of the demo site in a private InfluxDB, made once per test session.

The day is yesterday in the site's time zone, midnight to midnight, with the README
demo's incidents (deploy/sites/demo/scenarios/demo_incidents.yaml, in the night shift)
plus a lot-full period and a gateway uplink outage (tests/simulated_day_faults.yaml, in
the day shift), and a simulated crew acknowledging each alarm ten minutes after it is
raised. Polls every 60 s. The alarm KPIs are counted per operator position as the
ingest counts them with the demo's notifier: the crews its routes name.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from facility.config import SiteConfig
from ingest.alarms.notify import NotifyConfig, load_notify_config
from simulators.scenario import Scenario, load_scenario
from tests.conftest import DEMO_SITE, ROOT
from wiring.history import HistoryResult, InfluxTarget, SimulatedHistory, fill_influx
from wiring.services import InfluxDB

RULES = ROOT / "deploy" / "alarms" / "rules.yaml"
NOTIFY = ROOT / "deploy" / "alarms" / "notify.yaml"  # its routes: the KPIs' positions
SCENARIO = DEMO_SITE / "scenarios" / "demo_incidents.yaml"
EXTRA_FAULTS = ROOT / "tests" / "simulated_day_faults.yaml"
ACK_SECRET = "FACILITY_ACK_SECRET"
SITE_TZ = ZoneInfo("Asia/Shanghai")
DATABASE = "facility"
HOUR_MS = 3_600_000


@dataclass
class SimulatedDay:
    influxdb: InfluxDB
    database: str
    scenario: Scenario
    result: HistoryResult  # start_ms, end_ms, ground truth at both ends
    alarm_book: Path
    poll_s: float
    # One kept-alive client for the tests' queries: `httpx.get` makes a client per call,
    # loading the CA bundle each time (35 ms of CPU: most of the panel test's, 2,413 calls).
    _http: httpx.Client | None = field(default=None, init=False, repr=False)
    _remembered: dict[str, dict[str, Any]] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return self.influxdb.url

    def statement(self, text: str) -> dict[str, Any]:
        """One InfluxQL statement's result over the day: its `series`, or its `error`."""
        if self._remembered is not None and text in self._remembered:
            return self._remembered[text]
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, timeout=30)
        params = {"db": self.database, "q": text, "epoch": "ms"}
        answer = self._http.get("/query", params=params).json()
        result: dict[str, Any] = answer["results"][0]
        if self._remembered is not None:
            self._remembered[text] = result
        return result

    @contextmanager
    def remembering(self) -> Iterator[None]:
        """Within, a statement asked again gets its first answer, not InfluxDB's work
        again: nothing writes to the day while tests read it, and the panel test asks
        its 1,154 different queries 2,413 times (a site-wide panel under each station)."""
        self._remembered = {}
        try:
            yield
        finally:
            self._remembered = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def yesterday_ms(now: datetime | None = None) -> int:
    today = (now or datetime.now(SITE_TZ)).astimezone(SITE_TZ).date()
    midnight = datetime.combine(today - timedelta(days=1), datetime.min.time(), SITE_TZ)
    return int(midnight.timestamp() * 1000)


def day_scenario(config: SiteConfig) -> Scenario:
    """The demo's incidents and the extra faults, each file checked against the site."""
    demo, extra = load_scenario(SCENARIO, config), load_scenario(EXTRA_FAULTS, config)
    return demo.model_copy(update={"faults": [*demo.faults, *extra.faults]})


def demo_notify() -> NotifyConfig:
    """The demo's notifier config, for its routes: the history signs no ack links, so
    any secret does while it loads."""
    before = os.environ.get(ACK_SECRET)
    os.environ[ACK_SECRET] = "simulated-day-secret"
    try:
        return load_notify_config(NOTIFY)
    finally:
        if before is None:
            del os.environ[ACK_SECRET]
        else:
            os.environ[ACK_SECRET] = before


def make_simulated_day(config: SiteConfig, workdir: Path, poll_s: float = 60.0) -> SimulatedDay:
    # The rollup's queries with a GC target of 200: 24 -> 19 s of influxd's CPU for
    # 120 MB more at its peak (400: 18 s for 460 MB more)
    server = InfluxDB(workdir / "influxdb", gc_percent=200)
    server.start()
    scenario = day_scenario(config)
    history = SimulatedHistory(config, scenario, yesterday_ms(), poll_s=poll_s)
    # A busy machine's rollup: 6 h a query (the same rows as 1 h, 30 % less of influxd's CPU)
    target = InfluxTarget(server.url, DATABASE, timeout_s=120.0, rollup_chunk_ms=6 * HOUR_MS)
    try:
        result = asyncio.run(fill_influx(history, target, workdir, RULES, 86_400.0, demo_notify()))
    except BaseException:
        server.stop()  # the session fixture never gets the server to stop it
        raise
    return SimulatedDay(server, DATABASE, scenario, result, workdir / "alarms.sqlite", poll_s)
