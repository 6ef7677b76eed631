"""EEMUA 191 / ISA-18.2 alarm KPIs over a window."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they name dependencies made inside `routes`.

import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from facility.durations import parse_duration
from ingest.alarms.kpi import DAY_MS, AlarmKpis
from ingest.api.auth import Role, Tokens, User, requires
from ingest.api.models import KpisOut
from ingest.api.routes.common import READ_REFUSALS, Operations, Since, to_ms

# The KPIs of [since_ms, until_ms): the service computes them off the event loop.
KpiProvider = Callable[[int, int], Awaitable[AlarmKpis]]

MAX_KPI_WINDOW_MS = 400 * DAY_MS  # the raw data's and the book's horizon, and then some
CLOCK_SLACK_MS = 60_000  # an `until` this far ahead of the server's clock is not "future"
_ANSWERS: dict[int | str, dict[str, Any]] = {
    **READ_REFUSALS,
    404: {"description": "not configured"},
    422: {"description": "a window that makes no sense"},
}


def routes(ops: Operations, tokens: Tokens, kpis: KpiProvider | None) -> APIRouter:
    router = APIRouter(tags=["service"])
    viewer = requires(tokens, Role.VIEWER)

    @router.get("/api/kpis", response_model=KpisOut, responses=_ANSWERS)
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
        start, end = kpi_window(to_ms(since), to_ms(until), window, ops.book.now_ms())
        return KpisOut.model_validate(await kpis(start, end))

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
