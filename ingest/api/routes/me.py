"""The signed-in user: who the token belongs to."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they name dependencies made inside `routes`.

from typing import Annotated

from fastapi import APIRouter, Depends

from ingest.api.auth import Role, Tokens, User, requires
from ingest.api.models import Me
from ingest.api.routes.common import READ_REFUSALS


def routes(tokens: Tokens) -> APIRouter:
    router = APIRouter(tags=["service"])
    viewer = requires(tokens, Role.VIEWER)

    @router.get("/api/me", response_model=Me, responses=READ_REFUSALS)
    async def me(user: Annotated[User, Depends(viewer)]) -> Me:
        """Who the token belongs to, and their role (the console shows what it allows)."""
        return Me.model_validate(user)

    return router
