"""Who is on duty, as the notifier has it."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they name dependencies made inside `routes`.

import inspect
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from ingest.api.auth import Role, Tokens, User, requires
from ingest.api.routes.common import READ_REFUSALS

Provider = Callable[[], object]


def routes(tokens: Tokens, rosters: Provider | None) -> APIRouter:
    router = APIRouter(tags=["service"])
    viewer = requires(tokens, Role.VIEWER)

    @router.get("/api/rosters", responses={**READ_REFUSALS, 404: {"description": "not configured"}})
    async def get_rosters(user: Annotated[User, Depends(viewer)]) -> JSONResponse:
        """Who is on duty, as the notifier has it."""
        return await _provided(rosters, "rosters")

    return router


async def _provided(provider: Provider | None, what: str) -> JSONResponse:
    if provider is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what} configured")
    value = provider()
    if inspect.isawaitable(value):
        value = await value
    return JSONResponse(jsonable_encoder(value))
