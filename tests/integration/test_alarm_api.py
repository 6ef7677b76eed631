"""The alarm API over real HTTP: uvicorn in the test's event loop, a real alarm book and
audit log on disk, alarms raised by the real engine and the demo rules from readings.

Roles (401/403), the actions and their audit entries, 409 for what the alarm's state
refuses, the board's order and filters, history, the OpenAPI document, the live event
stream, and the acknowledge-link pages (GET shows, POST acknowledges).
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.wire import Reading
from ingest.alarms.book import AlarmBook
from ingest.alarms.kpi import AlarmKpis, compute
from ingest.alarms.links import AckLinks
from ingest.alarms.model import AlarmKey, AlarmState
from ingest.alarms.notify import Notifier, NotifyConfig
from ingest.alarms.pipeline import AlarmPipeline
from ingest.api import ApiServer, AuditLog, Role, Tokens, User, create_app
from ingest.api.__main__ import main as new_token
from ingest.api.audit import AuditAction
from ingest.api.auth import TokensError, hash_token
from tests.conftest import ROOT
from tests.integration.test_notifier import LI, SECRET_ENV, Clock, write_config
from tests.raw_http import raw_post
from wiring.catchers import MailCatcher

pytestmark = pytest.mark.timeout(60)

RULES = ROOT / "deploy" / "alarms" / "rules.yaml"
SITE = "fengshou"

TOKENS = {
    Role.VIEWER: "viewer-token-vera-0123456789",
    Role.CREW: "crew-token-li-0123456789",
    Role.SUPERVISOR: "supervisor-token-wang-0123456789",
    Role.ADMIN: "admin-token-ops-0123456789",
}
NAMES = {Role.VIEWER: "vera", Role.CREW: "li", Role.SUPERVISOR: "wang", Role.ADMIN: "ops"}
LINK_SECRET = "an-ack-link-secret-for-tests-only"
HOUR = 3_600_000

TANK_HH = AlarmKey(SITE, "xiba", "tank_no4", "tank_level_high_high")  # high
TANK_LL = AlarmKey(SITE, "laozhengfu", "tank_no3", "tank_level_low_low")  # critical
TANK_H = AlarmKey(SITE, "sankeshu", "tank_no1", "tank_level_high")  # medium
PUMP_LOCAL = AlarmKey(SITE, "sankeshu", "pump_2", "pump_local_control")  # low (test rule)


def trip_key(station: str, pump: str) -> AlarmKey:
    return AlarmKey(SITE, station, pump, "pump_trip")


def auth(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def write_rules(path: Path) -> Path:
    """The demo rules plus one low-priority rule: the demo has none, and the board must
    show all four priorities. Without the device deadman: these tests feed one asset of
    a station at a time, and its silent neighbours are not what they look at."""
    rules = yaml.safe_load(RULES.read_text())
    del rules["rules"]["device_silent"]
    rules["rules"]["pump_local_control"] = {
        "kind": "condition",
        "applies_to": {"asset_kind": "pump"},
        "when": "not remote",
        "priority": "low",
    }
    path.write_text(yaml.safe_dump(rules))
    return path


@dataclass
class Stack:
    """The API serving a real pipeline, and ways to make alarms happen."""

    pipeline: AlarmPipeline
    audit: AuditLog
    links: AckLinks
    server: ApiServer
    notifier: Notifier | None = None

    @property
    def book(self) -> AlarmBook:
        return self.pipeline.book

    @property
    def url(self) -> str:
        return self.server.url

    def link_token(self, key: AlarmKey, user: str, links: AckLinks | None = None) -> str:
        """An acknowledge link's token for the alarm's current raise, as a mail has it."""
        alarm = self.book.get(key)
        assert alarm is not None
        return (links or self.links).token(key, user, alarm.raised_ms)

    def client(self, role: Role | None = None) -> httpx.AsyncClient:
        headers = auth(role) if role is not None else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)

    async def trip(self, station: str, pump: str, at_ms: int | None = None) -> AlarmKey:
        """A tripped pump: pump_trip (high, latched) at once."""
        at = now_ms() if at_ms is None else at_ms
        await self.pipeline.observe(SITE, station, [Reading(pump, "tripped", at, True)])
        return trip_key(station, pump)

    async def clear_trip(self, station: str, pump: str) -> None:
        await self.pipeline.observe(SITE, station, [Reading(pump, "tripped", now_ms(), False)])

    async def level(self, key: AlarmKey, level_m: float, at_ms: int, held_s: int = 31) -> AlarmKey:
        """A tank level held for `held_s`: past the on-delay of a high-high or low-low
        rule (30 s) but not of the plain high or low ones (1 min), unless asked."""
        for t in (at_ms - held_s * 1000, at_ms):
            await self.pipeline.observe(
                SITE, key.station, [Reading(key.asset, "level_m", t, level_m)]
            )
        return key

    async def local_control(self, at_ms: int) -> AlarmKey:
        reading = Reading(PUMP_LOCAL.asset, "remote", at_ms, False)
        await self.pipeline.observe(SITE, PUMP_LOCAL.station, [reading])
        return PUMP_LOCAL

    async def all_priorities(self) -> list[AlarmKey]:
        """One alarm of each priority, and two highs of different ages; in board order."""
        t = now_ms()
        await self.trip("xiba", "pump_1", t - 120_000)
        await self.level(TANK_HH, 4.95, t - 300_000)
        await self.level(TANK_LL, 0.5, t - 60_000)
        await self.level(TANK_H, 3.85, t - 200_000, held_s=61)
        await self.local_control(t - 400_000)
        return [TANK_LL, TANK_HH, trip_key("xiba", "pump_1"), TANK_H, PUMP_LOCAL]


@asynccontextmanager
async def running_stack(
    tmp_path: Path,
    site: SiteConfig,
    rosters: Any = None,
    kpis: bool = False,
    notify: tuple[NotifyConfig, Callable[[], int]] | None = None,
    people: Callable[[], list[str]] | None = None,
) -> AsyncIterator[Stack]:
    """The API over a real pipeline; with `kpis`, computed from its book per site (the
    service's own positions are tested in test_alarm_service.py); with `notify` (a
    config and a clock), a real notifier listening to the pipeline, whose deliveries
    the API lists. The test runs its ticks."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    rules = write_rules(tmp_path / "rules.yaml")
    pipeline = AlarmPipeline.open(rules, site, tmp_path / "book.db", None)
    audit = AuditLog(tmp_path / "audit.db")
    links = AckLinks(LINK_SECRET, "http://unused.invalid")
    tokens = Tokens.of({TOKENS[role]: User(NAMES[role], role) for role in Role})
    notifier = None
    if notify is not None:
        config, clock = notify
        notifier = Notifier(config, pipeline.book, links, tmp_path / "notify.db", now_ms=clock)
        pipeline.listeners.append(notifier.on_transitions)

    async def kpis_of(since_ms: int, until_ms: int) -> AlarmKpis:
        return compute(pipeline.book, until_ms, until_ms - since_ms)

    provider = kpis_of if kpis else None
    app = create_app(
        pipeline.book,
        pipeline,
        tokens,
        audit,
        links,
        rosters,
        provider,
        notifier,
        known_asset=lambda path: any("/".join(ref.key) == path for ref in site.assets()),
        link_people=people,
    )
    server = ApiServer(app, port=0)
    await server.start()
    try:
        yield Stack(pipeline, audit, links, server, notifier)
    finally:
        await server.stop()
        audit.close()
        if notifier is not None:
            notifier.close()
        pipeline.close()


@pytest.fixture
async def stack(tmp_path: Path, demo_config: SiteConfig) -> AsyncIterator[Stack]:
    rosters = {"fengshou": {"on_duty": ["li"]}}
    async with running_stack(tmp_path, demo_config, lambda: rosters, kpis=True) as s:
        yield s


def path_of(key: AlarmKey) -> str:
    return f"/api/alarms/{key}"


# -- who may do what --------------------------------------------------------------------


async def test_no_token_or_unknown_token_is_401(stack: Stack) -> None:
    async with stack.client() as anonymous:
        response = await anonymous.get("/api/alarms")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = {"Authorization": "Bearer not-a-token-anybody-has"}
        response = await anonymous.get("/api/alarms", headers=wrong)
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        basic = {"Authorization": "Basic dXNlcjpwYXNz"}
        assert (await anonymous.get("/api/alarms", headers=basic)).status_code == 401
        # the open ones
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        assert (await anonymous.get("/openapi.json")).status_code == 200


async def test_viewer_reads_but_may_not_acknowledge(stack: Stack) -> None:
    key = await stack.trip("xiba", "pump_1")
    async with stack.client(Role.VIEWER) as viewer:
        assert (await viewer.get(path_of(key))).json()["state"] == AlarmState.UNACKED
        response = await viewer.post(f"{path_of(key)}/ack", json={"comment": "looking"})
        assert response.status_code == 403
        assert "vera is viewer" in response.json()["detail"]
        assert (await viewer.get("/api/me")).json() == {"name": "vera", "role": "viewer"}
        audit_read = await viewer.get("/api/audit", params={"user": "vera"})
        assert audit_read.status_code == 403
    alarm = stack.book.get(key)
    assert alarm is not None and alarm.state is AlarmState.UNACKED
    # refused for the role: audited with who, what, on which alarm, and why
    entries = [
        (e.user, e.role, e.action.value, e.target, e.outcome.value, e.detail)
        for e in stack.audit.entries()
    ]
    assert entries == [
        (
            "vera",
            "viewer",
            "acknowledge",
            str(key),
            "forbidden",
            "viewer may not; needs crew or higher",
        ),
        (
            "vera",
            "viewer",
            "read",
            "/api/audit",
            "forbidden",
            "viewer may not; needs supervisor or higher",
        ),
    ]
    assert [t.event.value for t in stack.book.history(key)] == ["raised"]


async def test_crew_acknowledges_and_the_audit_log_says_who_and_when(stack: Stack) -> None:
    key = await stack.trip("xiba", "pump_1")
    before = now_ms()
    async with stack.client(Role.CREW) as crew:
        response = await crew.post(f"{path_of(key)}/ack", json={"comment": "on my way"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["alarm"]["state"] == AlarmState.ACKED
    assert body["alarm"]["acked_by"] == "li"
    assert [t["event"] for t in body["transitions"]] == ["acknowledged"]

    alarm = stack.book.get(key)
    assert alarm is not None and alarm.acked_by == "li"
    async with stack.client(Role.CREW) as crew:
        assert (await crew.get("/api/audit")).status_code == 403
    async with stack.client(Role.SUPERVISOR) as supervisor:
        entries = (await supervisor.get("/api/audit")).json()
    assert [(e["user"], e["action"], e["outcome"]) for e in entries] == [
        ("li", "acknowledge", "done"),
        ("li", "read", "forbidden"),  # the crew's look at the audit log
    ]
    entry = entries[0]
    assert entry["user"] == "li" and entry["role"] == "crew"
    assert entry["action"] == "acknowledge" and entry["target"] == str(key)
    assert entry["comment"] == "on my way" and entry["outcome"] == "done"
    assert before <= entry["at_ms"] <= now_ms()


async def test_acknowledging_twice_is_409_and_audited_as_refused(stack: Stack) -> None:
    key = await stack.trip("xiba", "pump_1")
    async with stack.client(Role.CREW) as crew:
        assert (await crew.post(f"{path_of(key)}/ack")).status_code == 200
        again = await crew.post(f"{path_of(key)}/ack", json={"comment": "me too"})
        assert again.status_code == 409
        assert "already acknowledged by li" in again.json()["detail"]
        missing = await crew.post(f"{path_of(trip_key('xiba', 'pump_3'))}/ack")
        assert missing.status_code == 404
    outcomes = [(e.outcome.value, e.comment) for e in stack.audit.entries()]
    assert outcomes == [("done", ""), ("refused", "me too")]


async def test_shelve_needs_a_supervisor(stack: Stack) -> None:
    key = await stack.trip("xiba", "pump_1")
    shelf = {"reason": "pump being replaced", "minutes": 30}
    async with stack.client(Role.CREW) as crew:
        assert (await crew.post(f"{path_of(key)}/shelve", json=shelf)).status_code == 403
    async with stack.client(Role.SUPERVISOR) as supervisor:
        response = await supervisor.post(f"{path_of(key)}/shelve", json=shelf)
        assert response.status_code == 200, response.text
        alarm = response.json()["alarm"]
        assert alarm["shelved"] and alarm["hidden"] and alarm["shelved_by"] == "wang"
        assert abs(alarm["shelved_until_ms"] - (now_ms() + 30 * 60_000)) < 5_000
        # hidden alarms cannot be acknowledged: 409 with the book's reason
        refused = await supervisor.post(f"{path_of(key)}/ack")
        assert refused.status_code == 409 and "shelved" in refused.json()["detail"]
        too_long = await supervisor.post(
            f"{path_of(key)}/shelve", json={"reason": "forget it", "minutes": 100_000}
        )
        assert too_long.status_code == 409
        bad = await supervisor.post(f"{path_of(key)}/shelve", json={"reason": "", "minutes": 5})
        assert bad.status_code == 422
        # Python's JSON parser reads Infinity: a malformed body, not a shelf to refuse
        endless = await supervisor.post(
            f"{path_of(key)}/shelve",
            content=b'{"reason": "forever", "minutes": Infinity}',
            headers={"Content-Type": "application/json"},
        )
        assert endless.status_code == 422 and endless.json()["detail"][0]["input"] == "inf"
        unshelved = await supervisor.post(f"{path_of(key)}/unshelve")
        assert unshelved.status_code == 200
        assert unshelved.json()["alarm"]["state"] == AlarmState.UNACKED
    actions = [(e.action.value, e.user, e.outcome.value) for e in stack.audit.entries()]
    assert actions == [
        ("shelve", "li", "forbidden"),
        ("shelve", "wang", "done"),
        ("acknowledge", "wang", "refused"),
        ("shelve", "wang", "refused"),
        ("unshelve", "wang", "done"),
    ]
    assert stack.audit.entries()[1].detail == "for 30 min"


async def test_reset_releases_a_latched_trip(stack: Stack) -> None:
    key = await stack.trip("xiba", "pump_1")
    async with stack.client(Role.CREW) as crew:
        early = await crew.post(f"{path_of(key)}/reset")
        assert early.status_code == 409 and "still active" in early.json()["detail"]
        await crew.post(f"{path_of(key)}/ack")
        await stack.clear_trip("xiba", "pump_1")
        assert (await crew.get(path_of(key))).json()["state"] == AlarmState.LATCHED
        response = await crew.post(f"{path_of(key)}/reset", json={"comment": "pump restarted"})
        assert response.status_code == 200
        assert response.json()["alarm"]["state"] == AlarmState.NORMAL


async def test_out_of_service_and_back(stack: Stack) -> None:
    key = await stack.trip("xiba", "pump_1")
    asset = "/api/assets/fengshou/xiba/pump_1"
    async with stack.client(Role.CREW) as crew:
        response = await crew.post(f"{asset}/out-of-service", json={"reason": "overhaul"})
        assert response.status_code == 403
    async with stack.client(Role.SUPERVISOR) as supervisor:
        response = await supervisor.post(f"{asset}/out-of-service", json={"reason": "overhaul"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["out_of_service"] is True and body["asset"] == "fengshou/xiba/pump_1"
        assert [t["event"] for t in body["transitions"]] == ["out_of_service"]
        hidden = (await supervisor.get("/api/alarms", params={"hidden": "true"})).json()
        assert [a["key"] for a in hidden["alarms"]] == [str(key)]
        again = await supervisor.post(f"{asset}/out-of-service", json={"reason": "overhaul"})
        assert again.status_code == 409
        back = await supervisor.post(f"{asset}/in-service", json={"comment": "done"})
        assert back.status_code == 200 and back.json()["out_of_service"] is False
        # an asset the site model does not have: 404, and nothing stored for it
        for path in ("fengshou/xiba/pump_9", "atlantis/xiba/pump_1", "fengshou/xiba/gate_1"):
            ghost = await supervisor.post(
                f"/api/assets/{path}/out-of-service", json={"reason": "typo"}
            )
            assert ghost.status_code == 404 and "no asset" in ghost.json()["detail"], path
            assert not stack.book.is_out_of_service(path)
            assert (await supervisor.post(f"/api/assets/{path}/in-service")).status_code == 404
    actions = [(e.action.value, e.target, e.outcome.value) for e in stack.audit.entries()]
    assert actions == [
        ("out_of_service", "fengshou/xiba/pump_1", "forbidden"),
        ("out_of_service", "fengshou/xiba/pump_1", "done"),
        ("out_of_service", "fengshou/xiba/pump_1", "refused"),
        ("in_service", "fengshou/xiba/pump_1", "done"),
    ]


# -- reading ----------------------------------------------------------------------------


async def test_board_is_sorted_by_priority_then_age_and_filters(stack: Stack) -> None:
    order = await stack.all_priorities()
    async with stack.client(Role.VIEWER) as viewer:

        async def keys(**params: Any) -> list[str]:
            response = await viewer.get("/api/alarms", params=params)
            assert response.status_code == 200, response.text
            return [a["key"] for a in response.json()["alarms"]]

        assert await keys() == [str(k) for k in order]
        board = (await viewer.get("/api/alarms")).json()
        assert [a["priority"] for a in board["alarms"]] == [
            "critical",
            "high",
            "high",
            "medium",
            "low",
        ]
        assert abs(board["now_ms"] - now_ms()) < 5_000
        high = [str(TANK_HH), str(trip_key("xiba", "pump_1"))]
        assert await keys(priority="high") == high
        assert await keys(priority=["critical", "low"]) == [str(TANK_LL), str(PUMP_LOCAL)]
        assert await keys(station="xiba") == high
        assert await keys(station="xiba", asset="pump_1") == high[1:]
        assert await keys(rule="tank_level_high") == [str(TANK_H)]
        assert await keys(site="elsewhere") == []
        assert len(await keys(state="active_unacknowledged")) == 5
        assert (await viewer.get("/api/alarms", params={"state": "bogus"})).status_code == 422

    async with stack.client(Role.CREW) as crew:
        await crew.post(f"{path_of(TANK_H)}/ack")
    await stack.level(TANK_H, 3.0, now_ms())  # cleared while acknowledged: normal
    await stack.clear_trip("xiba", "pump_1")  # cleared unacknowledged: stays on the board
    async with stack.client(Role.VIEWER) as viewer:
        assert await keys(state="returned_unacknowledged") == high[1:]
        assert str(TANK_H) not in await keys()
        assert await keys(active_only="true") == [str(TANK_LL), str(TANK_HH), str(PUMP_LOCAL)]
        one = await viewer.get(path_of(TANK_H))
        assert one.status_code == 200 and one.json()["state"] == AlarmState.NORMAL
        assert (await viewer.get(path_of(trip_key("xiba", "pump_3")))).status_code == 404


async def test_history_of_one_alarm_and_of_all(stack: Stack) -> None:
    key = await stack.trip("xiba", "pump_1")
    other = await stack.trip("sankeshu", "pump_2")
    async with stack.client(Role.CREW) as crew:
        await crew.post(f"{path_of(key)}/ack", json={"comment": "seen"})
        one = (await crew.get(f"{path_of(key)}/history")).json()
        assert [(t["event"], t["user"]) for t in one] == [("raised", ""), ("acknowledged", "li")]
        assert one[1]["comment"] == "seen"

        async def events(**params: Any) -> list[tuple[str, str]]:
            response = await crew.get("/api/history", params=params)
            assert response.status_code == 200, response.text
            return [(t["key"], t["event"]) for t in response.json()]

        everything = await events()
        assert everything == [
            (str(key), "raised"),
            (str(other), "raised"),
            (str(key), "acknowledged"),
        ]
        assert await events(station="sankeshu") == [(str(other), "raised")]
        assert await events(event="acknowledged") == [(str(key), "acknowledged")]
        assert await events(limit=1) == [(str(key), "acknowledged")]
        assert await events(until="2000-01-01T00:00:00Z") == []
        assert len(await events(since="2000-01-01T00:00:00")) == 3
        assert (await crew.get(f"{path_of(trip_key('xiba', 'pump_3'))}/history")).status_code == 404


async def test_rosters_pass_through_and_kpis_take_a_window(
    stack: Stack, tmp_path: Path, demo_config: SiteConfig
) -> None:
    now = now_ms()
    old = await stack.trip("xiba", "pump_1", now - 26 * HOUR)  # before the default 24 h
    recent = await stack.trip("sankeshu", "pump_1", now - 3 * HOUR)
    async with stack.client(Role.CREW) as crew:
        assert (await crew.post(f"{path_of(recent)}/ack")).status_code == 200

    async with stack.client(Role.VIEWER) as viewer:
        assert (await viewer.get("/api/rosters")).json() == {"fengshou": {"on_duty": ["li"]}}

        async def kpis(**params: str) -> dict[str, Any]:
            response = await viewer.get("/api/kpis", params=params)
            assert response.status_code == 200, response.text
            found: dict[str, Any] = response.json()
            return found

        last_day = await kpis()
        assert (last_day["alarms"], last_day["acknowledged"]) == (1, 1)
        assert abs(last_day["until_ms"] - now_ms()) < 5_000
        assert last_day["until_ms"] - last_day["since_ms"] == 24 * HOUR
        [fengshou] = last_day["positions"]
        assert (fengshou["position"], fengshou["alarms"]) == ("fengshou", 1)
        assert fengshou["raised"]["high"] == 1 and abs(fengshou["ack_median_s"] - 3 * 3600) < 60
        assert last_day["sites"] == last_day["positions"]  # no notifier: a position is a site

        assert (await kpis(window="48h"))["alarms"] == 2
        earlier = {"since": _iso(now - 30 * HOUR), "until": _iso(now - 20 * HOUR)}
        before = await kpis(**earlier)
        assert (before["alarms"], before["acknowledged"]) == (1, 0)
        assert before["since_ms"] == now - 30 * HOUR and before["until_ms"] == now - 20 * HOUR
        assert await kpis(since=earlier["since"], window="10h") == before
        assert (await kpis(until=_iso(now - HOUR)))["alarms"] == 1
        assert (await kpis(since=_iso(now - 2 * HOUR)))["alarms"] == 0
        assert old != recent

        nonsense = [
            {**earlier, "window": "10h"},  # over-determined
            {"since": earlier["until"], "until": earlier["since"]},  # backwards
            {"window": "-5m"},
            {"window": "0s"},
            {"window": "a while"},
            {"window": "500d"},
            {"until": _iso(now + 24 * HOUR)},  # the future
            {"since": "yesterday"},
        ]
        for params in nonsense:
            response = await viewer.get("/api/kpis", params=params)
            assert response.status_code == 422, (params, response.text)
        why = (await viewer.get("/api/kpis", params={"window": "a while"})).json()["detail"]
        assert "not a duration" in why
    async with stack.client() as anonymous:
        assert (await anonymous.get("/api/kpis")).status_code == 401
    async with (
        running_stack(tmp_path / "bare", demo_config) as bare,
        bare.client(Role.ADMIN) as admin,
    ):
        assert (await admin.get("/api/rosters")).status_code == 404
        assert (await admin.get("/api/kpis")).status_code == 404
        nothing = (await admin.get("/api/notifications")).json()
        assert nothing == {"notifier": False, "counts": {}, "deliveries": []}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


async def test_openapi_documents_the_api(stack: Stack) -> None:
    async with stack.client() as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
    paths = spec["paths"]
    alarm = "/api/alarms/{site}/{station}/{asset}/{rule}"
    for path in [
        "/api/alarms",
        alarm,
        f"{alarm}/history",
        "/api/history",
        f"{alarm}/ack",
        f"{alarm}/reset",
        f"{alarm}/shelve",
        f"{alarm}/unshelve",
        "/api/assets/{site}/{station}/{asset}/out-of-service",
        "/api/assets/{site}/{station}/{asset}/in-service",
        "/api/rosters",
        "/api/kpis",
        "/api/events",
        "/api/audit",
        "/api/me",
        "/api/notifications",
        "/api/users",
        "/api/users/{name}/revoke",
        "/api/users/{name}/restore",
        "/healthz",
    ]:
        assert path in paths, path
    board = paths["/api/alarms"]["get"]
    assert board["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AlarmList"
    }
    assert {p["name"] for p in board["parameters"]} >= {"state", "priority", "active_only"}
    assert set(paths[f"{alarm}/ack"]["post"]["responses"]) >= {"200", "401", "403", "404", "409"}
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    states = spec["components"]["schemas"]["AlarmState"]["enum"]
    assert "active_unacknowledged" in states


# -- live events ------------------------------------------------------------------------


async def read_events(lines: AsyncIterator[str], wanted: int) -> list[tuple[str, dict[str, Any]]]:
    """The next `wanted` named events of a text/event-stream response's lines."""
    found: list[tuple[str, dict[str, Any]]] = []
    name = ""
    async with asyncio.timeout(10):
        async for line in lines:
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                found.append((name, json.loads(line.removeprefix("data: "))))
                if len(found) == wanted:
                    return found
    raise AssertionError(f"stream ended after {found}")


async def test_event_stream_delivers_every_transition(stack: Stack) -> None:
    async with stack.client() as anonymous:
        assert (await anonymous.get("/api/events")).status_code == 401
        assert (await anonymous.get("/api/events", params={"token": "nope"})).status_code == 401
        params = {"token": TOKENS[Role.VIEWER]}
        async with anonymous.stream("GET", "/api/events", params=params) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            assert await read_events(lines, 1) == [("hello", {"user": "vera"})]
            key = await stack.trip("xiba", "pump_1")
            async with stack.client(Role.CREW) as crew:
                await crew.post(f"{path_of(key)}/ack")
            (raised_name, raised), (acked_name, acked) = await read_events(lines, 2)
    assert raised_name == acked_name == "transition"
    assert (raised["key"], raised["event"], raised["to_state"]) == (
        str(key),
        "raised",
        "active_unacknowledged",
    )
    assert (acked["event"], acked["user"]) == ("acknowledged", "li")


async def test_stopping_the_server_ends_open_streams(
    tmp_path: Path, demo_config: SiteConfig
) -> None:
    async with (
        running_stack(tmp_path, demo_config) as s,
        s.client(Role.VIEWER) as viewer,
        viewer.stream("GET", "/api/events") as response,
    ):
        lines = response.aiter_lines()
        await read_events(lines, 1)
        started = time.monotonic()
        await s.server.stop()
        assert time.monotonic() - started < 3  # not the 5 s grace
        assert [line async for line in lines if line] == []  # ended, nothing more


async def test_answers_on_a_kept_alive_connection_are_not_held_back(stack: Stack) -> None:
    """Nagle off on the server's connections: with it on, every answer after a
    connection's first waited ~40 ms for the client's delayed ACK (the console polls)."""
    waits = []
    async with stack.client() as anonymous:
        await anonymous.get("/healthz")
        for _ in range(9):
            started = time.perf_counter()
            (await anonymous.get("/healthz")).raise_for_status()
            waits.append(time.perf_counter() - started)
    assert statistics.median(waits) < 0.035, waits  # Nagle + delayed ACK: >= 40 ms


async def test_tokens_stay_out_of_the_access_log(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    key = await stack.trip("xiba", "pump_1")
    link = stack.link_token(key, "li")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        async with stack.client() as anonymous:
            await anonymous.get("/api/me", params={"token": TOKENS[Role.VIEWER]})
            await anonymous.get(f"/ack/{link}")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/api/me?token=***" in logged and "/ack/***" in logged
    assert TOKENS[Role.VIEWER] not in logged and link not in logged


# -- acknowledge links ------------------------------------------------------------------


async def test_ack_link_get_shows_post_acknowledges(stack: Stack) -> None:
    key = await stack.trip("xiba", "pump_1")
    link = f"/ack/{stack.link_token(key, 'zhang')}"
    async with stack.client() as anonymous:
        page = await anonymous.get(link)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Pump 1: tripped" in page.text and "Acknowledge as zhang" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        alarm = stack.book.get(key)
        assert alarm is not None and alarm.state is AlarmState.UNACKED  # GET changed nothing

        done = await anonymous.post(link, data={"comment": "from my phone"})
        assert done.status_code == 200 and "Acknowledged by zhang" in done.text
        again = await anonymous.post(link)
        assert again.status_code == 409 and "already acknowledged" in again.text
        after = await anonymous.get(link)
        assert "Nothing to acknowledge" in after.text or "nothing to acknowledge" in after.text

        tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        refused = await anonymous.get(tampered)
        assert refused.status_code == 400 and "not valid" in refused.text
        assert (await anonymous.post(tampered)).status_code == 400
    alarm = stack.book.get(key)
    assert alarm is not None and alarm.acked_by == "zhang"
    entries = stack.audit.entries()
    assert [(e.user, e.role, e.outcome.value) for e in entries] == [
        ("zhang", "link", "done"),
        ("zhang", "link", "refused"),
    ]
    assert entries[0].comment == "from my phone"


async def test_an_expired_ack_link_is_refused_and_acknowledges_nothing(stack: Stack) -> None:
    key = await stack.trip("xiba", "pump_1")
    made_yesterday = AckLinks(LINK_SECRET, "http://unused.invalid", clock=_hours_ago(25))
    link = f"/ack/{stack.link_token(key, 'zhang', made_yesterday)}"
    async with stack.client() as anonymous:
        page = await anonymous.get(link)
        assert page.status_code == 410, page.text
        assert "Link expired" in page.text and "expired (links work for 24 h" in page.text
        assert "console" in page.text and "Acknowledge as" not in page.text
        posted = await anonymous.post(link, data={"comment": "sorry, late"})
        assert posted.status_code == 410 and "Link expired" in posted.text
        # the same link a day younger: the age is what refused it, not the signature
        made_this_morning = AckLinks(LINK_SECRET, "http://unused.invalid", clock=_hours_ago(23))
        fresh = await anonymous.get(f"/ack/{stack.link_token(key, 'zhang', made_this_morning)}")
        assert fresh.status_code == 200 and "Acknowledge as zhang" in fresh.text
    alarm = stack.book.get(key)
    assert alarm is not None and alarm.state is AlarmState.UNACKED and alarm.acked_by is None
    assert [t.event.value for t in stack.book.history(key)] == ["raised"]
    assert stack.audit.entries() == []


def _hours_ago(hours: float) -> Callable[[], float]:
    return lambda: time.time() - hours * 3600


async def test_an_ack_link_acknowledges_only_the_raise_it_was_sent_for(stack: Stack) -> None:
    """Raised, acknowledged, cleared, reset, raised again: the first mail's link must not
    acknowledge the second raise, which its holder has not been told of."""
    t = now_ms()
    key = await stack.trip("xiba", "pump_1", t - 60_000)
    first = f"/ack/{stack.link_token(key, 'zhang')}"
    async with stack.client() as anonymous:
        assert (await anonymous.post(first)).status_code == 200  # it works for its raise
        await stack.pipeline.observe(
            SITE, "xiba", [Reading("pump_1", "tripped", t - 50_000, False)]
        )
        async with stack.client(Role.CREW) as crew:
            assert (await crew.post(f"{path_of(key)}/reset")).status_code == 200
        await stack.trip("xiba", "pump_1", t - 40_000)  # the same alarm, raised again
        second = f"/ack/{stack.link_token(key, 'zhang')}"
        assert second != first

        page = await anonymous.get(first)
        assert page.status_code == 410 and "earlier raise" in page.text
        assert "Acknowledge as" not in page.text
        stale = await anonymous.post(first, data={"comment": "old mail"})
        assert stale.status_code == 410
        alarm = stack.book.get(key)
        assert alarm is not None and alarm.state is AlarmState.UNACKED

        assert (await anonymous.post(second)).status_code == 200
    events = [t.event.value for t in stack.book.history(key)]
    assert events == ["raised", "acknowledged", "cleared", "reset", "raised", "acknowledged"]


async def test_a_revoked_person_s_links_stop_working_even_after_a_restore(
    tmp_path: Path, demo_config: SiteConfig
) -> None:
    """li has a token and gets links; zhang only gets links; zhou is no longer one of
    the notifier's people. Revoking li (or zhang) refuses their links at once, audited;
    restoring li lets new links work but not those mailed before the revocation."""
    people = ["li", "zhang"]
    async with running_stack(tmp_path, demo_config, people=lambda: people) as s:
        key = await s.trip("xiba", "pump_1")
        li_link = f"/ack/{s.link_token(key, 'li')}"
        zhang_link = f"/ack/{s.link_token(key, 'zhang')}"
        zhou_link = f"/ack/{s.link_token(key, 'zhou')}"
        async with s.client() as anonymous, s.client(Role.ADMIN) as admin:
            gone = await anonymous.post(zhou_link)
            assert gone.status_code == 403 and "no longer one of the people" in gone.text
            listed = {u["name"]: u["role"] for u in (await admin.get("/api/users")).json()}
            assert listed["li"] == "crew" and listed["zhang"] is None and "zhou" not in listed

            assert (
                await admin.post("/api/users/li/revoke", json={"reason": "phone lost"})
            ).status_code == 200
            revoked = await anonymous.post(li_link)
            assert revoked.status_code == 403 and "phone lost" in revoked.text
            assert (await anonymous.get(li_link)).status_code == 403
            answer = await admin.post("/api/users/zhang/revoke", json={"reason": "left"})
            assert answer.status_code == 200 and answer.json()["role"] is None
            assert (await anonymous.post(zhang_link)).status_code == 403

            assert (await admin.post("/api/users/li/restore")).status_code == 200
            still = await anonymous.post(li_link)
            assert still.status_code == 403 and "sent before" in still.text
            await asyncio.sleep(1.1)  # links are stamped in whole seconds
            fresh = await anonymous.post(f"/ack/{s.link_token(key, 'li')}")
            assert fresh.status_code == 200 and "Acknowledged by li" in fresh.text
        refused = [
            (e.user, e.role, e.outcome.value)
            for e in s.audit.entries(action=AuditAction.ACKNOWLEDGE)
        ]
        assert refused == [
            ("zhou", "link", "forbidden"),
            ("li", "link", "forbidden"),
            ("zhang", "link", "forbidden"),
            ("li", "link", "forbidden"),
            ("li", "link", "done"),
        ]


# -- what a body may cost -----------------------------------------------------------------


def _megabytes(wrap: Callable[[bytes], bytes] = lambda b: b) -> Iterator[bytes]:
    block = wrap(b"x" * 1_000_000)
    while True:
        yield block


async def test_an_oversized_body_is_refused_before_it_is_read(stack: Stack) -> None:
    """200 MB announced with no token: 413 before the body is read (not a 401 after it
    is in memory); the same streamed chunked: 413 once it passes the limit; and the
    largest body any operation takes still passes."""
    key = await stack.trip("xiba", "pump_1")
    port = stack.server.port
    target = f"/api/alarms/{key}/ack".encode()
    announced = (
        b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200000000\r\n\r\n"
    )
    answer, sent = await asyncio.to_thread(raw_post, port, announced, _megabytes(), 200_000_000)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 20_000_000, f"{sent} bytes were taken before the refusal"

    chunked = (
        b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + TOKENS[Role.CREW].encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    frame = lambda block: b"%x\r\n%s\r\n" % (len(block), block)  # noqa: E731
    answer, sent = await asyncio.to_thread(raw_post, port, chunked, _megabytes(frame), 200_000_000)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 20_000_000, f"{sent} bytes were taken before the refusal"

    async with stack.client(Role.CREW) as crew:
        big = await crew.post(f"{path_of(key)}/ack", content=b" " * 70_000 + b"{}")
        assert big.status_code == 413 and "larger than 65536 bytes" in big.json()["detail"]
        link = await crew.post(f"/ack/{stack.link_token(key, 'li')}", content=b"c" * 100_000)
        assert link.status_code == 413
        ok = await crew.post(f"{path_of(key)}/ack", json={"comment": "漢" * 1000})
        assert ok.status_code == 200, ok.text
    alarm = stack.book.get(key)
    assert alarm is not None and alarm.acked_by == "li"


async def test_a_422_quotes_only_a_preview_of_what_was_sent(stack: Stack) -> None:
    key = await stack.trip("xiba", "pump_1")
    async with stack.client(Role.CREW) as crew:
        long = await crew.post(f"{path_of(key)}/ack", json={"comment": "y" * 60_000})
        assert long.status_code == 422
        assert len(long.content) < 2_000, f"{len(long.content)} bytes came back"
        [error] = long.json()["detail"]
        assert error["loc"] == ["body", "comment"] and "60000 characters" in error["input"]
        listed = await crew.post(f"{path_of(key)}/ack", json=[{"comment": "z"}] * 3_000)
        assert listed.status_code == 422 and len(listed.content) < 2_000
        small = await crew.post(f"{path_of(key)}/ack", json={"comment": 5})
        assert small.status_code == 422 and small.json()["detail"][0]["input"] == 5


# -- notification deliveries ------------------------------------------------------------


async def test_undeliverable_notifications_are_listed_with_their_error(
    tmp_path: Path, demo_config: SiteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "test-secret-0123456789abcdef")
    down = MailCatcher()  # never started: its port refuses connections, as a dead server's
    clock = Clock(now_ms())
    config = write_config(tmp_path, down.port)  # give up after 1 h
    async with running_stack(tmp_path, demo_config, notify=(config, clock)) as s:
        assert s.notifier is not None
        key = await s.trip("xiba", "pump_1")
        clock.now_ms += 30_000  # group_wait
        await s.notifier.tick()
        async with s.client(Role.CREW) as crew:
            response = await crew.get("/api/notifications", params={"state": "failed"})
            assert response.status_code == 200, response.text
            found = response.json()
            [failed] = found["deliveries"]
            assert (failed["state"], failed["person"], failed["kind"]) == (
                "failed",
                "li_wei",
                "group",
            )
            assert failed["channel"] == "mailto" and LI in failed["recipient"]
            assert failed["attempts"] == 1 and failed["alarms"] == [str(key)]
            assert "Connection error" in failed["last_error"]
            assert failed["last_attempt_ms"] == clock.now_ms
            assert failed["next_attempt_ms"] == clock.now_ms + 10_000  # retry_first
            assert failed["title"].startswith("[HIGH] RAISED")
            assert found["counts"] == {"pending": 0, "failed": 1, "delivered": 0, "abandoned": 0}
            assert found["notifier"] is True
            assert "/ack/" not in json.dumps(found)  # the ack links stay in the messages

            clock.now_ms += 2 * HOUR  # past give_up_after; meanwhile reminders, escalation
            await s.notifier.tick()
            response = await crew.get("/api/notifications", params={"state": "abandoned"})
            [abandoned] = response.json()["deliveries"]
            assert abandoned["id"] == failed["id"] and abandoned["attempts"] == 2
            assert "Connection error" in abandoned["last_error"]
            assert abandoned["next_attempt_ms"] is None
            both = {"state": ["failed", "abandoned"]}
            undelivered = (await crew.get("/api/notifications", params=both)).json()
            people = {(d["person"], d["kind"]) for d in undelivered["deliveries"]}
            assert people >= {("li_wei", "group"), ("zhao_lei", "escalation")}
            later = {**both, "since": _iso(clock.now_ms + HOUR)}
            assert (await crew.get("/api/notifications", params=later)).json()["deliveries"] == []
            bogus = await crew.get("/api/notifications", params={"state": "lost"})
            assert bogus.status_code == 422
        async with s.client(Role.VIEWER) as viewer:
            assert (await viewer.get("/api/notifications")).status_code == 403


# -- users (admin) ----------------------------------------------------------------------


async def test_admin_revokes_a_token_at_once_and_a_supervisor_may_not(
    tmp_path: Path, demo_config: SiteConfig
) -> None:
    async with running_stack(tmp_path, demo_config) as s:
        async with s.client(Role.SUPERVISOR) as supervisor:
            assert (await supervisor.get("/api/users")).status_code == 403
            refused = await supervisor.post("/api/users/li/revoke", json={"reason": "lost"})
            assert refused.status_code == 403
        async with (
            s.client(Role.ADMIN) as admin,
            s.client(Role.CREW) as crew,
            crew.stream("GET", "/api/events") as stream,
        ):
            users = (await admin.get("/api/users")).json()
            assert {u["name"]: (u["role"], u["revoked"]) for u in users} == {
                "vera": ("viewer", False),
                "li": ("crew", False),
                "wang": ("supervisor", False),
                "ops": ("admin", False),
            }
            lines = stream.aiter_lines()
            await read_events(lines, 1)  # li is following the board
            done = await admin.post("/api/users/li/revoke", json={"reason": "phone lost"})
            assert done.status_code == 200, done.text
            assert done.json()["revoked"] and done.json()["revoked_by"] == "ops"
            assert [line async for line in lines if line.startswith("event")] == []  # ended
            shut_out = await crew.get("/api/alarms")
            assert shut_out.status_code == 401
            assert "revoked by ops: phone lost" in shut_out.json()["detail"]

            again = await admin.post("/api/users/li/revoke", json={"reason": "twice"})
            assert again.status_code == 409
            myself = await admin.post("/api/users/ops/revoke", json={"reason": "oops"})
            assert myself.status_code == 409 and "another admin" in myself.json()["detail"]
            nobody = await admin.post("/api/users/zhou/revoke", json={"reason": "who?"})
            assert nobody.status_code == 404
            assert (await admin.post("/api/users/li/revoke", json={})).status_code == 422
        actions = [(e.action.value, e.target, e.outcome.value) for e in s.audit.entries()]
        assert actions == [
            ("read", "/api/users", "forbidden"),
            ("revoke_access", "user/li", "forbidden"),
            ("revoke_access", "user/li", "done"),
            ("revoke_access", "user/li", "refused"),
            ("revoke_access", "user/ops", "refused"),
        ]

    # a restarted service still refuses li, until an admin restores the access
    async with running_stack(tmp_path, demo_config) as s:
        async with s.client(Role.CREW) as crew, s.client(Role.ADMIN) as admin:
            assert (await crew.get("/api/alarms")).status_code == 401
            [li] = [u for u in (await admin.get("/api/users")).json() if u["name"] == "li"]
            assert li["revoked"] and li["revoke_reason"] == "phone lost"
            restored = await admin.post("/api/users/li/restore", json={"comment": "found it"})
            assert restored.status_code == 200 and restored.json()["revoked"] is False
            assert (await crew.get("/api/alarms")).status_code == 200
            assert (await admin.post("/api/users/li/restore")).status_code == 409
        assert s.audit.entries(action=AuditAction.RESTORE_ACCESS)[0].comment == "found it"


# -- the token file ---------------------------------------------------------------------


def test_the_sample_token_file_loads() -> None:
    sample = ROOT / "deploy" / "alarms" / "api-tokens.yaml"
    tokens = Tokens.load(sample, environ={"FACILITY_API_TOKEN_ADMIN": "admin-secret-0123456789"})
    assert {u.name: u.role for u in tokens.users} == {
        "ops.admin": Role.ADMIN,
        "wang.supervisor": Role.SUPERVISOR,
        "li.crew": Role.CREW,
        "control.room": Role.VIEWER,
    }
    assert tokens.user("admin-secret-0123456789") == User("ops.admin", Role.ADMIN)
    assert tokens.user("admin-secret-012345678") is None
    without_env = Tokens.load(sample, environ={})
    assert "ops.admin" not in {u.name for u in without_env.users}


def test_a_token_file_never_holds_a_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("users:\n  - {name: li, role: crew, token: plain-text-token-123456}\n")
    with pytest.raises(TokensError, match="token"):
        Tokens.load(path)
    path.write_text(
        f"users:\n  - {{name: li, role: chief, token_sha256: {hash_token('x').hex()}}}\n"
    )
    with pytest.raises(TokensError, match="role"):
        Tokens.load(path)
    path.write_text("users:\n  - {name: li, role: crew, token_env: SHORT}\n")
    with pytest.raises(TokensError, match="shorter"):
        Tokens.load(path, environ={"SHORT": "abc"})


def test_new_token_prints_a_line_that_signs_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new_token(["new-token", "zhao", "crew"]) == 0
    token_line, entry = capsys.readouterr().out.splitlines()
    token = token_line.rsplit(": ", 1)[1]
    path = tmp_path / "tokens.yaml"
    path.write_text(f"users:\n{entry}\n")
    assert Tokens.load(path).user(token) == User("zhao", Role.CREW)
    assert token not in path.read_text()
    assert new_token(["new-token", "zhao", "chief"]) == 2
