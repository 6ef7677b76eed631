"""SIGHUP applies the notifier's roster and route changes in a running `facility ingest
run`, says in its log what changed but takes a restart, and refuses a broken file
whole. Real Mosquitto, InfluxDB, an SMTP server and the ingest process; a pump trip
published as a gateway batch."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiomqtt
import pytest
import yaml

from facility.clock import now_ms
from facility.wire import Batch, Reading, encode_batch, topic
from tests.conftest import ROOT
from tests.integration._ingest import read_log_until, start_ingest, write_ingest_config
from tests.integration.test_ingest_service import until
from tests.integration.test_notifier import GUO, LI, SECRET_ENV, ZHANG, write_config
from tests.services import Mosquitto
from wiring.catchers import MailCatcher
from wiring.services import InfluxDB

NIGHT_CREW = """\
  - id: night
    name: Fengshou night crew
    members: [guo_hua]
    roster: {start: 2026-06-01, handover: "08:00", timezone: Asia/Shanghai}
routes:
  - {match: {site: fengshou}, crew: night}
"""


async def trip(broker: int) -> None:
    now = now_ms()
    readings = [Reading("pump_1", "tripped", now, True), Reading("pump_1", "running", now, False)]
    batch = Batch("fengshou", "xiba", 7, 1, "live", now, readings)
    async with aiomqtt.Client("127.0.0.1", broker, identifier="fake-gateway") as client:
        await client.publish(topic("fengshou", "xiba", "up"), encode_batch(batch), qos=1)


async def test_sighup_applies_new_routes_and_rosters_and_names_what_needs_a_restart(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "test-secret-0123456789abcdef")
    smtp = MailCatcher()
    smtp.start()
    config_file = write_ingest_config(tmp_path, mosquitto.port, influxdb.url)
    write_config(tmp_path, smtp.port)
    notify = tmp_path / "notify.yaml"
    notify.write_text(notify.read_text().replace("group_wait: 30s", "group_wait: 1s"))
    settings = yaml.safe_load(config_file.read_text())
    settings["ingest"]["alarms"] = {
        "rules": str(ROOT / "deploy" / "alarms" / "rules.yaml"),
        "tick_s": 0.2,
        "notify": str(notify),
    }
    config_file.write_text(yaml.safe_dump(settings))
    process = start_ingest(config_file)
    try:
        log = await asyncio.to_thread(read_log_until, process, "serving", 60)
        good = notify.read_text()
        notify.write_text(good.replace("crew: water}", "crew: watr}"))  # a typo: refused
        process.send_signal(signal.SIGHUP)
        log += await asyncio.to_thread(read_log_until, process, "reload refused", 30)
        notify.write_text(good)
        # fengshou's alarms now go to a night crew of Guo Hua; the ack links' address
        # moves, which the running API and its signed links cannot follow
        text = notify.read_text()
        text = text.replace("routes:\n  - {match: {site: fengshou}, crew: water}\n", NIGHT_CREW)
        text = text.replace('base_url: "http://127.0.0.1:8080"', 'base_url: "http://alarms.x"')
        notify.write_text(text)
        process.send_signal(signal.SIGHUP)
        log += await asyncio.to_thread(read_log_until, process, "site model reloaded", 30)
        await trip(mosquitto.port)
        await until(lambda: _mailed(smtp, GUO), 30, "the night crew's mail")
        await asyncio.sleep(1.5)  # a second group would have gone out by now
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        process.kill()
        smtp.stop()
    assert process.stderr is not None
    log += process.stderr.read().decode()
    told = {address for m in smtp.mails for address in m.to}
    assert told == {GUO}, f"the old route's crew was told: {told & {LI, ZHANG}}"
    assert "routes[0].crew: no crew 'watr' in crews" in log and f"{notify}:" in log
    assert "notifier config reloaded" in log and "1 routes" in log
    assert f"{notify}: ack_links changed: takes effect after a restart" in log


async def _mailed(smtp: MailCatcher, address: str) -> bool:
    await asyncio.sleep(0)
    return any(address in m.to for m in smtp.mails)
