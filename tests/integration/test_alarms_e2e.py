"""Alarms through the real path: simulated devices → gateway (Modbus) → Mosquitto →
ingest (validate, InfluxDB, alarm engine, alarm book) → alarm events in InfluxDB.
A device that stops answering raises `device_not_responding` from the gateway's own
device status, and only that: the gateway backs off polling it, so its readings grow
sparser than the device deadman allows, but the narrower cause holds `device_silent`
back (one alarm per cause); a gateway that goes silent raises `gateway_offline` and clears when it
is back; a restart of the ingest keeps the states and tells nothing twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from facility.config import SiteConfig
from ingest.alarms.book import AlarmBook
from ingest.alarms.model import AlarmKey, AlarmState
from ingest.config import load_ingest_config
from ingest.influx import InfluxV1Writer
from ingest.service import IngestService
from simulators.modbus_server import CommsFault, UnitFault
from tests.integration._gateway import gateway_for, one_station, served_at
from tests.integration._ingest import DB, write_ingest_config
from tests.integration.test_gateway_e2e import start_site
from tests.integration.test_ingest_service import until
from tests.services import Mosquitto
from wiring.services import InfluxDB

FAST_RULES = {
    "rules": {
        "device_not_responding": {
            "kind": "device",
            "when": "not comm_ok and exception_code == 0",
            "on_delay": "1s",
            "priority": "high",
        },
        # The gateway backs a failing device off (0.5, 1, 2, 4, 8 s ...): past 3 s its
        # status readings are further apart than this deadman allows.
        "device_silent": {"kind": "silent", "silent_for": "3s", "priority": "medium"},
        "gateway_offline": {"kind": "gateway", "silent_for": "3s", "priority": "high"},
    }
}
TANK = AlarmKey("fengshou", "xiba", "tank_no4", "device_not_responding")
GATEWAY = AlarmKey("fengshou", "xiba", "gateway", "gateway_offline")


def alarm_service(folder: Path, broker: int, influx: str) -> IngestService:
    config_file = write_ingest_config(folder, broker, influx)
    rules = folder / "rules.yaml"
    rules.write_text(yaml.safe_dump(FAST_RULES))
    text = yaml.safe_load(config_file.read_text())
    text["ingest"]["alarms"] = {"rules": str(rules), "tick_s": 0.5}
    config_file.write_text(yaml.safe_dump(text))
    return IngestService(load_ingest_config(config_file))


async def test_device_and_gateway_alarms_from_the_real_gateway_path(
    demo_config: SiteConfig, mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    config = one_station(demo_config, "fengshou", "xiba")
    runner = await start_site(config, mosquitto)
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    service = alarm_service(tmp_path / "ingest", mosquitto.port, influxdb.url)
    await service.start()
    assert service.alarms is not None
    book = service.alarms.book
    gateway = gateway_for(
        served_at(config, runner), "fengshou", "xiba", tmp_path / "gw", mosquitto.port
    )
    gateway.start()
    try:
        await asyncio.sleep(2.0)
        assert book.active() == [], "a healthy station raises nothing"
        server = runner.endpoints[0].server
        server.faults = {20: UnitFault(CommsFault.NO_RESPONSE)}  # tank_no4 stops answering
        await until(lambda: _state(book, TANK, AlarmState.UNACKED), 20, "device_not_responding")
        await asyncio.sleep(12.0)  # backed off past the deadman's 3 s
        server.faults = {}
        await until(lambda: _state(book, TANK, AlarmState.RTN_UNACKED), 20, "its return")
        await gateway.stop()
        await until(lambda: _state(book, GATEWAY, AlarmState.UNACKED), 20, "gateway_offline")
        gateway = gateway_for(
            served_at(config, runner), "fengshou", "xiba", tmp_path / "gw", mosquitto.port
        )
        gateway.start()
        await until(lambda: _state(book, GATEWAY, AlarmState.RTN_UNACKED), 20, "it back")
    finally:
        await gateway.stop()
        await service.stop()
        await runner.stop()
    events = await writer.query('SELECT "event", "state" FROM "alarm_event" GROUP BY "rule"')
    by_rule = {
        s["tags"]["rule"]: [v[1] for v in s["values"]] for s in events["results"][0]["series"]
    }
    assert by_rule == {
        "device_not_responding": ["raised", "cleared"],
        "gateway_offline": ["raised", "cleared"],
    }
    await writer.close()
    again = alarm_service(tmp_path / "ingest", mosquitto.port, influxdb.url)
    assert again.alarms is not None
    told = again.alarms.book.history()
    assert [(t.key.rule, t.event) for t in told] == [
        ("device_not_responding", "raised"),
        ("device_not_responding", "cleared"),
        ("gateway_offline", "raised"),
        ("gateway_offline", "cleared"),
    ]
    assert {a.key: a.state for a in again.alarms.book.active()} == {
        TANK: AlarmState.RTN_UNACKED,
        GATEWAY: AlarmState.RTN_UNACKED,
    }
    again.alarms.close()
    again.dead_letters.close()
    await again.writer.close()


async def _state(book: AlarmBook, key: AlarmKey, state: AlarmState) -> bool:
    alarm = book.get(key)
    return alarm is not None and alarm.state is state
