"""The alarm REST API and the web console: the app factory.

`create_app` wires the alarm book, the pipeline (every action's transitions go out
through it to InfluxDB, the notifier and the consoles), the API users, the audit log
and, optionally, acknowledge links and the notifier's rosters and KPIs into one FastAPI
application (the notifier's deliveries too, for `/api/notifications`). It runs in the
ingest service's own event loop (see server.py): the
pipeline calls its listeners there, and the console's live stream is one of them.

The routes are in routes/, one module per resource; the body limit and the security
headers in middleware.py; the 409 and 422 answers in errors.py.

Alarm keys and asset paths are URL paths (`/api/alarms/fengshou/xiba/pump_1/pump_trip`),
given as separate segments so `/history` and the actions after a key are unambiguous.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles

from ingest.alarms.book import AlarmActionError, AlarmBook
from ingest.alarms.links import AckLinks
from ingest.alarms.pipeline import AlarmPipeline
from ingest.api import errors
from ingest.api.access import LinkAccess
from ingest.api.audit import USER_TARGET, AuditAction, AuditLog, Outcome
from ingest.api.auth import Revocation, Role, Tokens, User
from ingest.api.events import EventHub
from ingest.api.middleware import MAX_BODY_BYTES, BodyLimit, SecurityHeaders
from ingest.api.routes import actions, alarms, health, live, me, notifications, pages, users
from ingest.api.routes import audit as audit_routes
from ingest.api.routes import kpis as kpi_routes
from ingest.api.routes import rosters as roster_routes
from ingest.api.routes.common import Operations
from ingest.api.routes.kpis import KpiProvider, kpi_window
from ingest.api.routes.notifications import DeliveryLog
from ingest.api.routes.rosters import Provider

__all__ = [
    "MAX_BODY_BYTES",
    "STATIC",
    "DeliveryLog",
    "KpiProvider",
    "Provider",
    "create_app",
    "kpi_window",
]

STATIC = Path(__file__).parent / "static"


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
    access = LinkAccess(tokens, audit.last_revocations(), link_people)
    # In this order, the order of /openapi.json's paths.
    for router in (
        alarms.routes(ops, tokens),
        actions.routes(ops, tokens, known_asset),
        me.routes(tokens),
        live.routes(tokens, hub),
        roster_routes.routes(tokens, rosters),
        kpi_routes.routes(ops, tokens, kpis),
        audit_routes.routes(ops, tokens),
        health.routes(),
        notifications.routes(tokens, deliveries),
        users.routes(ops, access, hub),
        pages.routes(ops, links, access, STATIC),
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(AlarmActionError, errors.refused)
    app.add_exception_handler(RequestValidationError, errors.invalid)
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
