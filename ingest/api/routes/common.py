"""What the routes share: the operations on the book (find an alarm, act, audit,
publish), the path and query parameters, and the refusals every operation declares."""

# No `from __future__ import annotations` here: FastAPI reads the parameter types
# defined here (Key, Limit, ...) at runtime.

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, status

from ingest.alarms.book import Alarm, AlarmActionError, AlarmBook, Transition
from ingest.alarms.model import AlarmKey
from ingest.alarms.pipeline import AlarmPipeline
from ingest.api.audit import AuditAction, AuditLog, Outcome
from ingest.api.auth import User
from ingest.api.models import ActionResult, AlarmOut, TransitionOut

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000
LINK_ROLE = "link"  # the audit log's role for a signed acknowledge link

REFUSALS: dict[int | str, dict[str, Any]] = {
    # FastAPI's answer to a body it cannot parse: not UTF-8, too deeply nested, a number
    # of thousands of digits.
    status.HTTP_400_BAD_REQUEST: {"description": "a body that cannot be parsed"},
    status.HTTP_401_UNAUTHORIZED: {"description": "no token, or an unknown one"},
    status.HTTP_403_FORBIDDEN: {"description": "the user's role does not allow it"},
    status.HTTP_404_NOT_FOUND: {"description": "no such alarm (or asset)"},
    status.HTTP_409_CONFLICT: {"description": "the alarm's state does not allow it"},
    status.HTTP_413_CONTENT_TOO_LARGE: {"description": "a body over 64 kB, refused unread"},
}
READ_REFUSALS: dict[int | str, dict[str, Any]] = {code: REFUSALS[code] for code in (401, 403)}
NO_ALARM: dict[int | str, dict[str, Any]] = {404: REFUSALS[404]}


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
        done = await self.act(who(user), action, str(key), comment, lambda: [do()], detail)
        return self.result(key, done)

    def result(self, key: AlarmKey, transitions: list[Transition]) -> ActionResult:
        return ActionResult(
            alarm=AlarmOut.model_validate(self.alarm(key)),
            transitions=[TransitionOut.model_validate(t) for t in transitions],
        )


def who(user: User) -> tuple[str, str]:
    return user.name, user.role.value


def to_ms(at: datetime | None) -> int | None:
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def alarm_key(site: str, station: str, asset: str, rule: str) -> AlarmKey:
    return AlarmKey(site, station, asset, rule)


def asset_path(site: str, station: str, asset: str) -> str:
    return f"{site}/{station}/{asset}"


Key = Annotated[AlarmKey, Depends(alarm_key)]
AssetPath = Annotated[str, Depends(asset_path)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Since = Annotated[datetime | None, Query(description="ISO 8601; without a zone, UTC")]
Until = Annotated[datetime | None, Query(description="ISO 8601, exclusive")]
