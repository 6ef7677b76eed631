"""The live feed: every transition as a Server-Sent Event."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they name dependencies made inside `routes`.

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from ingest.api.auth import Role, Tokens, User, requires_header_or_query
from ingest.api.events import EventHub, stream
from ingest.api.routes.common import READ_REFUSALS


def routes(tokens: Tokens, hub: EventHub) -> APIRouter:
    router = APIRouter(tags=["service"])
    streamer = requires_header_or_query(tokens, Role.VIEWER)

    @router.get(
        "/api/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-Sent Events: `hello` once, then `transition` (a "
                "TransitionOut) for every change, `resync` if some were dropped",
                "content": {"text/event-stream": {}},
            },
            **READ_REFUSALS,
        },
    )
    async def events(user: Annotated[User, Depends(streamer)]) -> StreamingResponse:
        return StreamingResponse(
            stream(hub, user.name),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router
