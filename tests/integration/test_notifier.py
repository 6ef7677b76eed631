"""The alarm notifier against real services: e-mail to an SMTP server run by the test
(aiosmtpd), a webhook to a real HTTP server, MQTT through a private Mosquitto, the
alarm book on SQLite. Time is an injected clock, so ten minutes of escalation delay pass
in an instant; every delivery still crosses a real socket."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from ingest.alarms.book import AlarmBook, AlarmEvent, Transition
from ingest.alarms.links import AckLinks
from ingest.alarms.model import AlarmKey, AlarmState, ConditionChange, Priority
from ingest.alarms.notify import DeliveryStatus, Notifier, NotifyConfig, load_notify_config
from ingest.alarms.notify.store import NotifyStore
from tests.services import Mosquitto
from wiring.catchers import MailCatcher, Webhook

SECRET_ENV = "FACILITY_TEST_NOTIFY_ACK_SECRET"
START_MS = 1_780_279_200_000  # 2026-06-01 10:00:00 Asia/Shanghai: Li Wei's shift (08:00-08:00)
SECOND, MINUTE = 1000, 60_000

TRIP = AlarmKey("fengshou", "xiba", "pump_1", "pump_trip")
TANK = AlarmKey("fengshou", "xiba", "tank_no4", "tank_level_low")

LI, ZHANG, ZHAO, GUO = (
    "li.wei@crew.example",
    "zhang.min@crew.example",
    "zhao.lei@crew.example",
    "guo.hua@crew.example",
)


# -- real services ------------------------------------------------------------------------


class Clock:
    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class RefusingMailServer(MailCatcher):
    """A real SMTP server (aiosmtpd) that answers every recipient 550 (mailbox
    unavailable) until told to `accept`, then keeps what it is sent."""

    accept: bool = False
    refused: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not self.accept:
            self.refused.append(address)
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        self.accepted.append(address)
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[MailCatcher]:
    catcher = MailCatcher()
    catcher.start()
    yield catcher
    catcher.stop()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    hook.start()
    yield hook
    hook.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(tmp_path: Path, clock: Clock) -> Iterator[AlarmBook]:
    with AlarmBook(tmp_path / "alarms.db", now_ms=clock) as opened:
        yield opened


@pytest.fixture(autouse=True)
def ack_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "test-secret-0123456789abcdef")


def write_config(
    tmp_path: Path, smtp_port: int, webhook_port: int | None = None, mqtt_port: int | None = None
) -> NotifyConfig:
    """The test's notify.yaml: crew `water` (Li Wei on duty on 2026-06-01 from 08:00,
    Zhang Min the day before), supervisor Zhao Lei (mail, and a webhook if given), manager
    Guo Hua."""
    mail = f"mailto://127.0.0.1:{smtp_port}?mode=insecure&from=alarms@facility.example&to="
    li_extra = '\n      - "mqtt"' if mqtt_port else ""
    zhao_hook = f', "json://127.0.0.1:{webhook_port}/supervisor"' if webhook_port else ""
    mqtt = f"mqtt: {{host: 127.0.0.1, port: {mqtt_port}}}\n" if mqtt_port else ""
    text = f"""\
timezone: Asia/Shanghai
people:
  - id: li_wei
    name: Li Wei
    contacts:
      - "{mail}{LI}"{li_extra}
  - id: zhang_min
    name: Zhang Min
    contacts: ["{mail}{ZHANG}"]
  - id: zhao_lei
    name: Zhao Lei
    contacts: ["{mail}{ZHAO}"{zhao_hook}]
  - id: guo_hua
    name: Guo Hua
    contacts: ["{mail}{GUO}"]
crews:
  - id: water
    name: Fengshou water crew
    members: [li_wei, zhang_min]
    roster: {{start: 2026-06-01, handover: "08:00", timezone: Asia/Shanghai}}
routes:
  - {{match: {{site: fengshou}}, crew: water}}
escalation:
  tiers:
    - {{name: supervisor, people: [zhao_lei]}}
    - {{name: manager, people: [guo_hua]}}
  after:
    critical: {{supervisor: 10m, manager: 30m}}
    high: {{supervisor: 2h}}
repeat_every: {{critical: 0, high: 15m}}
group_wait: 30s
group_interval: 1m
delivery: {{retry_first: 10s, retry_max: 1m, give_up_after: 1h, timeout: 10s}}
ack_links: {{base_url: "http://127.0.0.1:8080", secret_env: {SECRET_ENV}, max_age: 24h}}
{mqtt}"""
    path = tmp_path / "notify.yaml"
    path.write_text(text, encoding="utf-8")
    return load_notify_config(path)


def make_notifier(
    config: NotifyConfig, book: AlarmBook, clock: Clock, tmp_path: Path
) -> tuple[Notifier, AckLinks]:
    assert config.ack_links is not None
    links = config.ack_links.signer()
    notifier = Notifier(
        config,
        book,
        links,
        tmp_path / "notify.db",
        now_ms=clock,
        site_timezones={"fengshou": "Asia/Shanghai"},
    )
    return notifier, links


def raise_alarm(
    book: AlarmBook, key: AlarmKey, at_ms: int, priority: Priority = Priority.CRITICAL
) -> list[Transition]:
    message = f"{key.asset} {key.rule.replace('_', ' ')}"
    return book.apply(ConditionChange(key, True, at_ms, priority, message, value=True))


async def tick_at(notifier: Notifier, clock: Clock, at_ms: int) -> None:
    clock.now_ms = at_ms
    await notifier.tick()


async def tick_every(notifier: Notifier, clock: Clock, until_ms: int, step_ms: int) -> None:
    while clock.now_ms + step_ms <= until_ms:
        await tick_at(notifier, clock, clock.now_ms + step_ms)


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


# -- the tests ----------------------------------------------------------------------------


async def test_raise_mailed_to_crew_on_duty_with_an_ack_link_for_that_person(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    notifier, links = make_notifier(write_config(tmp_path, smtp.port), book, clock, tmp_path)
    await notifier.on_transitions(raise_alarm(book, TRIP, START_MS - 5 * SECOND))

    await tick_at(notifier, clock, START_MS + 29 * SECOND)
    assert smtp.mails == []  # group_wait holds it back

    await tick_at(notifier, clock, START_MS + 30 * SECOND)
    assert [m.to for m in smtp.mails] == [[LI]]  # Li Wei is on duty, Zhang Min is not
    mail = smtp.mails[0]
    assert mail.subject.startswith("[CRITICAL] RAISED: fengshou/xiba/pump_1 (pump_trip)")
    assert "\r\n   pump_1 pump trip\r\n" in mail.body  # the message alone, in its words
    assert "at 2026-06-01 09:59:55 +08:00 Asia/Shanghai" in mail.body  # event time, site zone
    assert "now active, not acknowledged" in mail.body
    assert "on duty for Fengshou water crew" in mail.body

    (url,) = mail.ack_urls
    assert url.startswith("http://127.0.0.1:8080/ack/")
    grant = links.verify(token_of(url))
    assert (grant.key, grant.user) == (TRIP, "li_wei")
    assert grant.raised_ms == START_MS - 5 * SECOND  # the raise the mail tells of
    book.acknowledge(grant.key, grant.user)
    alarm = book.get(TRIP)
    assert alarm is not None and alarm.state is AlarmState.ACKED and alarm.acked_by == "li_wei"
    assert notifier.stats().sent == 1
    notifier.close()


async def test_burst_of_twenty_raises_is_one_mail_most_urgent_first(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    notifier, links = make_notifier(write_config(tmp_path, smtp.port), book, clock, tmp_path)
    keys = [AlarmKey("fengshou", "xiba", f"tank_{i:02d}", "tank_level_low") for i in range(19)]
    for i, key in enumerate(keys):  # the service ticks all through the burst
        await tick_at(notifier, clock, START_MS + i * 500)
        await notifier.on_transitions(raise_alarm(book, key, clock.now_ms, Priority.MEDIUM))
    await tick_at(notifier, clock, START_MS + 10 * SECOND)  # the most urgent arrives last
    await notifier.on_transitions(raise_alarm(book, TRIP, clock.now_ms))

    await tick_every(notifier, clock, START_MS + 40 * SECOND, SECOND)

    assert len(smtp.mails) == 1
    mail = smtp.mails[0]
    assert mail.subject == "[CRITICAL] 20 alarm changes: 20 raised"
    numbered = re.findall(r"^(\d+)\. (\w+) RAISED: (\S+)", mail.body, re.MULTILINE)
    assert len(numbered) == 20
    assert numbered[0] == ("1", "CRITICAL", "fengshou/xiba/pump_1")
    assert {n[1] for n in numbered[1:]} == {"MEDIUM"}
    granted = {links.verify(token_of(u)).key for u in mail.ack_urls}
    assert granted == {*keys, TRIP}  # one link per alarm, each for its own alarm
    notifier.close()


async def test_unacknowledged_critical_escalates_to_supervisor_then_manager(
    tmp_path: Path, smtp: MailCatcher, webhook: Webhook, book: AlarmBook, clock: Clock
) -> None:
    port = webhook.server.server_address[1] if webhook.server else 0
    config = write_config(tmp_path, smtp.port, webhook_port=int(port))
    notifier, links = make_notifier(config, book, clock, tmp_path)
    await notifier.on_transitions(raise_alarm(book, TRIP, START_MS))

    await tick_every(notifier, clock, START_MS + 10 * MINUTE + 29 * SECOND, 30 * SECOND)
    assert smtp.to(ZHAO) == []  # 10 min after the crew was told (at +30 s) is +10:30

    await tick_at(notifier, clock, START_MS + 10 * MINUTE + 30 * SECOND)
    (escalated,) = smtp.to(ZHAO)
    assert escalated.subject.startswith("[CRITICAL] ESCALATED to supervisor: alarm not ack")
    assert "(told: Li Wei)" in escalated.body
    grant = links.verify(token_of(escalated.ack_urls[0]))
    assert (grant.key, grant.user) == (TRIP, "zhao_lei")
    (post,) = webhook.posts
    assert post[0] == "/supervisor"
    assert post[1]["title"] == escalated.subject and "fengshou/xiba/pump_1" in post[1]["message"]
    assert smtp.to(GUO) == []

    await tick_every(notifier, clock, START_MS + 30 * MINUTE + 30 * SECOND, MINUTE)
    (to_manager,) = smtp.to(GUO)
    assert "ESCALATED to manager" in to_manager.subject
    assert len(smtp.to(ZHAO)) == 1 and len(smtp.to(LI)) == 1  # nobody told twice
    notifier.close()


async def test_acknowledged_alarm_is_not_escalated_and_everyone_told_hears_of_the_ack(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    notifier, _ = make_notifier(write_config(tmp_path, smtp.port), book, clock, tmp_path)
    await notifier.on_transitions(raise_alarm(book, TRIP, START_MS))
    await tick_every(notifier, clock, START_MS + 5 * MINUTE, 30 * SECOND)
    assert len(smtp.to(LI)) == 1

    await notifier.on_transitions([book.acknowledge(TRIP, "li_wei", "on my way")])
    await tick_every(notifier, clock, START_MS + 45 * MINUTE, 30 * SECOND)

    assert smtp.to(ZHAO) == [] and smtp.to(GUO) == []
    ack_mail = smtp.to(LI)[1]
    assert "ACKNOWLEDGED by Li Wei: on my way" in ack_mail.body
    assert ack_mail.ack_urls == []  # nothing left to acknowledge
    assert len(smtp.mails) == 2
    assert notifier.stats().escalating == 0
    notifier.close()


async def test_ack_after_escalation_reaches_the_supervisor_too(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    notifier, _ = make_notifier(write_config(tmp_path, smtp.port), book, clock, tmp_path)
    await notifier.on_transitions(raise_alarm(book, TRIP, START_MS))
    await tick_every(notifier, clock, START_MS + 11 * MINUTE, 30 * SECOND)
    assert len(smtp.to(ZHAO)) == 1

    await notifier.on_transitions([book.acknowledge(TRIP, "zhao_lei")])
    await tick_every(notifier, clock, START_MS + 40 * MINUTE, 30 * SECOND)

    assert "ACKNOWLEDGED by Zhao Lei" in smtp.to(ZHAO)[1].body
    assert "ACKNOWLEDGED by Zhao Lei" in smtp.to(LI)[1].body
    assert smtp.to(GUO) == []  # the manager was never reached, so is not told either
    notifier.close()


async def test_reminders_every_repeat_interval_until_acknowledged(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    notifier, _ = make_notifier(write_config(tmp_path, smtp.port), book, clock, tmp_path)
    await notifier.on_transitions(raise_alarm(book, TANK, START_MS, Priority.HIGH))
    await tick_every(notifier, clock, START_MS + 50 * MINUTE, MINUTE)

    subjects = [m.subject for m in smtp.to(LI)]
    assert subjects[0].startswith("[HIGH] RAISED")
    reminders = subjects[1:]
    assert len(reminders) == 3  # told at +1 min: reminded at +16, +31, +46
    assert all(s.startswith("[HIGH] REMINDER: alarm still not acknowledged") for s in reminders)
    assert "REMINDER 3 (not acknowledged for 45 min)" in smtp.to(LI)[3].body

    await notifier.on_transitions([book.acknowledge(TANK, "li_wei")])
    await tick_every(notifier, clock, START_MS + 90 * MINUTE, MINUTE)
    assert [m.subject for m in smtp.to(LI)][4:] == ["[HIGH] ACKNOWLEDGED by Li Wei: " + ACK_TAIL]
    assert len(smtp.mails) == 5
    notifier.close()


ACK_TAIL = "fengshou/xiba/tank_no4 (tank_level_low): tank_no4 tank level low"


async def test_return_to_normal_is_told_and_stops_escalation(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    notifier, links = make_notifier(write_config(tmp_path, smtp.port), book, clock, tmp_path)
    await notifier.on_transitions(raise_alarm(book, TRIP, START_MS))
    await tick_every(notifier, clock, START_MS + 3 * MINUTE, 30 * SECOND)

    cleared = book.apply(ConditionChange(TRIP, False, clock.now_ms, Priority.CRITICAL, "reset"))
    assert [t.event for t in cleared] == [AlarmEvent.CLEARED]
    await notifier.on_transitions(cleared)
    await tick_every(notifier, clock, START_MS + 40 * MINUTE, 30 * SECOND)

    assert len(smtp.to(LI)) == 2
    rtn = smtp.to(LI)[1]
    assert "CLEARED (returned to normal, still to be acknowledged)" in rtn.body
    assert "now returned to normal, not acknowledged" in rtn.body
    assert rtn.message.get_content_type() == "text/plain"
    (url,) = rtn.ack_urls  # ISA-18.2: a return to normal is still to be acknowledged
    rtn_grant = links.verify(token_of(url))
    assert rtn_grant.key == TRIP
    assert rtn_grant.raised_ms == links.verify(token_of(smtp.to(LI)[0].ack_urls[0])).raised_ms
    assert smtp.to(ZHAO) == [] and smtp.to(GUO) == []
    notifier.close()


async def test_smtp_down_is_retried_and_delivered_when_back(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    notifier, _ = make_notifier(write_config(tmp_path, smtp.port), book, clock, tmp_path)
    smtp.stop()
    await notifier.on_transitions(raise_alarm(book, TRIP, START_MS))

    await tick_at(notifier, clock, START_MS + 30 * SECOND)
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.pending, stats.attempts_failed) == (0, 1, 1, 1)
    (failed,) = notifier.deliveries(DeliveryStatus.FAILED)
    assert failed.person == "li_wei" and failed.attempts == 1
    assert "127.0.0.1" in failed.last_error and failed.title.startswith("[CRITICAL] RAISED")
    assert failed.next_attempt_ms == START_MS + 40 * SECOND  # retry_first: 10 s

    await tick_at(notifier, clock, START_MS + 39 * SECOND)  # not due yet: no second try
    assert notifier.stats().attempts_failed == 1

    await tick_at(notifier, clock, START_MS + 40 * SECOND)  # still down: back-off doubles
    (failed,) = notifier.deliveries(DeliveryStatus.FAILED)
    assert failed.attempts == 2 and failed.next_attempt_ms == START_MS + 60 * SECOND

    smtp.start()
    await tick_at(notifier, clock, START_MS + 60 * SECOND)
    assert [m.to for m in smtp.mails] == [[LI]]
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.pending) == (1, 0, 0)
    assert notifier.deliveries(DeliveryStatus.FAILED) == []
    notifier.close()


async def test_restart_mid_incident_sends_nothing_twice_and_escalates_on_time(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    config = write_config(tmp_path, smtp.port)
    first, _ = make_notifier(config, book, clock, tmp_path)
    await first.on_transitions(raise_alarm(book, TRIP, START_MS))
    await tick_at(first, clock, START_MS + 30 * SECOND)
    # a second alarm still waiting in its group when the process goes
    clock.now_ms = START_MS + 90 * SECOND
    await first.on_transitions(raise_alarm(book, TANK, clock.now_ms, Priority.HIGH))
    first.close()
    assert len(smtp.mails) == 1

    second, _ = make_notifier(config, book, clock, tmp_path)
    await tick_at(second, clock, START_MS + 90 * SECOND)
    assert len(smtp.mails) == 1  # nothing sent again, and the group still waits
    await tick_at(second, clock, START_MS + 2 * MINUTE)
    assert [m.subject.split(":")[0] for m in smtp.mails] == ["[CRITICAL] RAISED", "[HIGH] RAISED"]
    await tick_at(second, clock, START_MS + 10 * MINUTE + 30 * SECOND)
    assert len(smtp.to(ZHAO)) == 1  # the escalation the first one had scheduled
    second.close()

    third, _ = make_notifier(config, book, clock, tmp_path)
    await tick_every(third, clock, START_MS + 12 * MINUTE, 10 * SECOND)
    assert len(smtp.mails) == 3 and len(smtp.to(ZHAO)) == 1
    assert third.stats().sent == 3
    third.close()


async def test_reminder_after_handover_goes_to_the_new_shift(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    early = START_MS - 2 * 3600 * SECOND - 10 * MINUTE  # 07:50, Zhang Min's shift till 08:00
    clock.now_ms = early
    notifier, _ = make_notifier(write_config(tmp_path, smtp.port), book, clock, tmp_path)
    await notifier.on_transitions(raise_alarm(book, TANK, early, Priority.HIGH))
    await tick_every(notifier, clock, early + 17 * MINUTE, MINUTE)

    assert [m.subject.split(":")[0] for m in smtp.to(ZHANG)] == ["[HIGH] RAISED"]
    (reminder,) = smtp.to(LI)  # told at 07:51, reminded at 08:06: after the handover
    assert reminder.subject.startswith("[HIGH] REMINDER")
    notifier.close()


async def test_unrouted_alarm_tells_nobody_and_is_counted(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    notifier, _ = make_notifier(write_config(tmp_path, smtp.port), book, clock, tmp_path)
    gate = AlarmKey("wanda", "wanda_lot", "gate_main", "gate_stuck_open")
    await notifier.on_transitions(raise_alarm(book, gate, START_MS))
    await tick_every(notifier, clock, START_MS + 20 * MINUTE, MINUTE)
    assert smtp.mails == []
    assert notifier.stats().unrouted == 1 and notifier.stats().waiting == 0
    notifier.close()


async def test_mqtt_channel_publishes_json_with_the_alarm_and_its_ack_link(
    tmp_path: Path, smtp: MailCatcher, mosquitto: Mosquitto, book: AlarmBook, clock: Clock
) -> None:
    config = write_config(tmp_path, smtp.port, mqtt_port=mosquitto.port)
    notifier, links = make_notifier(config, book, clock, tmp_path)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="test-sub") as sub:
        await sub.subscribe("facility/v1/alarms/#", qos=1)
        await notifier.on_transitions(raise_alarm(book, TRIP, START_MS))
        await tick_at(notifier, clock, START_MS + 30 * SECOND)
        async with asyncio.timeout(10):
            message = await anext(aiter(sub.messages))

    assert str(message.topic) == "facility/v1/alarms/fengshou"
    assert isinstance(message.payload, bytes)
    payload = json.loads(message.payload)
    assert payload["person"] == "li_wei" and payload["kind"] == "group"
    (alarm,) = payload["alarms"]
    assert alarm["key"] == str(TRIP) and alarm["priority"] == "critical"
    assert alarm["state"] == AlarmState.UNACKED.value
    assert links.verify(token_of(alarm["ack_url"])).user == "li_wei"
    assert len(smtp.to(LI)) == 1  # the mail went out beside it
    assert notifier.stats().sent == 2
    notifier.close()


async def test_finished_work_is_pruned_after_30_days_but_open_alarms_are_kept(
    tmp_path: Path, smtp: MailCatcher, book: AlarmBook, clock: Clock
) -> None:
    notifier, _ = make_notifier(write_config(tmp_path, smtp.port), book, clock, tmp_path)
    await notifier.on_transitions(raise_alarm(book, TRIP, START_MS))
    await notifier.on_transitions(raise_alarm(book, TANK, START_MS, Priority.HIGH))
    await tick_at(notifier, clock, START_MS + 30 * SECOND)
    await notifier.on_transitions([book.acknowledge(TANK, "li_wei")])
    await tick_every(notifier, clock, START_MS + 31 * MINUTE, MINUTE)
    assert len(notifier.deliveries()) == 4  # raise, ack, supervisor, manager
    assert notifier.stats().escalating == 1  # the pump trip nobody acknowledged

    await tick_at(notifier, clock, START_MS + 31 * 86_400_000)
    assert notifier.deliveries() == [] and notifier.stats().sent == 0
    assert notifier.stats().escalating == 1  # still followed: it still wants an answer
    assert len(smtp.mails) == 4
    notifier.close()


def test_a_store_of_schema_1_is_migrated_keeping_its_deliveries(tmp_path: Path) -> None:
    """Schema 2 added when a delivery was last tried (what the API and console show)."""
    path = tmp_path / "notify.db"
    NotifyStore(path).close()
    with sqlite3.connect(path) as db:  # what a store of schema 1 looked like
        db.execute("ALTER TABLE delivery DROP COLUMN last_attempt_ms")
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO message (kind, person, title, body, notify_type, alarms, created_ms) "
            "VALUES ('group', 'li_wei', 'RAISED', 'body', 'failure', '[]', 5)"
        )
        db.execute(
            "INSERT INTO delivery (message_id, person, contact_id, contact_label, status, "
            "attempts, next_attempt_ms, last_error, created_ms) "
            "VALUES (1, 'li_wei', 'c1', 'mailto://x', 'failed', 1, 15, 'refused', 5)"
        )
    store = NotifyStore(path)
    [kept] = store.deliveries()
    assert (kept.status, kept.last_error, kept.last_attempt_ms) == (
        DeliveryStatus.FAILED,
        "refused",
        None,
    )
    store.mark_failed(kept.id, "refused again", retry_at_ms=40, now_ms=20)
    [tried] = store.deliveries(DeliveryStatus.FAILED, since_ms=20)
    assert (tried.attempts, tried.last_attempt_ms) == (2, 20)
    assert store.deliveries(since_ms=21) == []
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
