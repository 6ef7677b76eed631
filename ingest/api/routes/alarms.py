"""Reading the alarms: the board, one alarm, its history, every alarm's history."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they name dependencies made inside `routes`.

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ingest.alarms.book import AlarmBook, AlarmEvent, Transition
from ingest.alarms.model import AlarmKey, AlarmState, Priority
from ingest.api.auth import Role, Tokens, User, requires
from ingest.api.models import AlarmList, AlarmOut, TransitionOut
from ingest.api.routes.common import (
    NO_ALARM,
    READ_REFUSALS,
    Key,
    Limit,
    Operations,
    Since,
    Until,
    to_ms,
)

HISTORY_SCAN = 50_000  # filters other than a whole key look at this many newest transitions


def routes(ops: Operations, tokens: Tokens) -> APIRouter:
    router = APIRouter(tags=["alarms"], responses=READ_REFUSALS)
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
        return AlarmList(now_ms=book.now_ms(), alarms=[AlarmOut.model_validate(a) for a in alarms])

    @router.get(
        "/api/alarms/{site}/{station}/{asset}/{rule}", response_model=AlarmOut, responses=NO_ALARM
    )
    async def get_alarm(key: Key, user: Annotated[User, Depends(viewer)]) -> AlarmOut:
        return AlarmOut.model_validate(ops.alarm(key))

    @router.get(
        "/api/alarms/{site}/{station}/{asset}/{rule}/history",
        response_model=list[TransitionOut],
        responses=NO_ALARM,
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
        found = book.history(key, to_ms(since), to_ms(until), limit)
        return [TransitionOut.model_validate(t) for t in found]

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
        found = _history(book, parts, event, to_ms(since), to_ms(until), limit)
        return [TransitionOut.model_validate(t) for t in found]

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
