"""The alarm REST API and the web console.

`create_app` wires the alarm book, the pipeline (every action's transitions go out
through it to InfluxDB, the notifier and the consoles), the API users, the audit log
and, optionally, acknowledge links and the notifier's rosters and KPIs into one FastAPI
application (the notifier's deliveries too, for `/api/notifications`). It runs in the
ingest service's own event loop (see server.py): the
pipeline calls its listeners there, and the console's live stream is one of them.

Alarm keys and asset paths are URL paths (`/api/alarms/fengshou/xiba/pump_1/pump_trip`),
given as separate segments so `/history` and the actions after a key are unambiguous.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they name dependencies made inside create_app.

import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facility.durations import parse_duration
from ingest.alarms.book import Alarm, AlarmActionError, AlarmBook, AlarmEvent, Transition
from ingest.alarms.kpi import DAY_MS, AlarmKpis
from ingest.alarms.links import AckGrant, AckLinkError, AckLinkExpired, AckLinks
from ingest.alarms.model import AlarmKey, AlarmState, Priority
from ingest.alarms.notify.store import Delivery, DeliveryStatus
from ingest.alarms.pipeline import AlarmPipeline
from ingest.api import ackpage
from ingest.api.audit import USER_TARGET, AuditAction, AuditLog, Outcome
from ingest.api.auth import Revocation, Role, Tokens, User, requires, requires_header_or_query
from ingest.api.events import EventHub, stream
from ingest.api.models import (
    STATE_OF,
    STATUS_OF,
    ActionResult,
    AlarmList,
    AlarmOut,
    AssetActionResult,
    AuditEntryOut,
    CommentBody,
    DeliveryOut,
    DeliveryState,
    Health,
    KpisOut,
    Me,
    NotificationsOut,
    OutOfServiceBody,
    RevokeBody,
    ShelveBody,
    TransitionOut,
    UserOut,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HISTORY_SCAN = 50_000  # filters other than a whole key look at this many newest transitions
MAX_LIMIT = 10_000
LINK_ROLE = "link"  # the audit log's role for a signed acknowledge link
MAX_KPI_WINDOW_MS = 400 * DAY_MS  # the raw data's and the book's horizon, and then some
CLOCK_SLACK_MS = 60_000  # an `until` this far ahead of the server's clock is not "future"
# The largest body any operation takes is a comment of 1000 characters; a body over this
# is refused before it is read (by its Content-Length, or as it streams in).
MAX_BODY_BYTES = 64 * 1024
MAX_ECHO_CHARS = 200  # a 422 quotes at most this much of what was sent

# The console and the ack pages load nothing but their own files.
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_REFUSALS: dict[int | str, dict[str, Any]] = {
    # FastAPI's answer to a body it cannot parse: not UTF-8, too deeply nested, a number
    # of thousands of digits.
    status.HTTP_400_BAD_REQUEST: {"description": "a body that cannot be parsed"},
    status.HTTP_401_UNAUTHORIZED: {"description": "no token, or an unknown one"},
    status.HTTP_403_FORBIDDEN: {"description": "the user's role does not allow it"},
    status.HTTP_404_NOT_FOUND: {"description": "no such alarm (or asset)"},
    status.HTTP_409_CONFLICT: {"description": "the alarm's state does not allow it"},
    status.HTTP_413_CONTENT_TOO_LARGE: {"description": "a body over 64 kB, refused unread"},
}
_READ_REFUSALS: dict[int | str, dict[str, Any]] = {code: _REFUSALS[code] for code in (401, 403)}
_NO_ALARM: dict[int | str, dict[str, Any]] = {404: _REFUSALS[404]}

Provider = Callable[[], object]
# The KPIs of [since_ms, until_ms): the service computes them off the event loop.
KpiProvider = Callable[[int, int], Awaitable[AlarmKpis]]


class DeliveryLog(Protocol):
    """What the API reads of the notifier (Notifier fits)."""

    def deliveries(
        self,
        status: DeliveryStatus | Collection[DeliveryStatus] | None = None,
        limit: int = 100,
        since_ms: int | None = None,
    ) -> list[Delivery]: ...

    def delivery_counts(self) -> dict[DeliveryStatus, int]: ...


def create_app(
    book: AlarmBook,
    pipeline: AlarmPipeline,
    tokens: Tokens,
    audit: AuditLog,
    links: AckLinks | None = None,
    rosters: Provider | None = None,
    kpis: KpiProvider | None = None,
    deliveries: DeliveryLog | None = None,
    known_asset: Callable[[str], bool] | None = None,
    link_people: Callable[[], Collection[str]] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """`known_asset(path)`: whether site/station/asset is in the site model (without it,
    any asset may be taken out of service). `link_people()`: who acknowledge links may
    be sent to now, the notifier's people (without it, anyone a link names)."""
    hub = EventHub()
    pipeline.listeners.append(hub.publish)
    tokens.revoked = {
        name: Revocation(entry.user, entry.at_ms, entry.comment)
        for name, entry in audit.revoked_users().items()
    }
    app = FastAPI(
        title="Facility alarms",
        version="1",
        summary="Alarms of the water-supply and car-park sites: read, acknowledge, shelve.",
        openapi_tags=[
            {"name": "alarms", "description": "the alarm board and its history"},
            {"name": "actions", "description": "operator actions; each one is audited"},
            {
                "name": "service",
                "description": "live events, rosters, KPIs, notifications, audit, health",
            },
            {"name": "users", "description": "who may sign in (admin)"},
        ],
    )
    app.state.hub = hub
    ops = Operations(book, pipeline, audit)
    tokens.on_forbidden = _audit_forbidden(audit)
    app.include_router(_alarm_routes(ops, tokens))
    app.include_router(_action_routes(ops, tokens, known_asset))
    app.include_router(_service_routes(ops, tokens, hub, rosters, kpis))
    app.include_router(_notification_routes(tokens, deliveries))
    access = LinkAccess(tokens, audit.last_revocations(), link_people)
    app.include_router(_user_routes(ops, access, hub))
    app.include_router(_page_routes(ops, links, access))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(AlarmActionError, _refused)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app


def _audit_forbidden(audit: AuditLog) -> Callable[[User, Role, str, str], None]:
    """A 403 is someone trying what their role does not allow: worth a line in the
    audit log, like a refused acknowledgement."""

    def record(user: User, needed: Role, method: str, path: str) -> None:
        action, target = _attempted(method, path)
        why = f"{user.role} may not; needs {needed} or higher"
        audit.record(user.name, user.role.value, action, target, "", Outcome.FORBIDDEN, why)

    return record


_ACTIONS = {
    "ack": AuditAction.ACKNOWLEDGE,
    "reset": AuditAction.RESET,
    "shelve": AuditAction.SHELVE,
    "unshelve": AuditAction.UNSHELVE,
    "out-of-service": AuditAction.OUT_OF_SERVICE,
    "in-service": AuditAction.IN_SERVICE,
    "revoke": AuditAction.REVOKE_ACCESS,
    "restore": AuditAction.RESTORE_ACCESS,
}


def _attempted(method: str, path: str) -> tuple[AuditAction, str]:
    """The action and its target as the audit log names them, from the request."""
    parts = path.strip("/").split("/")
    action = _ACTIONS.get(parts[-1]) if method == "POST" and len(parts) > 2 else None
    if action is None:
        return AuditAction.READ, path[:500]
    if parts[1] == "users":
        return action, USER_TARGET + "/".join(parts[2:-1])
    return action, "/".join(parts[2:-1])


@dataclass
class Operations:
    """What the routes share: find an alarm, do an action, audit it, publish it."""

    book: AlarmBook
    pipeline: AlarmPipeline
    audit: AuditLog

    def alarm(self, key: AlarmKey) -> Alarm:
        alarm = self.book.get(key)
        if alarm is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alarm {key}")
        return alarm

    async def act(
        self,
        who: tuple[str, str],
        action: AuditAction,
        target: str,
        comment: str,
        do: Callable[[], list[Transition]],
        detail: str = "",
    ) -> list[Transition]:
        """Do it, audit it (done or refused), and send its transitions on their way."""
        user, role = who
        try:
            transitions = do()
        except AlarmActionError as exc:
            self.audit.record(user, role, action, target, comment, Outcome.REFUSED, str(exc))
            raise
        self.audit.record(user, role, action, target, comment, Outcome.DONE, detail)
        try:
            await self.pipeline.publish(transitions)
        except Exception:
            # The action is committed in the book; failing the request now would only
            # make the operator try again and be refused.
            log.exception("publishing %s of %s failed", action, target)
        return transitions

    async def on_alarm(
        self,
        key: AlarmKey,
        user: User,
        action: AuditAction,
        comment: str,
        do: Callable[[], Transition],
        detail: str = "",
    ) -> ActionResult:
        """One operator action on one alarm: 404 if there is none, then `act`."""
        self.alarm(key)
        done = await self.act(_who(user), action, str(key), comment, lambda: [do()], detail)
        return self.result(key, done)

    def result(self, key: AlarmKey, transitions: list[Transition]) -> ActionResult:
        return ActionResult(
            alarm=AlarmOut.of(self.alarm(key)),
            transitions=[TransitionOut.of(t) for t in transitions],
        )


def alarm_key(site: str, station: str, asset: str, rule: str) -> AlarmKey:
    return AlarmKey(site, station, asset, rule)


def asset_path(site: str, station: str, asset: str) -> str:
    return f"{site}/{station}/{asset}"


Key = Annotated[AlarmKey, Depends(alarm_key)]
AssetPath = Annotated[str, Depends(asset_path)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Since = Annotated[datetime | None, Query(description="ISO 8601; without a zone, UTC")]
Until = Annotated[datetime | None, Query(description="ISO 8601, exclusive")]


# -- reading ----------------------------------------------------------------------------


def _alarm_routes(ops: Operations, tokens: Tokens) -> APIRouter:
    router = APIRouter(tags=["alarms"], responses=_READ_REFUSALS)
    viewer = requires(tokens, Role.VIEWER)
    book = ops.book

    @router.get("/api/alarms", response_model=AlarmList)
    async def list_alarms(
        user: Annotated[User, Depends(viewer)],
        state: Annotated[list[AlarmState] | None, Query()] = None,
        priority: Annotated[list[Priority] | None, Query()] = None,
        site: str | None = None,
        station: str | None = None,
        asset: str | None = None,
        rule: str | None = None,
        active_only: Annotated[
            bool, Query(description="only alarms whose condition is active now")
        ] = False,
        hidden: Annotated[
            bool | None, Query(description="true: only shelved/out of service; false: none")
        ] = None,
    ) -> AlarmList:
        """The alarm board: every alarm not normal, the most urgent priority first, then
        the oldest raise."""
        parts = {"site": site, "station": station, "asset": asset, "rule": rule}
        alarms = [
            a
            for a in book.active()
            if _key_matches(a.key, parts)
            and (state is None or a.state in state)
            and (priority is None or a.priority in priority)
            and (not active_only or a.active)
            and (hidden is None or a.hidden == hidden)
        ]
        alarms.sort(key=lambda a: (a.priority.rank, a.raised_ms or a.last_change_ms, a.key))
        return AlarmList(now_ms=book.now_ms(), alarms=[AlarmOut.of(a) for a in alarms])

    @router.get(
        "/api/alarms/{site}/{station}/{asset}/{rule}", response_model=AlarmOut, responses=_NO_ALARM
    )
    async def get_alarm(key: Key, user: Annotated[User, Depends(viewer)]) -> AlarmOut:
        return AlarmOut.of(ops.alarm(key))

    @router.get(
        "/api/alarms/{site}/{station}/{asset}/{rule}/history",
        response_model=list[TransitionOut],
        responses=_NO_ALARM,
    )
    async def alarm_history(
        key: Key,
        user: Annotated[User, Depends(viewer)],
        since: Since = None,
        until: Until = None,
        limit: Limit = 200,
    ) -> list[TransitionOut]:
        """One alarm's transitions, in the order they happened (newest last)."""
        ops.alarm(key)
        found = book.history(key, _ms(since), _ms(until), limit)
        return [TransitionOut.of(t) for t in found]

    @router.get("/api/history", response_model=list[TransitionOut])
    async def history(
        user: Annotated[User, Depends(viewer)],
        site: str | None = None,
        station: str | None = None,
        asset: str | None = None,
        rule: str | None = None,
        event: Annotated[list[AlarmEvent] | None, Query()] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = 500,
    ) -> list[TransitionOut]:
        """Transitions of every alarm, newest last. Filters other than a whole key look
        at the newest 50 000 transitions between `since` and `until`."""
        parts = {"site": site, "station": station, "asset": asset, "rule": rule}
        found = _history(book, parts, event, _ms(since), _ms(until), limit)
        return [TransitionOut.of(t) for t in found]

    return router


def _history(
    book: AlarmBook,
    parts: dict[str, str | None],
    events: list[AlarmEvent] | None,
    since_ms: int | None,
    until_ms: int | None,
    limit: int,
) -> list[Transition]:
    site, station, asset, rule = parts.values()
    if site and station and asset and rule and events is None:
        return book.history(AlarmKey(site, station, asset, rule), since_ms, until_ms, limit)
    scanned = book.history(None, since_ms, until_ms, HISTORY_SCAN)
    found = [
        t for t in scanned if _key_matches(t.key, parts) and (events is None or t.event in events)
    ]
    return found[-limit:]


def _key_matches(key: AlarmKey, parts: dict[str, str | None]) -> bool:
    return all(want is None or getattr(key, name) == want for name, want in parts.items())


def _ms(at: datetime | None) -> int | None:
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


# -- operator actions -------------------------------------------------------------------


def _action_routes(
    ops: Operations, tokens: Tokens, known_asset: Callable[[str], bool] | None
) -> APIRouter:
    router = APIRouter(tags=["actions"], responses=_REFUSALS)
    crew = requires(tokens, Role.CREW)
    supervisor = requires(tokens, Role.SUPERVISOR)
    book = ops.book
    alarm_path = "/api/alarms/{site}/{station}/{asset}/{rule}"
    asset_at = "/api/assets/{site}/{station}/{asset}"

    @router.post(f"{alarm_path}/ack", response_model=ActionResult)
    async def acknowledge(
        key: Key, user: Annotated[User, Depends(crew)], body: CommentBody | None = None
    ) -> ActionResult:
        """Acknowledge an active or returned alarm (crew and up)."""
        comment = (body or CommentBody()).comment
        return await ops.on_alarm(
            key,
            user,
            AuditAction.ACKNOWLEDGE,
            comment,
            lambda: book.acknowledge(key, user.name, comment),
        )

    @router.post(f"{alarm_path}/reset", response_model=ActionResult)
    async def reset(
        key: Key, user: Annotated[User, Depends(crew)], body: CommentBody | None = None
    ) -> ActionResult:
        """Release a latched alarm whose condition has cleared (crew and up)."""
        comment = (body or CommentBody()).comment
        return await ops.on_alarm(
            key,
            user,
            AuditAction.RESET,
            comment,
            lambda: book.reset(key, user.name, comment),
        )

    @router.post(f"{alarm_path}/shelve", response_model=ActionResult)
    async def shelve(
        key: Key, body: ShelveBody, user: Annotated[User, Depends(supervisor)]
    ) -> ActionResult:
        """Take an alarm out of view for a while (supervisor and up)."""
        return await ops.on_alarm(
            key,
            user,
            AuditAction.SHELVE,
            body.reason,
            lambda: book.shelve(key, user.name, body.reason, body.minutes * 60),
            detail=f"for {body.minutes:g} min",
        )

    @router.post(f"{alarm_path}/unshelve", response_model=ActionResult)
    async def unshelve(
        key: Key, user: Annotated[User, Depends(supervisor)], body: CommentBody | None = None
    ) -> ActionResult:
        comment = (body or CommentBody()).comment
        return await ops.on_alarm(
            key,
            user,
            AuditAction.UNSHELVE,
            comment,
            lambda: book.unshelve(key, user.name, comment),
        )

    @router.post(f"{asset_at}/out-of-service", response_model=AssetActionResult)
    async def out_of_service(
        path: AssetPath, body: OutOfServiceBody, user: Annotated[User, Depends(supervisor)]
    ) -> AssetActionResult:
        """Hide every alarm of an asset, present and future, until it is back in service
        (supervisor and up). 404 for an asset the site model does not have."""
        if known_asset is not None and not known_asset(path):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no asset {path} in the site model")
        done = await ops.act(
            _who(user),
            AuditAction.OUT_OF_SERVICE,
            path,
            body.reason,
            lambda: book.set_out_of_service(path, user.name, body.reason),
        )
        return _asset_result(book, path, done)

    @router.post(f"{asset_at}/in-service", response_model=AssetActionResult)
    async def in_service(
        path: AssetPath, user: Annotated[User, Depends(supervisor)], body: CommentBody | None = None
    ) -> AssetActionResult:
        comment = (body or CommentBody()).comment
        # An asset gone from the site model may still be out of service: let it back.
        if not book.is_out_of_service(path) and known_asset is not None and not known_asset(path):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no asset {path} in the site model")
        done = await ops.act(
            _who(user),
            AuditAction.IN_SERVICE,
            path,
            comment,
            lambda: book.return_to_service(path, user.name, comment),
        )
        return _asset_result(book, path, done)

    return router


def _who(user: User) -> tuple[str, str]:
    return user.name, user.role.value


def _asset_result(book: AlarmBook, path: str, done: list[Transition]) -> AssetActionResult:
    return AssetActionResult(
        asset=path,
        out_of_service=book.is_out_of_service(path),
        transitions=[TransitionOut.of(t) for t in done],
    )


# -- live events, rosters, KPIs, audit, health ------------------------------------------


def _service_routes(
    ops: Operations,
    tokens: Tokens,
    hub: EventHub,
    rosters: Provider | None,
    kpis: KpiProvider | None,
) -> APIRouter:
    router = APIRouter(tags=["service"])
    viewer = requires(tokens, Role.VIEWER)
    supervisor = requires(tokens, Role.SUPERVISOR)
    streamer = requires_header_or_query(tokens, Role.VIEWER)

    @router.get("/api/me", response_model=Me, responses=_READ_REFUSALS)
    async def me(user: Annotated[User, Depends(viewer)]) -> Me:
        """Who the token belongs to, and their role (the console shows what it allows)."""
        return Me.of(user)

    @router.get(
        "/api/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-Sent Events: `hello` once, then `transition` (a "
                "TransitionOut) for every change, `resync` if some were dropped",
                "content": {"text/event-stream": {}},
            },
            **_READ_REFUSALS,
        },
    )
    async def events(user: Annotated[User, Depends(streamer)]) -> StreamingResponse:
        return StreamingResponse(
            stream(hub, user.name),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get(
        "/api/rosters", responses={**_READ_REFUSALS, 404: {"description": "not configured"}}
    )
    async def get_rosters(user: Annotated[User, Depends(viewer)]) -> JSONResponse:
        """Who is on duty, as the notifier has it."""
        return await _provided(rosters, "rosters")

    @router.get(
        "/api/kpis",
        response_model=KpisOut,
        responses={
            **_READ_REFUSALS,
            404: {"description": "not configured"},
            422: {"description": "a window that makes no sense"},
        },
    )
    async def get_kpis(
        user: Annotated[User, Depends(viewer)],
        since: Since = None,
        until: Annotated[
            datetime | None, Query(description="ISO 8601, exclusive; default now")
        ] = None,
        window: Annotated[
            str | None, Query(description="the window's length (90m, 24h, 7d); default 24h")
        ] = None,
    ) -> KpisOut:
        """EEMUA 191 / ISA-18.2 alarm KPIs per operator position and per site: alarm
        rates, floods, chattering and stale alarms, priorities, time to acknowledge.
        The window is the last 24 h unless given by two of `since`, `until`, `window`
        (or one: `since` runs to now, `until` or `window` alone go with the default)."""
        if kpis is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no KPIs configured")
        start, end = kpi_window(_ms(since), _ms(until), window, ops.book.now_ms())
        return KpisOut.of(await kpis(start, end))

    @router.get("/api/audit", response_model=list[AuditEntryOut], responses=_READ_REFUSALS)
    async def get_audit(
        user: Annotated[User, Depends(supervisor)],
        since: Since = None,
        until: Until = None,
        by: Annotated[str | None, Query(alias="user")] = None,
        action: AuditAction | None = None,
        target: Annotated[
            str | None, Query(description="an alarm key, or a site, station or asset path")
        ] = None,
        limit: Limit = 500,
    ) -> list[AuditEntryOut]:
        """Who did what to which alarm (supervisor and up), newest last."""
        found = ops.audit.entries(_ms(since), _ms(until), by, action, target, limit)
        return [AuditEntryOut.of(e) for e in found]

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    return router


def kpi_window(
    since_ms: int | None, until_ms: int | None, window: str | None, now_ms: int
) -> tuple[int, int]:
    """[since, until) from what was given; HTTP 422 saying why if it makes no sense."""
    if since_ms is not None and until_ms is not None and window is not None:
        raise _unprocessable("give at most two of since, until and window")
    length = _window_ms(window) if window is not None else None
    if until_ms is None:
        until_ms = since_ms + length if since_ms is not None and length else now_ms
    if since_ms is None:
        since_ms = until_ms - (length or DAY_MS)
    if since_ms >= until_ms:
        raise _unprocessable("since must be before until")
    if until_ms - since_ms > MAX_KPI_WINDOW_MS:
        raise _unprocessable(f"a window of at most {MAX_KPI_WINDOW_MS // DAY_MS} days")
    if until_ms > now_ms + CLOCK_SLACK_MS:
        raise _unprocessable("until is in the future: KPIs are of what has happened")
    return since_ms, until_ms


def _window_ms(text: str) -> int:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise _unprocessable(f"window: {exc}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise _unprocessable(f"window: must be longer than 0, not {text!r}")
    return int(min(seconds * 1000, 2 * MAX_KPI_WINDOW_MS))


def _unprocessable(why: str) -> HTTPException:
    return HTTPException(422, why)  # what FastAPI answers for a malformed parameter


async def _provided(provider: Provider | None, what: str) -> JSONResponse:
    if provider is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} configured")
    value = provider()
    if inspect.isawaitable(value):
        value = await value
    return JSONResponse(jsonable_encoder(value))


# -- notification deliveries ------------------------------------------------------------


def _notification_routes(tokens: Tokens, log: DeliveryLog | None) -> APIRouter:
    router = APIRouter(tags=["service"])
    crew = requires(tokens, Role.CREW)

    @router.get("/api/notifications", response_model=NotificationsOut, responses=_READ_REFUSALS)
    async def notifications(
        user: Annotated[User, Depends(crew)],
        state: Annotated[
            list[DeliveryState] | None,
            Query(description="repeatable; failed and abandoned are what reached nobody"),
        ] = None,
        since: Annotated[
            datetime | None,
            Query(description="ISO 8601: made or last tried at or after this"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> NotificationsOut:
        """The notifier's deliveries, newest first: each message to each contact, its
        channel, recipient, tries and last error (crew and up: whoever answers alarms
        must know when the people who should hear of them do not). Without a notifier
        the answer says so (`notifier`: false) and lists nothing: a console polling it
        has nothing to fail on."""
        if log is None:
            return NotificationsOut(notifier=False, counts={}, deliveries=[])
        wanted = [STATUS_OF[s] for s in state] if state else None
        found = log.deliveries(wanted, limit, _ms(since))
        counts = {STATE_OF[s]: n for s, n in log.delivery_counts().items()}
        deliveries = [DeliveryOut.of(d) for d in found]
        return NotificationsOut(notifier=True, counts=counts, deliveries=deliveries)

    return router


# -- users (admin) ----------------------------------------------------------------------


@dataclass
class LinkAccess:
    """Who may still use an acknowledge link: the person it names must not be revoked
    now, nor have been revoked after the link was sent, and (with a notifier) must still
    be one of its people."""

    tokens: Tokens
    revoked_at: dict[str, int]  # each name's newest revocation, ms
    people: Callable[[], Collection[str]] | None

    def refusal(self, grant: AckGrant) -> str | None:
        revoked = self.tokens.revoked.get(grant.user)
        if revoked is not None:
            return f"the access of {grant.user} was revoked by {revoked.by}: {revoked.reason}"
        at = self.revoked_at.get(grant.user)
        if at is not None and grant.issued_s * 1000 <= at:
            return (
                f"this link was sent before {grant.user}'s access was revoked, and stays "
                "refused; acknowledge in the console or from a newer message"
            )
        if self.people is not None and grant.user not in self.people():
            return f"{grant.user} is no longer one of the people alarms are sent to"
        return None

    def names(self) -> list[User | str]:
        """Token users, then the people with links only."""
        users: list[User | str] = list(self.tokens.users)
        with_token = {u.name for u in self.tokens.users}
        people = sorted(set(self.people()) - with_token) if self.people is not None else []
        return users + people


def _user_routes(ops: Operations, access: LinkAccess, hub: EventHub) -> APIRouter:
    tokens = access.tokens
    router = APIRouter(tags=["users"], responses=_READ_REFUSALS)
    admin = requires(tokens, Role.ADMIN)
    audit = ops.audit
    user_path = "/api/users/{name}"
    refusals: dict[int | str, dict[str, Any]] = {
        400: _REFUSALS[400],
        413: _REFUSALS[413],
        404: {"description": "no such user"},
        409: {"description": "already so, or your own access"},
    }

    def known(name: str) -> User | str:
        found = next((u for u in access.names() if _name(u) == name), None)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {name}")
        return found

    def refuse(by: User, action: AuditAction, name: str, words: str, why: str) -> HTTPException:
        target = USER_TARGET + name
        audit.record(by.name, by.role.value, action, target, words, Outcome.REFUSED, why)
        return HTTPException(status.HTTP_409_CONFLICT, why)

    @router.get("/api/users", response_model=list[UserOut])
    async def users(user: Annotated[User, Depends(admin)]) -> list[UserOut]:
        """Who may sign in, with which role, and whose access is revoked (admin); then
        the notifier's people who get acknowledge links but have no token (role null)."""
        return [UserOut.of(u, tokens.revoked.get(_name(u))) for u in access.names()]

    @router.post(f"{user_path}/revoke", response_model=UserOut, responses=refusals)
    async def revoke(name: str, body: RevokeBody, user: Annotated[User, Depends(admin)]) -> UserOut:
        """Refuse a user's token from now on (a lost phone, someone who left): every
        request with it is 401 and their live streams end, until an admin restores it.
        Kept in the audit log, so it holds across restarts (admin)."""
        target = known(name)
        action = AuditAction.REVOKE_ACCESS
        if name == user.name:
            why = "you cannot revoke your own access: another admin can"
            raise refuse(user, action, name, body.reason, why)
        if name in tokens.revoked:
            raise refuse(user, action, name, body.reason, f"{name}'s access is already revoked")
        entry = audit.record(
            user.name, user.role.value, action, USER_TARGET + name, body.reason, Outcome.DONE
        )
        tokens.revoked[name] = Revocation(user.name, entry.at_ms, body.reason)
        access.revoked_at[name] = entry.at_ms
        hub.end_streams_of(name)
        return UserOut.of(target, tokens.revoked[name])

    @router.post(f"{user_path}/restore", response_model=UserOut, responses=refusals)
    async def restore(
        name: str, user: Annotated[User, Depends(admin)], body: CommentBody | None = None
    ) -> UserOut:
        """Let a revoked user's token sign in again (admin)."""
        target = known(name)
        comment = (body or CommentBody()).comment
        action = AuditAction.RESTORE_ACCESS
        if name not in tokens.revoked:
            raise refuse(user, action, name, comment, f"{name}'s access is not revoked")
        audit.record(user.name, user.role.value, action, USER_TARGET + name, comment, Outcome.DONE)
        del tokens.revoked[name]
        return UserOut.of(target, None)

    return router


def _name(user: User | str) -> str:
    return user if isinstance(user, str) else user.name


# -- the console and the acknowledge-link pages -----------------------------------------


def _page_routes(ops: Operations, links: AckLinks | None, access: LinkAccess) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def console() -> FileResponse:
        return FileResponse(STATIC / "console.html", headers={"Cache-Control": "no-cache"})

    @router.get("/ack/{token}")
    async def ack_link_page(token: str) -> HTMLResponse:
        """Shows the alarm; acknowledging is the form's POST (see ackpage)."""
        found = _granted(ops, links, access, token)
        if isinstance(found, HTMLResponse):
            return found
        grant, alarm = found
        return HTMLResponse(ackpage.alarm_page(alarm, grant.user))

    @router.post("/ack/{token}")
    async def ack_link(token: str, request: Request) -> HTMLResponse:
        found = _granted(ops, links, access, token, audit_refusal=True)
        if isinstance(found, HTMLResponse):
            return found
        grant, _ = found
        comment = _form_field(await request.body(), "comment")[:1000]
        try:
            await ops.act(
                (grant.user, LINK_ROLE),
                AuditAction.ACKNOWLEDGE,
                str(grant.key),
                comment,
                lambda: [ops.book.acknowledge(grant.key, grant.user, comment)],
            )
        except AlarmActionError as exc:
            page = ackpage.message_page("Not acknowledged", str(exc))
            return HTMLResponse(page, status.HTTP_409_CONFLICT)
        return HTMLResponse(ackpage.done_page(ops.alarm(grant.key)))

    return router


def _granted(
    ops: Operations,
    links: AckLinks | None,
    access: LinkAccess,
    token: str,
    audit_refusal: bool = False,
) -> tuple[AckGrant, Alarm] | HTMLResponse:
    """The link's grant and alarm, or the page that says why there is none."""
    if links is None:
        page = ackpage.message_page("Not found", "acknowledge links are not enabled")
        return HTMLResponse(page, status.HTTP_404_NOT_FOUND)
    try:
        grant = links.verify(token)
    except AckLinkExpired as exc:
        page = ackpage.message_page("Link expired", str(exc))
        return HTMLResponse(page, status.HTTP_410_GONE)
    except AckLinkError as exc:
        return HTMLResponse(ackpage.message_page("Link refused", str(exc)), 400)
    refused = access.refusal(grant)
    if refused is not None:
        if audit_refusal:
            ops.audit.record(
                grant.user,
                LINK_ROLE,
                AuditAction.ACKNOWLEDGE,
                str(grant.key),
                "",
                Outcome.FORBIDDEN,
                refused,
            )
        return HTMLResponse(ackpage.message_page("Link refused", refused), 403)
    alarm = ops.book.get(grant.key)
    if alarm is None:
        page = ackpage.message_page("Not found", f"no alarm {grant.key}")
        return HTMLResponse(page, status.HTTP_404_NOT_FOUND)
    if grant.raised_ms != alarm.raised_ms:
        return HTMLResponse(ackpage.earlier_raise_page(alarm, grant.raised_ms), 410)
    return grant, alarm


def _form_field(body: bytes, name: str) -> str:
    """One field of an application/x-www-form-urlencoded body (no multipart needed)."""
    values = parse_qs(body.decode("utf-8", errors="replace")).get(name, [""])
    return values[0].strip()


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status.HTTP_409_CONFLICT)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422, but one that can always be sent. Its errors repeat the input,
    which may be what no JSON response holds: NaN, Infinity or a lone surrogate
    ("\\ud800"), all of which Python's JSON parser takes, or the bytes of a body of
    another media type. FastAPI's own handler answered those with a 500."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(_json_safe([_short_input(e) for e in exc.errors()]))
    return JSONResponse({"detail": errors}, status.HTTP_422_UNPROCESSABLE_CONTENT)


def _short_input(error: Any) -> Any:
    """An error quoting at most a preview of the input: a 60 kB comment is not sent back
    (nor the whole body, which FastAPI quotes for a body that is not an object)."""
    if not isinstance(error, dict) or "input" not in error:
        return error
    shown = error["input"]
    text = shown if isinstance(shown, str) else repr(shown)
    if len(text) <= MAX_ECHO_CHARS:
        return error
    preview = text[:MAX_ECHO_CHARS]
    return {**error, "input": f"{preview}… ({len(text)} characters, not all shown)"}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, str):
        return value.encode("utf-8", errors="backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class BodyLimit:
    """Refuses a request body over `max_bytes` with 413 before the application reads it:
    by its Content-Length at once, or, for a chunked body, as soon as the bytes received
    pass the limit. FastAPI reads a body before checking the token, so without this a
    200 MB POST with no token was read into memory before its 401."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes an HTTPException from reading the body through.
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, self._why())
            return message

        await self.app(scope, counted, send)

    def _why(self) -> str:
        return f"the body is larger than {self.max_bytes} bytes"

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": self._why()}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status.HTTP_413_CONTENT_TOO_LARGE,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed one before we see it
    return None


class SecurityHeaders:
    """Headers every response gets; a pure ASGI middleware, so the event stream passes
    through unbuffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _security_headers(str(scope.get("path", "")))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),  # an ack link's token must not leak on
        (b"x-frame-options", b"DENY"),
    ]
    # /docs (Swagger UI) loads its scripts from a CDN, so the strict policy is for ours.
    if path == "/" or path.startswith(("/ack/", "/static/")):
        headers.append((b"content-security-policy", _PAGE_CSP.encode()))
    if path.startswith(("/api/", "/ack/")):
        headers.append((b"cache-control", b"no-store"))
    return headers
