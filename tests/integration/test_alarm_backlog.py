"""A station's link outage through the real service (`IngestService` on real Mosquitto,
InfluxDB and SMTP), delivered as the gateway delivers it when its link returns: the
live lane first, the backlog after, oldest first.

The transformer overload raised before the outage ended inside it: the alarm clears at
the event time the backlog shows (its 1-minute off-delay passed inside the outage),
although live data arrived first and already said the load was normal. A bearing that
ran hot and cooled again inside the outage raises nothing and mails nobody: it is a
late condition in the alarm book, and the shift handover report lists it. The mails
read in words (set ALARM_MAILS=DIR to keep their text)."""

from __future__ import annotations

import itertools
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import aiomqtt
import httpx
import pytest
import yaml
from typer.testing import CliRunner

from dashboards.reports.commands import ReportSources, report_app, shift_handover
from dashboards.reports.periods import DEFAULT_HANDOVERS, shift_period
from facility.clock import now_ms
from facility.config import SiteConfig
from facility.wire import Batch, Reading, encode_batch, topic
from ingest.alarms.book import AlarmBook, AlarmEvent, Transition
from ingest.alarms.model import AlarmKey, AlarmState
from ingest.influx import InfluxV1Writer
from tests.integration._ingest import DB
from tests.integration.test_alarm_service import CREW_TOKEN, service_with_alarms
from tests.integration.test_ingest_service import until
from tests.integration.test_notifier import LI, SECRET_ENV, ZHANG
from tests.services import Mosquitto
from wiring.catchers import Mail, MailCatcher
from wiring.services import InfluxDB

ROOT = Path(__file__).resolve().parents[2]
OVERLOAD = AlarmKey("fengshou", "xiba", "transformer", "transformer_overload")
BEARING = AlarmKey("fengshou", "xiba", "pump_1", "bearing_temp_high")
OFFLINE = AlarmKey("fengshou", "xiba", "gateway", "gateway_offline")
S = 1000
Lane = Literal["live", "backfill"]


@pytest.fixture(autouse=True)
def ack_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "test-secret-0123456789abcdef")


def outage_rules(folder: Path) -> Path:
    """The demo rules with a 2-second gateway deadman (the outage is short in wall time)
    and without the device deadman (the test feeds two devices of the station)."""
    rules = yaml.safe_load((ROOT / "deploy" / "alarms" / "rules.yaml").read_text())
    rules["rules"]["gateway_offline"]["silent_for"] = "2s"
    del rules["rules"]["device_silent"]
    path = folder / "rules.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(rules))
    return path


def poll(t_ms: int, load_pct: float, bearing_c: float) -> list[Reading]:
    return [
        Reading("gateway", "rss_mb", t_ms, 48.0, "g", "h"),
        Reading("transformer", "load_pct", t_ms, load_pct),
        Reading("pump_1", "bearing_temp_c", t_ms, bearing_c),
    ]


async def send(gw: aiomqtt.Client, seq: int, lane: Lane, readings: list[Reading]) -> None:
    batch = Batch("fengshou", "xiba", 7, seq, lane, now_ms(), readings)
    await gw.publish(topic("fengshou", "xiba", "up"), encode_batch(batch), qos=1)


async def test_live_data_first_then_the_backlog_through_the_service(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, demo_config: SiteConfig
) -> None:
    smtp = MailCatcher()
    smtp.start()
    writer = InfluxV1Writer(influxdb.url, DB)
    await writer.create_database(DB)
    service = service_with_alarms(
        tmp_path,
        mosquitto.port,
        influxdb.url,
        smtp.port,
        notify_edits={"group_interval: 1m": "group_interval: 1s"},
        rules=outage_rules(tmp_path / "r"),
    )
    await service.start()
    assert service.alarms is not None and service.api is not None
    book = service.alarms.book
    http = httpx.AsyncClient(  # 30 s: answers come slower with parallel workers
        base_url=service.api.url, headers={"Authorization": f"Bearer {CREW_TOKEN}"}, timeout=30
    )
    now = int(time.time()) * S
    start = now - 400 * S  # the overload began 400 s ago; the link went down at 60 s
    ended_at = start + 120 * S  # below 120 % from here on, inside the outage
    seq = itertools.count(1)
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="xiba-gw") as gw:
            before = [r for t in range(0, 60, 10) for r in poll(start + t * S, 125, 60)]
            await send(gw, next(seq), "live", before)
            await until(lambda: _state(book, OVERLOAD, AlarmState.UNACKED), 20, "the overload")
            await until(lambda: _mails_with(smtp, "RAISED"), 20, "the raise mail")
            ack = await http.post(f"/api/alarms/{OVERLOAD}/ack", json={"comment": "seen it"})
            assert ack.status_code == 200, ack.text
            await until(lambda: _mails_with(smtp, "ACKNOWLEDGED"), 20, "the ack mail")
            await until(lambda: _state(book, OFFLINE, AlarmState.UNACKED), 20, "offline")
            # the link is back: the live lane first, the load long normal
            await send(gw, next(seq), "live", poll(now, 80, 60))
            await until(lambda: _state(book, OFFLINE, AlarmState.RTN_UNACKED), 20, "back")
            assert _state_now(book, OVERLOAD) is AlarmState.ACKED  # its off-delay runs
            # then the backlog, oldest first, in two batches: the load fell below 120 % at
            # 120 s; the bearing ran at 90 degC from 200 s to 300 s
            backlog = [
                r
                for t in range(60, 400, 10)
                for r in poll(start + t * S, 125 if t < 120 else 80, 90 if 200 <= t < 300 else 60)
            ]
            half = len(backlog) // 2
            await send(gw, next(seq), "backfill", backlog[:half])
            await send(gw, next(seq), "backfill", backlog[half:])
            await until(lambda: _state(book, OVERLOAD, AlarmState.NORMAL), 20, "its end")
            await until(lambda: _mails_with(smtp, "CLEARED"), 20, "the clear mail")
            await until(lambda: _late_recorded(book), 20, "the late condition")
            late_api = (await http.get("/api/history", params={"event": "late"})).json()
    finally:
        await http.aclose()
        await service.stop()
        smtp.stop()

    [raised, acked, cleared] = [
        t for t in book_history(tmp_path, OVERLOAD) if t.event is not AlarmEvent.LATE
    ]
    assert (raised.event, raised.at_ms) == (AlarmEvent.RAISED, start)
    # the event time the off-delay passed in the backlog: 1 minute after the load fell,
    # although the live reading at `now` came first
    assert (cleared.event, cleared.at_ms) == (AlarmEvent.CLEARED, ended_at + 60 * S)
    assert cleared.message == "250 kVA transformer: load back to 80 % of its rating"
    assert acked.event is AlarmEvent.ACKNOWLEDGED
    events = await writer.query(
        'SELECT "event" FROM "alarm_event" WHERE "rule" = \'transformer_overload\'',
        epoch="ms",
    )
    stored = [(v[0], v[1]) for v in events["results"][0]["series"][0]["values"]]
    assert (ended_at + 60 * S, "cleared") in stored
    await writer.close()

    [late] = book_history(tmp_path, BEARING)
    assert (late.event, late.since_ms, late.at_ms, late.notify) == (
        AlarmEvent.LATE,
        start + 260 * S,  # 90 degC from 200 s, for its 1-minute on-delay
        start + 300 * S,  # back to 60 degC, past the 5-degree deadband
        False,
    )
    assert late.message == (
        "Pump 1: bearing at 90 degC, above 80 degC (for 40 s, over before its data arrived)"
    )
    assert [t["key"] for t in late_api] == [str(BEARING)]
    assert not [m for m in smtp.mails if "bearing" in (m.subject + m.body).lower()]

    mails = {word: _mail(smtp, word) for word in ("RAISED", "CLEARED", "ACKNOWLEDGED")}
    assert "250 kVA transformer: load 125 % of its rating" in mails["RAISED"]
    assert "250 kVA transformer: load back to 80 % of its rating" in mails["CLEARED"]
    assert "ACKNOWLEDGED by" in mails["ACKNOWLEDGED"] and "seen it" in mails["ACKNOWLEDGED"]
    for text in mails.values():
        assert "load_pct" not in text and "> 120" not in text, text
    keep = os.environ.get("ALARM_MAILS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for word, text in mails.items():
            (Path(keep) / f"{word.lower()}.txt").write_text(text, encoding="utf-8")

    # the shift handover of the shift the bearing ran hot in lists it
    tz = ZoneInfo("Asia/Shanghai")
    period = shift_period(datetime.fromtimestamp(late.at_ms / 1000, tz), tz, DEFAULT_HANDOVERS)
    sources = ReportSources(influxdb.url, DB, tmp_path / "data" / "alarms.sqlite")
    page, _ = shift_handover(demo_config, sources, period)
    section = page[page.index('id="late"') :]
    section = section[: section.index("</section>")]
    assert "fengshou/xiba/pump_1" in section and "bearing_temp_high" in section
    assert "bearing at 90 degC, above 80 degC" in section

    # and so does the daily report of its day, as `facility report daily` writes it
    day = datetime.fromtimestamp(late.at_ms / 1000, tz).date().isoformat()
    args = ["daily", "--site", str(ROOT / "deploy" / "sites" / "demo"), "--date", day]
    args += ["--alarm-book", str(tmp_path / "data" / "alarms.sqlite"), "--timezone", tz.key]
    args += ["--influx-url", influxdb.url, "--database", DB, "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(report_app, args)
    assert result.exit_code == 0, result.output
    daily = (tmp_path / "out" / f"daily-{day}.html").read_text(encoding="utf-8")
    daily_late = daily[daily.index('id="late"') :]
    assert "bearing at 90 degC, above 80 degC" in daily_late[: daily_late.index("</section>")]


def book_history(folder: Path, key: AlarmKey) -> list[Transition]:
    with AlarmBook(folder / "data" / "alarms.sqlite") as book:
        return book.history(key)


async def _state(book: AlarmBook, key: AlarmKey, state: AlarmState) -> bool:
    return _state_now(book, key) is state


def _state_now(book: AlarmBook, key: AlarmKey) -> AlarmState | None:
    alarm = book.get(key)
    return None if alarm is None else alarm.state


async def _late_recorded(book: AlarmBook) -> bool:
    return bool(book.history(key=BEARING))


async def _mails_with(smtp: MailCatcher, word: str) -> bool:
    return any(_about_the_overload(m.subject + "\n" + m.body, word) for m in _crew_mails(smtp))


def _mail(smtp: MailCatcher, word: str) -> str:
    """The first mail to the crew telling `word` (RAISED, CLEARED, ACKNOWLEDGED) of the
    overload: alone, or grouped with the gateway's news of the same moment."""
    [mail, *_] = [
        m for m in _crew_mails(smtp) if _about_the_overload(m.subject + "\n" + m.body, word)
    ]
    return f"Subject: {mail.subject}\nTo: {', '.join(mail.to)}\n\n{mail.body}"


def _crew_mails(smtp: MailCatcher) -> list[Mail]:
    return [m for m in smtp.mails if set(m.to) & {LI, ZHANG}]


def _about_the_overload(text: str, word: str) -> bool:
    return any(
        word in line and "fengshou/xiba/transformer (transformer_overload)" in line
        for line in text.splitlines()
    )
