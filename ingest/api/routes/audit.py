"""The audit log: who did what to which alarm (supervisor and up)."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they name dependencies made inside `routes`.

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ingest.api.audit import AuditAction
from ingest.api.auth import Role, Tokens, User, requires
from ingest.api.models import AuditEntryOut
from ingest.api.routes.common import READ_REFUSALS, Limit, Operations, Since, Until, to_ms


def routes(ops: Operations, tokens: Tokens) -> APIRouter:
    router = APIRouter(tags=["service"])
    supervisor = requires(tokens, Role.SUPERVISOR)

    @router.get("/api/audit", response_model=list[AuditEntryOut], responses=READ_REFUSALS)
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
        found = ops.audit.entries(to_ms(since), to_ms(until), by, action, target, limit)
        return [AuditEntryOut.model_validate(e) for e in found]

    return router
