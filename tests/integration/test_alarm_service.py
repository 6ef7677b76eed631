"""The whole alarm story through `IngestService` as `facility ingest run` builds it: a
gateway batch over real Mosquitto trips a pump, the ingest stores it, raises the alarm,
mails the crew on duty (real SMTP server), lists it in the API, a crew member
acknowledges it over HTTP, the trip clears into the latched state, a reset returns it
to normal, and every transition is an alarm event in InfluxDB.

Also through the service: the alarm KPIs it writes to InfluxDB (per site and per
operator position) for a known alarm book, and a restart in the middle of an incident
(state kept, nothing told twice, escalation and reminders on the stored times)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import yaml

from facility.aio import cancel_and_wait
from facility.clock import now_ms
from facility.wire import Batch, Reading, encode_batch, topic
from ingest.alarms.book import Alarm, AlarmBook
from ingest.alarms.kpi import TEN_MIN_MS
from ingest.alarms.model import AlarmKey, AlarmState, ConditionChange, Priority
from ingest.config import load_ingest_config
from ingest.influx import InfluxV1Writer
from ingest.service import IngestService
from tests.integration._ingest import DB, write_ingest_config
from tests.integration.test_ingest_service import until
from tests.integration.test_notifier import LI, SECRET_ENV, ZHANG, ZHAO, Clock, write_config
from tests.services import Mosquitto
from wiring.catchers import MailCatcher
from wiring.services import InfluxDB

TRIP = AlarmKey("fengshou", "xiba", "pump_1", "pump_trip")
CREW_TOKEN = "crew-token-for-the-test-0123"
MINUTE, HOUR = 60_000, 3_600_000


@pytest.fixture(autouse=True)
def ack_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "test-secret-0123456789abcdef")


def service_with_alarms(
    folder: Path,
    broker: int,
    influx: str,
    smtp: int,
    notify_edits: Mapping[str, str] | None = None,
    kpi: Mapping[str, object] | None = None,
    rules: Path | None = None,
) -> IngestService:
    """The service with rules (the demo's unless given), notifier (crew `water` for
    fengshou, mail to the catcher) and API. `notify_edits` replace text in notify.yaml;
    `kpi` is `alarms.kpi`."""
    config_file = write_ingest_config(folder, broker, influx)
    write_config(folder, smtp)
    notify = folder / "notify.yaml"
    text = notify.read_text()
    for old, new in {"group_wait: 30s": "group_wait: 1s", **(notify_edits or {})}.items():
        assert old in text, old
        text = text.replace(old, new)
    notify.write_text(text)
    tokens = folder / "tokens.yaml"
    digest = hashlib.sha256(CREW_TOKEN.encode()).hexdigest()
    tokens.write_text(
        yaml.safe_dump({"users": [{"name": "li.crew", "role": "crew", "token_sha256": digest}]})
    )
    settings = yaml.safe_load(config_file.read_text())
    rules = rules or Path(__file__).resolve().parents[2] / "deploy" / "alarms" / "rules.yaml"
    settings["ingest"]["alarms"] = {
        "rules": str(rules),
        "tick_s": 0.2,
        "notify": str(notify),
        "api": {"port": 0, "tokens": str(tokens)},
        **({"kpi": dict(kpi)} if kpi else {}),
    }
    config_file.write_text(yaml.safe_dump(settings))
    return IngestService(load_ingest_config(config_file))


async def send(client: aiomqtt.Client, seq: int, tripped: bool) -> None:
    now = now_ms()
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
            # the operator position is the crew the notifier routes fengshou to
            assert [p["position"] for p in kpis["positions"] if p["alarms"]] == ["water"]
            assert [s["position"] for s in kpis["sites"] if s["alarms"]] == ["fengshou"]
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


# -- the alarm KPIs in InfluxDB -----------------------------------------------------------


def _known_alarm_book(path: Path, now_ms: int) -> int:
    """An alarm book with a known day behind it (written before the service opens it,
    on a clock of our own so the times to acknowledge are exact). Returns the start of
    the 10-minute interval the Fengshou flood is in."""
    flood_at = (now_ms - 2 * HOUR) // TEN_MIN_MS * TEN_MIN_MS
    clock = Clock(now_ms)
    with AlarmBook(path, now_ms=clock) as book:
        for i in range(12):  # a flood: 12 in one clock interval
            tank = AlarmKey("fengshou", "xiba", f"tank_{i}", "tank_level_low")
            book.apply(_change(tank, True, flood_at + i * 5_000, Priority.HIGH))
        for minutes, rule, ack_s in ((30, "pump_trip", 30), (40, "pump_dry_run", 90)):
            key = AlarmKey("fengshou", "sankeshu", "pump_1", rule)
            book.apply(_change(key, True, flood_at + minutes * MINUTE, Priority.CRITICAL))
            clock.now_ms = flood_at + minutes * MINUTE + ack_s * 1000
            book.acknowledge(key, "li_wei")
        gate = AlarmKey("wanda", "wanda_lot", "gate_1", "gate_stuck_open")
        for n in range(3):  # chattering: three raises within a minute
            at = flood_at + 50 * MINUTE + n * 20_000
            book.apply(_change(gate, True, at, Priority.MEDIUM))
            book.apply(_change(gate, False, at + 5_000, Priority.MEDIUM))
        overload = AlarmKey("huilongba", "nongken", "transformer", "transformer_overload")
        book.apply(_change(overload, True, now_ms - 30 * HOUR, Priority.HIGH))  # stale
    return flood_at


def _change(key: AlarmKey, active: bool, at_ms: int, priority: Priority) -> ConditionChange:
    return ConditionChange(key, active, at_ms, priority, key.rule.replace("_", " "))


async def test_kpis_written_to_influxdb_per_site_and_per_operator_position(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    _known_alarm_book(tmp_path / "data" / "alarms.sqlite", now_ms())
    kpi = {"write_every_s": 0.3}
    service = service_with_alarms(tmp_path, mosquitto.port, influxdb.url, 1, kpi=kpi)
    await service.start()
    try:
        await until(lambda: _has_points(writer, "alarm_kpi_position"), 20, "KPI points")
    finally:
        await service.stop()

    sites = await _latest(writer, "alarm_kpi", "site")
    assert set(sites) == {s.id for s in service.config.site.sites}  # quiet ones too: zeros
    fengshou = {
        "alarms": 14,
        "raised_critical": 2,
        "raised_high": 12,
        "raised_medium": 0,
        "raised_low": 0,
        "per_10min_average": round(14 / 144, 3),
        "per_10min_peak": 12,
        "flood_periods": 1,
        "time_in_flood_pct": round(100 / 144, 2),
        "chattering": 0,
        "stale": 0,
        "acknowledged": 2,
        "ack_median_s": 60.0,
        "ack_p90_s": 90.0,
    }
    assert sites["fengshou"] == fengshou
    assert _some(sites["wanda"], "alarms", "raised_medium", "chattering", "per_10min_peak") == {
        "alarms": 3,
        "raised_medium": 3,
        "chattering": 1,
        "per_10min_peak": 3,
    }
    assert _some(sites["huilongba"], "alarms", "stale", "ack_median_s") == {
        "alarms": 0,
        "stale": 1,
        "ack_median_s": None,  # nothing acknowledged: no field, not 0
    }
    # Operator positions: fengshou's alarms go to crew `water` (the test's notify.yaml),
    # the other sites have no route, so each is its own position.
    positions = await _latest(writer, "alarm_kpi_position", "position")
    assert positions["water"] == fengshou
    assert "fengshou" not in positions
    assert (positions["wanda"]["chattering"], positions["huilongba"]["stale"]) == (1, 1)

    types = await writer.query('SHOW FIELD KEYS FROM "alarm_kpi"')
    found = dict(types["results"][0]["series"][0]["values"])
    floats = {"per_10min_average", "time_in_flood_pct", "ack_median_s", "ack_p90_s"}
    assert {name for name, kind in found.items() if kind == "float"} == floats
    assert {name for name, kind in found.items() if kind == "integer"} == set(fengshou) - floats
    await writer.close()


async def _has_points(writer: InfluxV1Writer, measurement: str) -> bool:
    answer = await writer.query(f'SELECT count("alarms") FROM "{measurement}"')
    return bool(answer["results"][0].get("series"))


async def _latest(writer: InfluxV1Writer, measurement: str, tag: str) -> dict[str, dict[str, Any]]:
    answer = await writer.query(
        f'SELECT * FROM "{measurement}" GROUP BY "{tag}" ORDER BY time DESC LIMIT 1'
    )
    out = {}
    for series in answer["results"][0]["series"]:
        columns, [row] = series["columns"], series["values"]
        out[series["tags"][tag]] = {c: v for c, v in zip(columns, row, strict=True) if c != "time"}
    return out


def _some(fields: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: fields.get(name) for name in names}


# -- a restart in the middle of an incident ---------------------------------------------


ESCALATE_S, REMIND_S = 4, 6
DOWN_UNTIL_S = 2.5  # the service is down from just after the first mail until then


async def test_restart_mid_incident_keeps_state_timers_and_tells_nothing_twice(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """Raised and mailed → the service stops → starts again on the same alarm book and
    notifier store, readings still saying tripped → the supervisor is told and the crew
    reminded on the times counted from the first mail, not from the restart → the trip
    clears → one return-to-normal mail each, and the raise was mailed once."""
    smtp = MailCatcher()
    smtp.start()
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    edits = {
        "high: {supervisor: 2h}": f"high: {{supervisor: {ESCALATE_S}s}}",
        "repeat_every: {critical: 0, high: 15m}": f"repeat_every: {{high: {REMIND_S}s}}",
        "group_wait: 1s": "group_wait: 0s",
        "group_interval: 1m": "group_interval: 1s",  # the clear is not held back a minute
    }
    first = service_with_alarms(tmp_path, mosquitto.port, influxdb.url, smtp.port, edits)
    second: IngestService | None = None
    feeding: asyncio.Task[None] | None = None
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="fake-gateway") as gw:
            await first.start()
            await send(gw, 1, tripped=True)
            await until(lambda: _mailed(smtp), 20, "the crew's mail")
            before = _alarm(first, TRIP)
            assert first.notifier is not None
            [episode] = first.notifier.store.open_episodes()
            await first.stop()
            [crew_mail] = smtp.mails[0].to

            await asyncio.sleep(max(0.0, episode.opened_ms / 1000 + DOWN_UNTIL_S - time.time()))
            second = IngestService(load_ingest_config(first.config.file))
            assert _alarm(second, TRIP) == before  # the same alarm, raised once
            await second.start()
            feeding = asyncio.create_task(_keep_tripped(gw, first_seq=2))
            await until(lambda: _mailed_with(smtp, ZHAO, "ESCALATED"), 20, "the escalation")
            await until(lambda: _mailed_with(smtp, crew_mail, "REMINDER"), 20, "a reminder")
            await cancel_and_wait(feeding)
            await send(gw, 1000, tripped=False)
            await until(lambda: _mailed_with(smtp, ZHAO, "CLEARED"), 20, "the clear")
            await until(lambda: _mailed_with(smtp, crew_mail, "CLEARED"), 20, "the clear")
            await asyncio.sleep(1.0)  # five ticks: time for anything told twice to show
            assert second.notifier is not None and second.alarms is not None
            sent = second.notifier.deliveries(limit=1000)
            after = _alarm(second, TRIP)
            history = second.alarms.book.history(TRIP)
    finally:
        if feeding is not None:
            await cancel_and_wait(feeding)
        if second is not None:
            await second.stop()
        smtp.stop()
        await writer.close()

    assert after.state is AlarmState.RTN_UNACKED and after.raised_ms == before.raised_ms
    assert [t.event.value for t in history] == ["raised", "cleared"]
    told = sorted((address, _headline(m.subject)) for m in smtp.mails for address in m.to)
    assert [t for t in told if t[1] == "RAISED"] == [(crew_mail, "RAISED")]
    assert [t for t in told if t[1] == "CLEARED"] == [(crew_mail, "CLEARED"), (ZHAO, "CLEARED")]
    # The timers ran on the stored times: due 4 s and 6 s after the crew was told,
    # while counted from the restart they would be due at 6.5 s and 8.5 s at the soonest.
    decided: dict[str, int] = {}  # the first of each kind, after the crew was told
    for d in reversed(sent):
        decided.setdefault(d.kind, d.created_ms - episode.opened_ms)
    assert ESCALATE_S * 1000 <= decided["escalation"] < (DOWN_UNTIL_S + ESCALATE_S) * 1000
    assert REMIND_S * 1000 <= decided["reminder"] < (DOWN_UNTIL_S + REMIND_S) * 1000
    assert all(d.status.value == "sent" for d in sent)


async def _keep_tripped(client: aiomqtt.Client, first_seq: int) -> None:
    """The gateway goes on polling: the pump is still tripped."""
    for seq in itertools.count(first_seq):
        await send(client, seq, tripped=True)
        await asyncio.sleep(0.5)


def _headline(subject: str) -> str:
    """RAISED, CLEARED, ESCALATED, REMINDER: the word after `[PRIORITY] `."""
    found = re.search(r"\] (\w+)", subject)
    return found[1] if found else subject


async def _mailed_with(smtp: MailCatcher, address: str, word: str) -> bool:
    await asyncio.sleep(0)
    return any(word in m.subject for m in smtp.to(address))
