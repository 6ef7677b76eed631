"""Operator actions: on one alarm (acknowledge, reset, shelve, unshelve) and on an
asset (out of service, back in service); each one audited."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they name dependencies made inside `routes`.

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from ingest.alarms.book import AlarmBook, Transition
from ingest.api.audit import AuditAction
from ingest.api.auth import Role, Tokens, User, requires
from ingest.api.models import (
    ActionResult,
    AssetActionResult,
    CommentBody,
    OutOfServiceBody,
    ShelveBody,
    TransitionOut,
)
from ingest.api.routes.common import REFUSALS, AssetPath, Key, Operations, who


def routes(ops: Operations, tokens: Tokens, known_asset: Callable[[str], bool] | None) -> APIRouter:
    router = APIRouter(tags=["actions"], responses=REFUSALS)
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
            who(user),
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
            who(user),
            AuditAction.IN_SERVICE,
            path,
            comment,
            lambda: book.return_to_service(path, user.name, comment),
        )
        return _asset_result(book, path, done)

    return router


def _asset_result(book: AlarmBook, path: str, done: list[Transition]) -> AssetActionResult:
    return AssetActionResult(
        asset=path,
        out_of_service=book.is_out_of_service(path),
        transitions=[TransitionOut.model_validate(t) for t in done],
    )
