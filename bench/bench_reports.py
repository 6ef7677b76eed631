"""A simulated day into InfluxDB, then the reports on it.

1. `facility history`'s path: the demo site's day (60 s polls, the demo incidents, the
   alarm pipeline and the simulated crew) delivered through the ingest's store into a
   private InfluxDB, rollups included: readings per second.
2. `facility report shift|daily|monthly` on that day, as a supervisor runs them (a new
   process each, Python start included): seconds each and the page's size.

    .venv/bin/python -m bench.bench_reports
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.common import DEMO, print_header, stop_service
from bench.common import DEMO_RULES as RULES
from facility.config import load_site_config
from simulators.scenario import load_scenario
from wiring.history import InfluxTarget, SimulatedHistory, fill_influx
from wiring.services import InfluxDB

SITE = DEMO
TZ = ZoneInfo("Asia/Shanghai")


def main() -> None:
    print_header("influxd")
    work = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    server = InfluxDB(work / "influxdb")
    server.start()
    try:
        day = datetime.combine(datetime.now(TZ).date() - timedelta(days=1), datetime.min.time())
        fill(server.url, work, day.replace(tzinfo=TZ))
        for kind, when in (
            ("shift", ["--at", f"{day.date()}T07:00"]),
            ("daily", ["--date", str(day.date())]),
            ("monthly", ["--month", day.strftime("%Y-%m")]),
        ):
            report(kind, when, server.url, work)
    finally:
        stop_service(server)


def fill(url: str, work: Path, day: datetime) -> None:
    config = load_site_config(SITE)
    scenario = load_scenario(SITE / "scenarios" / "demo_incidents.yaml", config)
    history = SimulatedHistory(config, scenario, int(day.timestamp() * 1000), poll_s=60)
    t0 = time.perf_counter()
    result = asyncio.run(fill_influx(history, InfluxTarget(url), work, RULES, 86_400))
    took = time.perf_counter() - t0
    print(
        f"history: {result.readings:,} readings of a day in {took:.1f} s = "
        f"{result.readings / took:,.0f} readings/s, {result.transitions} alarm transitions"
    )


def report(kind: str, when: list[str], url: str, work: Path) -> None:
    out = work / "reports"
    args = [sys.executable, "-m", "wiring.cli", "report", kind, "--site", str(SITE)]
    args += ["--alarm-book", str(work / "alarms.sqlite"), "--influx-url", url, "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run([*args, *when], check=True, capture_output=True)
    took = time.perf_counter() - t0
    page = max(out.glob(f"{kind}-*.html"), key=lambda p: p.stat().st_mtime)
    print(f"report {kind}: {took:.1f} s, {page.stat().st_size / 1e6:.2f} MB of HTML")


if __name__ == "__main__":
    main()
