"""The whole alarm story through `IngestService` as `facility ingest run` builds it: a
gateway batch over real Mosquitto trips a pump, the ingest stores it, raises the alarm,
mails the crew on duty (real SMTP server), lists it in the API, a crew member
acknowledges it over HTTP, the trip clears into the latched state, a reset returns it
to normal, and every transition is an alarm event in InfluxDB."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest
import yaml

from facility.catchers import MailCatcher
from facility.services import InfluxDB
from facility.wire import Batch, Reading, encode_batch, topic
from ingest.alarms.book import Alarm
from ingest.alarms.model import AlarmKey, AlarmState
from ingest.config import load_ingest_config
from ingest.influx import InfluxV1Writer
from ingest.service import IngestService
from tests.integration._ingest import DB, write_ingest_config
from tests.integration.test_ingest_service import until
from tests.integration.test_notifier import LI, SECRET_ENV, ZHANG, write_config
from tests.services import Mosquitto

TRIP = AlarmKey("fengshou", "xiba", "pump_1", "pump_trip")
CREW_TOKEN = "crew-token-for-the-test-0123"


@pytest.fixture(autouse=True)
def ack_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "test-secret-0123456789abcdef")


def service_with_alarms(folder: Path, broker: int, influx: str, smtp: int) -> IngestService:
    config_file = write_ingest_config(folder, broker, influx)
    write_config(folder, smtp)  # notify.yaml: crew `water` for fengshou, mail to the catcher
    notify = folder / "notify.yaml"
    notify.write_text(notify.read_text().replace("group_wait: 30s", "group_wait: 1s"))
    tokens = folder / "tokens.yaml"
    digest = hashlib.sha256(CREW_TOKEN.encode()).hexdigest()
    tokens.write_text(
        yaml.safe_dump({"users": [{"name": "li.crew", "role": "crew", "token_sha256": digest}]})
    )
    text = yaml.safe_load(config_file.read_text())
    rules = Path(__file__).resolve().parents[2] / "deploy" / "alarms" / "rules.yaml"
    text["ingest"]["alarms"] = {
        "rules": str(rules),
        "tick_s": 0.2,
        "notify": str(notify),
        "api": {"port": 0, "tokens": str(tokens)},
    }
    config_file.write_text(yaml.safe_dump(text))
    return IngestService(load_ingest_config(config_file))


async def send(client: aiomqtt.Client, seq: int, tripped: bool) -> None:
    now = int(time.time() * 1000)
    readings = [
        Reading("pump_1", "tripped", now, tripped),
        Reading("pump_1", "running", now, False),
    ]
    batch = Batch("fengshou", "xiba", 7, seq, "live", now, readings)
    await client.publish(topic("fengshou", "xiba", "up"), encode_batch(batch), qos=1)


async def test_trip_raised_mailed_listed_acknowledged_cleared_and_reset(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    smtp = MailCatcher()
    smtp.start()
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    service = service_with_alarms(tmp_path, mosquitto.port, influxdb.url, smtp.port)
    await service.start()
    assert service.alarms is not None and service.api is not None
    http = httpx.AsyncClient(
        base_url=service.api.url, headers={"Authorization": f"Bearer {CREW_TOKEN}"}
    )
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="fake-gateway") as gw:
            await send(gw, 1, tripped=True)
            await until(lambda: _mailed(smtp), 20, "the crew's mail")
            board = (await http.get("/api/alarms")).json()
            assert [a["key"] for a in board["alarms"]] == [str(TRIP)]
            ack = await http.post(f"/api/alarms/{TRIP}/ack", json={"comment": "on my way"})
            assert ack.status_code == 200, ack.text
            kpis = (await http.get("/api/kpis")).json()
            assert kpis["alarms"] == 1 and kpis["acknowledged"] == 1
            assert kpis["positions"][0]["position"] == "fengshou"
            [water] = (await http.get("/api/rosters")).json()
            on_duty = [p["id"] for p in water["on_duty"]]
            assert water["crew"] == "water" and len(on_duty) == 1
            assert {"li_wei": LI, "zhang_min": ZHANG}[on_duty[0]] in _mailed_to(smtp)
            assert [t["tier"] for t in water["escalation"]] == ["supervisor", "manager"]
            assert _alarm(service, TRIP).state is AlarmState.ACKED
            await send(gw, 2, tripped=False)
            await until(lambda: _in_state(service, AlarmState.LATCHED), 20, "the latch")
            reset = await http.post(f"/api/alarms/{TRIP}/reset", json={"comment": "reset at panel"})
            assert reset.status_code == 200, reset.text
    finally:
        await http.aclose()
        await service.stop()
        smtp.stop()
    [mail, *_] = [m for m in smtp.mails if set(m.to) & {LI, ZHANG}]
    assert "pump_trip" in mail.body or "Pump 1" in mail.body
    assert mail.ack_urls, "the mail carries an acknowledge link"
    events = await writer.query('SELECT "event", "user" FROM "alarm_event"')
    rows = [(v[1], v[2]) for v in events["results"][0]["series"][0]["values"]]
    assert rows == [
        ("raised", None),
        ("acknowledged", "li.crew"),
        ("cleared", None),
        ("reset", "li.crew"),
    ]
    await writer.close()


async def _mailed(smtp: MailCatcher) -> bool:
    await asyncio.sleep(0)
    return any(set(m.to) & {LI, ZHANG} for m in smtp.mails)


def _mailed_to(smtp: MailCatcher) -> set[str]:
    return {address for m in smtp.mails for address in m.to}


def _alarm(service: IngestService, key: AlarmKey) -> Alarm:
    assert service.alarms is not None
    alarm = service.alarms.book.get(key)
    assert alarm is not None
    return alarm


async def _in_state(service: IngestService, state: AlarmState) -> bool:
    assert service.alarms is not None
    alarm = service.alarms.book.get(TRIP)
    return alarm is not None and alarm.state is state
