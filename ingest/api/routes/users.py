"""Who may sign in (admin): list the users, revoke a token at once, restore it."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# runtime, and they name dependencies made inside `routes`.

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status

from ingest.api.access import LinkAccess
from ingest.api.audit import USER_TARGET, AuditAction, Outcome
from ingest.api.auth import Revocation, Role, User, requires
from ingest.api.events import EventHub
from ingest.api.models import CommentBody, RevokeBody, UserOut
from ingest.api.routes.common import READ_REFUSALS, REFUSALS, Operations


def routes(ops: Operations, access: LinkAccess, hub: EventHub) -> APIRouter:
    tokens = access.tokens
    router = APIRouter(tags=["users"], responses=READ_REFUSALS)
    admin = requires(tokens, Role.ADMIN)
    audit = ops.audit
    user_path = "/api/users/{name}"
    refusals: dict[int | str, dict[str, Any]] = {
        400: REFUSALS[400],
        413: REFUSALS[413],
        404: {"description": "no such user"},
        409: {"description": "already so, or your own access"},
    }

    def known(name: str) -> User | str:
        found = next((u for u in access.names() if _name(u) == name), None)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {name}")
        return found

    def refuse(by: User, action: AuditAction, name: str, words: str, why: str) -> HTTPException:
        target = USER_TARGET + name
        audit.record(by.name, by.role.value, action, target, words, Outcome.REFUSED, why)
        return HTTPException(status.HTTP_409_CONFLICT, why)

    @router.get("/api/users", response_model=list[UserOut])
    async def users(user: Annotated[User, Depends(admin)]) -> list[UserOut]:
        """Who may sign in, with which role, and whose access is revoked (admin); then
        the notifier's people who get acknowledge links but have no token (role null)."""
        return [UserOut.of(u, tokens.revoked.get(_name(u))) for u in access.names()]

    @router.post(f"{user_path}/revoke", response_model=UserOut, responses=refusals)
    async def revoke(name: str, body: RevokeBody, user: Annotated[User, Depends(admin)]) -> UserOut:
        """Refuse a user's token from now on (a lost phone, someone who left): every
        request with it is 401 and their live streams end, until an admin restores it.
        Kept in the audit log, so it holds across restarts (admin)."""
        target = known(name)
        action = AuditAction.REVOKE_ACCESS
        if name == user.name:
            why = "you cannot revoke your own access: another admin can"
            raise refuse(user, action, name, body.reason, why)
        if name in tokens.revoked:
            raise refuse(user, action, name, body.reason, f"{name}'s access is already revoked")
        entry = audit.record(
            user.name, user.role.value, action, USER_TARGET + name, body.reason, Outcome.DONE
        )
        tokens.revoked[name] = Revocation(user.name, entry.at_ms, body.reason)
        access.revoked_at[name] = entry.at_ms
        hub.end_streams_of(name)
        return UserOut.of(target, tokens.revoked[name])

    @router.post(f"{user_path}/restore", response_model=UserOut, responses=refusals)
    async def restore(
        name: str, user: Annotated[User, Depends(admin)], body: CommentBody | None = None
    ) -> UserOut:
        """Let a revoked user's token sign in again (admin)."""
        target = known(name)
        comment = (body or CommentBody()).comment
        action = AuditAction.RESTORE_ACCESS
        if name not in tokens.revoked:
            raise refuse(user, action, name, comment, f"{name}'s access is not revoked")
        audit.record(user.name, user.role.value, action, USER_TARGET + name, comment, Outcome.DONE)
        del tokens.revoked[name]
        return UserOut.of(target, None)

    return router


def _name(user: User | str) -> str:
    return user if isinstance(user, str) else user.name
