"""The notifier's config file (every mistake at once, with file, line and field; secrets
from the environment; the sample in deploy/) and the pure stages it drives: routing,
group timing, urgency order, escalation and reminder timers, when timers stop.

The regression cases tests/testcases/notify/*/ are checked by
tests/unit/test_testcases.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from facility.sourcemap import ConfigError
from ingest.alarms.book import Alarm, AlarmEvent, Transition
from ingest.alarms.model import AlarmKey, AlarmState, Priority
from ingest.alarms.notify.config import NotifyConfig, load_notify_config
from ingest.alarms.notify.dispatch import route_for, tier_recipients
from ingest.alarms.notify.escalate import Escalate, Reached, Repeat, due_actions, stop_reason
from ingest.alarms.notify.group import group_due, most_urgent_first
from ingest.alarms.notify.roster import on_duty_ms

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "deploy" / "alarms" / "notify.yaml"
NOON_MS = 1_780_286_400_000  # 2026-06-01 12:00 Asia/Shanghai
MINUTE = 60_000

MINIMAL = """\
people:
  - id: li_wei
    contacts: ["json://127.0.0.1:18080/crew"]
  - id: zhao_lei
    contacts: ["json://127.0.0.1:18080/supervisor"]
crews:
  - id: water
    members: [li_wei]
    roster: {start: 2026-06-01}
"""


def load_text(tmp_path: Path, text: str) -> NotifyConfig:
    path = tmp_path / "notify.yaml"
    path.write_text(text, encoding="utf-8")
    return load_notify_config(path)


def issues_of(tmp_path: Path, text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    return [(i.line, i.field, i.message) for i in caught.value.issues]


# -- the sample -----------------------------------------------------------------------


@pytest.fixture
def sample(monkeypatch: pytest.MonkeyPatch) -> NotifyConfig:
    monkeypatch.setenv("FACILITY_ACK_SECRET", "demo-secret-0123456789")
    return load_notify_config(SAMPLE)


def test_sample_routes_every_demo_site_to_its_crew(sample: NotifyConfig) -> None:
    def crew(site: str, priority: Priority = Priority.LOW) -> str | None:
        route = route_for(sample, AlarmKey(site, "st", "asset", "rule"), priority)
        return route.crew if route is not None else None

    assert crew("wanda") == crew("xingshui") == "parking"
    assert crew("fengshou") == "fengshou_water"
    assert crew("huilongba") == "huilongba_water"
    assert crew("lianhuatang") == crew("chaheihai") == "south_water"
    assert crew("new_site", Priority.LOW) is None  # the default route takes high and above
    assert crew("new_site", Priority.CRITICAL) == "fengshou_water"


def test_sample_crews_always_have_someone_on_duty_and_someone_to_escalate_to(
    sample: NotifyConfig,
) -> None:
    for crew_id, crew in sample.crews.items():
        for hour in range(0, 24 * 8, 7):
            assert on_duty_ms(crew, NOON_MS + hour * 3_600_000).people, crew_id
        assert tier_recipients(sample, crew_id, 1, NOON_MS), crew_id
        assert tier_recipients(sample, crew_id, 2, NOON_MS) == ("guo_hua",)
    assert tier_recipients(sample, "parking", 1, NOON_MS) == ("he_ping",)
    assert tier_recipients(sample, "south_water", 1, NOON_MS) == ("zhao_lei",)
    south = sample.crews["south_water"]
    teams = {on_duty_ms(south, NOON_MS + d * 86_400_000).people for d in range(4)}
    assert teams == {("yang_tao", "huang_li"), ("zhou_qiang", "wu_xia")}
    assert sample.escalate_after[Priority.CRITICAL] == {1: 600.0, 2: 1800.0}
    assert Priority.LOW not in sample.escalate_after and sample.repeat_every[Priority.LOW] == 0


def test_sample_ack_links_sign_for_one_alarm_and_person(sample: NotifyConfig) -> None:
    assert sample.ack_links is not None
    links = sample.ack_links.signer()
    key = AlarmKey("fengshou", "xiba", "pump_1", "pump_trip")
    grant = links.verify(links.token(key, "li_wei", 1_780_279_200_000))
    assert (grant.key, grant.user, grant.raised_ms) == (key, "li_wei", 1_780_279_200_000)


def test_sample_without_the_ack_secret_names_the_variable_and_its_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FACILITY_ACK_SECRET", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_notify_config(SAMPLE)
    (issue,) = caught.value.issues
    line = SAMPLE.read_text(encoding="utf-8").splitlines()[issue.line - 1]
    assert issue.field == "ack_links.secret_env" and line.strip().startswith("secret_env:")
    assert "FACILITY_ACK_SECRET is not set" in issue.message


# -- contacts and secrets -------------------------------------------------------------


def test_contact_secret_comes_from_the_environment_and_never_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HOOK_PASSWORD", "p@ss/w:rd")
    config = load_text(
        tmp_path,
        MINIMAL.replace(
            '["json://127.0.0.1:18080/crew"]',
            '[{url: "json://alarms:{password}@127.0.0.1:18080/crew", '
            "password_env: TEST_HOOK_PASSWORD}]",
        ),
    )
    (contact,) = config.people["li_wei"].contacts
    assert contact.url == "json://alarms:p%40ss%2Fw%3Ard@127.0.0.1:18080/crew"
    assert "p@ss" not in contact.label and "p%40ss" not in contact.label
    assert contact.label.startswith("json://alarms:")


def test_checking_needs_no_secret_set_and_still_finds_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`facility check` loads with secrets=False: unset variables are no error, a URL
    waiting for one still parses with a stand-in, and other mistakes are still found."""
    monkeypatch.delenv("TEST_NEVER_SET", raising=False)
    text = MINIMAL.replace(
        '["json://127.0.0.1:18080/crew"]',
        '[{url: "json://alarms:{password}@127.0.0.1:18080/crew", password_env: TEST_NEVER_SET}]',
    ) + (
        'ack_links: {base_url: "http://127.0.0.1:8080", secret_env: TEST_NEVER_SET}\n'
        "routes:\n  - {match: {site: fengshou}, crew: watr}\n"
    )
    path = tmp_path / "notify.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as checking:
        load_notify_config(path, secrets=False)
    assert [(i.field, i.message) for i in checking.value.issues] == [
        ("routes[0].crew", "no crew 'watr' in crews")
    ]
    with pytest.raises(ConfigError) as starting:
        load_notify_config(path)
    unset = [i.field for i in starting.value.issues if "TEST_NEVER_SET is not set" in i.message]
    assert sorted(unset) == ["ack_links.secret_env", "people[0].contacts[0].password_env"]


def test_contact_mistakes_are_all_reported_with_their_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_NEVER_SET", raising=False)
    text = """\
people:
  - id: li_wei
    contacts:
      - "nosuchscheme://x"
      - mqtt
      - {url: "json://u:{password}@127.0.0.1/x", token_env: TEST_NEVER_SET}
      - {url: "json://u:{password}@127.0.0.1/x", password_env: TEST_NEVER_SET, port: 8}
crews:
  - id: water
    members: [li_wei]
    roster: {start: 2026-06-01}
"""
    assert issues_of(tmp_path, text) == [
        (
            4,
            "people[0].contacts[0]",
            "not a valid Apprise URL (scheme 'nosuchscheme'; see appriseit.com)",
        ),
        (5, "people[0].contacts[1]", "contact mqtt needs the `mqtt` section (broker and topic)"),
        (6, "people[0].contacts[2].token_env", "environment variable TEST_NEVER_SET is not set"),
        (6, "people[0].contacts[2].token_env", "the URL has no {token} to fill in"),
        (6, "people[0].contacts[2].url", "{password} has no password_env naming its variable"),
        (7, "people[0].contacts[3].password_env", "environment variable TEST_NEVER_SET is not set"),
        (7, "people[0].contacts[3].port", "unknown field (only url and NAME_env: VARIABLE)"),
    ]


def test_shape_mistakes_come_with_lines_and_a_typo_is_named(tmp_path: Path) -> None:
    text = MINIMAL.replace("    members: [li_wei]", "    membres: [li_wei]")
    assert issues_of(tmp_path, text) == [
        (7, "crews[0].members", "required field is missing"),  # the crew missing it
        (8, "crews[0].membres", "unknown field (check the spelling)"),
    ]


def test_mqtt_topic_and_ack_link_mistakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SHORT_SECRET", "short")
    text = (
        MINIMAL
        + "mqtt: {topic: 'facility/v1/alarms/{station}/#'}\n"
        + "ack_links: {base_url: '127.0.0.1:8080', secret_env: TEST_SHORT_SECRET}\n"
    )
    assert issues_of(tmp_path, text) == [
        (10, "mqtt.topic", "a topic to publish to has no wildcards (+, #) and is not empty"),
        (10, "mqtt.topic", "placeholders may be {site} and {person} only"),
        (11, "ack_links.base_url", "an http:// or https:// URL"),
        (11, "ack_links.secret_env", "TEST_SHORT_SECRET must hold 16 characters or more"),
    ]


# -- routing --------------------------------------------------------------------------

ROUTES = (
    MINIMAL
    + """\
  - id: parking
    members: [zhao_lei]
    roster: {start: 2026-06-01}
routes:
  - {match: {site: [wanda, xingshui], asset: "gate_*"}, min_priority: high, crew: parking}
  - {match: {site: "w*"}, crew: water}
default_route: {crew: parking, min_priority: critical}
"""
)


@pytest.mark.parametrize(
    ("site", "asset", "priority", "crew"),
    [
        ("wanda", "gate_main", Priority.HIGH, "parking"),  # first match
        ("wanda", "gate_main", Priority.MEDIUM, "water"),  # below the first route's minimum
        ("xingshui", "lot", Priority.MEDIUM, None),  # gate_* and w* miss, below the default
        ("xingshui", "lot", Priority.CRITICAL, "parking"),  # the default route
        ("wanda", "lot", Priority.LOW, "water"),
        ("fengshou", "pump_1", Priority.CRITICAL, "parking"),  # the default route
        ("fengshou", "pump_1", Priority.HIGH, None),  # below the default's minimum
    ],
)
def test_first_matching_route_wins(
    tmp_path: Path, site: str, asset: str, priority: Priority, crew: str | None
) -> None:
    config = load_text(tmp_path, ROUTES)
    route = route_for(config, AlarmKey(site, "st", asset, "rule"), priority)
    assert (route.crew if route is not None else None) == crew


# -- group timing and order -----------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "now", "due"),
    [
        (0, None, 29_999, False),  # group_wait not over
        (0, None, 30_000, True),
        (100_000, 60_000, 130_000, True),  # waited, and the last send is 70 s ago
        (100_000, 90_000, 130_000, False),  # group_interval since the last send not over
        (100_000, 90_000, 150_000, True),
    ],
)
def test_group_due(first: int, last: int | None, now: int, due: bool) -> None:
    assert group_due(first, last, 30, 60, now) is due


def transition(id_: int, priority: Priority, event: AlarmEvent, at_ms: int) -> Transition:
    return Transition(
        id=id_,
        key=AlarmKey("fengshou", "xiba", f"asset_{id_}", "rule"),
        event=event,
        from_state=AlarmState.NORMAL,
        to_state=AlarmState.UNACKED,
        at_ms=at_ms,
        recorded_ms=at_ms,
        user="",
        comment="",
        priority=priority,
        message="m",
        value=None,
    )


def test_most_urgent_first_then_raises_before_ends_then_oldest() -> None:
    ts = [
        transition(1, Priority.LOW, AlarmEvent.RAISED, 0),
        transition(2, Priority.HIGH, AlarmEvent.CLEARED, 0),
        transition(3, Priority.HIGH, AlarmEvent.RAISED, 5),
        transition(4, Priority.CRITICAL, AlarmEvent.ACKNOWLEDGED, 9),
        transition(5, Priority.HIGH, AlarmEvent.RAISED, 1),
    ]
    assert [t.id for t in most_urgent_first(ts)] == [4, 5, 3, 2, 1]


# -- escalation and reminder timers ---------------------------------------------------


def test_escalation_is_due_after_each_tier_delay_and_only_once(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        MINIMAL
        + "escalation:\n  tiers: [{name: supervisor, people: [zhao_lei]}, "
        + "{name: manager, people: [zhao_lei]}]\n"
        + "  after: {critical: {supervisor: 10m, manager: 30m}}\n",
    )
    told = {0: Reached(0, 0, 0, ("li_wei",))}
    critical = Priority.CRITICAL
    assert due_actions(config, critical, 0, told, 10 * MINUTE - 1) == []
    assert due_actions(config, critical, 0, told, 10 * MINUTE) == [Escalate(1)]
    assert due_actions(config, critical, 0, told, 31 * MINUTE) == [Escalate(1), Escalate(2)]
    told[1] = Reached(1, 10 * MINUTE, 0, ("zhao_lei",))
    assert due_actions(config, critical, 0, told, 29 * MINUTE) == []
    assert due_actions(config, Priority.HIGH, 0, {0: told[0]}, 999 * MINUTE) == []


def test_reminders_count_from_each_tier_and_skip_the_ones_missed(tmp_path: Path) -> None:
    config = load_text(tmp_path, MINIMAL + "repeat_every: {high: 15m, low: 0}\n")
    told = {
        0: Reached(0, 0, 0, ("li_wei",)),
        1: Reached(1, 10 * MINUTE, 0, ("zhao_lei",)),
    }
    assert due_actions(config, Priority.HIGH, 0, told, 15 * MINUTE - 1) == []
    assert due_actions(config, Priority.HIGH, 0, told, 15 * MINUTE) == [Repeat(0, 1)]
    assert due_actions(config, Priority.HIGH, 0, told, 25 * MINUTE) == [Repeat(0, 1), Repeat(1, 1)]
    # the notifier was down for an hour: one reminder per tier, numbered as the clock says
    late = {0: Reached(0, 0, 1, ("li_wei",)), 1: Reached(1, 10 * MINUTE, 1, ("zhao_lei",))}
    assert due_actions(config, Priority.HIGH, 0, late, 75 * MINUTE) == [Repeat(0, 5), Repeat(1, 4)]
    assert due_actions(config, Priority.LOW, 0, told, 999 * MINUTE) == []


def alarm(state: AlarmState, raised_ms: int = 1000, **extra: object) -> Alarm:
    fields: dict[str, object] = {
        "key": AlarmKey("fengshou", "xiba", "pump_1", "pump_trip"),
        "state": state,
        "active": state in (AlarmState.UNACKED, AlarmState.ACKED),
        "priority": Priority.CRITICAL,
        "message": "m",
        "value": None,
        "latched": False,
        "raised_ms": raised_ms,
        "last_change_ms": raised_ms,
        "updated_ms": raised_ms,
        **extra,
    }
    return Alarm(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "why"),
    [
        (alarm(AlarmState.UNACKED), None),
        (alarm(AlarmState.ACKED, acked_by="li_wei"), "acknowledged by li_wei"),
        (alarm(AlarmState.RTN_UNACKED), "returned to normal"),
        (alarm(AlarmState.NORMAL), "returned to normal"),
        (alarm(AlarmState.LATCHED), "returned to normal"),
        (alarm(AlarmState.UNACKED, raised_ms=5000), "raised again"),
        (alarm(AlarmState.UNACKED, shelved_until_ms=9, shelved_by="x"), "shelved"),
        (alarm(AlarmState.UNACKED, out_of_service=True), "out of service"),
        (None, "the alarm is gone from the book"),
    ],
)
def test_timers_stop_when_the_book_says_nobody_is_needed(now: Alarm | None, why: str) -> None:
    assert stop_reason(now, 1000) == why
