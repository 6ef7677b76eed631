"""The alarm rate over a window that is not a multiple of 10 minutes, asked of the real
API over HTTP (its KPIs computed from a real alarm book, as the service does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from facility.clock import now_ms
from facility.config import SiteConfig
from ingest.api import Role
from tests.integration.test_alarm_api import running_stack

MINUTE = 60_000


async def test_three_alarms_in_19_minutes_are_1_58_per_10_minutes(
    tmp_path: Path, demo_config: SiteConfig
) -> None:
    async with running_stack(tmp_path, demo_config, kpis=True) as stack:
        now = now_ms()
        for ago_min, (station, pump) in zip(
            (18, 10, 2),
            (("xiba", "pump_1"), ("sankeshu", "pump_1"), ("sankeshu", "pump_2")),
            strict=True,
        ):
            await stack.trip(station, pump, now - ago_min * MINUTE)
        async with stack.client(Role.VIEWER) as viewer:
            short = (await viewer.get("/api/kpis", params={"window": "19m"})).json()
            day = (await viewer.get("/api/kpis")).json()
    [fengshou] = short["positions"]
    assert fengshou["alarms"] == 3
    assert fengshou["per_10min_average"] == pytest.approx(3 / 1.9, abs=0.001)  # not 3.0
    assert day["positions"][0]["per_10min_average"] == pytest.approx(3 / 144, abs=0.001)
