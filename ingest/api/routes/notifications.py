"""The notifier's deliveries: who was told, and who was not reached."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they name dependencies made inside `routes`.

from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Query

from ingest.alarms.notify.store import Delivery, DeliveryStatus
from ingest.api.auth import Role, Tokens, User, requires
from ingest.api.models import STATE_OF, STATUS_OF, DeliveryOut, DeliveryState, NotificationsOut
from ingest.api.routes.common import READ_REFUSALS, to_ms


class DeliveryLog(Protocol):
    """What the API reads of the notifier (Notifier fits)."""

    def deliveries(
        self,
        status: DeliveryStatus | Collection[DeliveryStatus] | None = None,
        limit: int = 100,
        since_ms: int | None = None,
    ) -> list[Delivery]: ...

    def delivery_counts(self) -> dict[DeliveryStatus, int]: ...


def routes(tokens: Tokens, log: DeliveryLog | None) -> APIRouter:
    router = APIRouter(tags=["service"])
    crew = requires(tokens, Role.CREW)

    @router.get("/api/notifications", response_model=NotificationsOut, responses=READ_REFUSALS)
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
        found = log.deliveries(wanted, limit, to_ms(since))
        counts = {STATE_OF[s]: n for s, n in log.delivery_counts().items()}
        deliveries = [DeliveryOut.of(d) for d in found]
        return NotificationsOut(notifier=True, counts=counts, deliveries=deliveries)

    return router
