"""Who may do what through the alarm API: bearer tokens, users and roles.

Tokens live in a YAML file (deploy/alarms/api-tokens.yaml), one entry per user, and the
file never holds a token itself: either its SHA-256 (`token_sha256`) or the name of an
environment variable that holds it (`token_env`, for secrets handed in by systemd or a
vault). A leaked file therefore signs nobody in.

Roles are ordered, each one allowing everything the ones below it do:
viewer (look) < crew (acknowledge, reset) < supervisor (shelve, out of service, audit)
< admin (the users: who may sign in, and revoking a token at once, e.g. a lost phone).
A revoked user's token is refused (401) until an admin restores it; revocations are
kept in the audit log, so they survive a restart.

    python -m ingest.api new-token NAME ROLE

prints a fresh random token and the line to put in the file.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import yaml
from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16
_SHA256_HEX = r"^[0-9a-f]{64}$"


class Role(StrEnum):
    VIEWER = "viewer"
    CREW = "crew"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def allows(self, required: Role) -> bool:
        return self.rank >= required.rank


_ROLE_RANK = {Role.VIEWER: 0, Role.CREW: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class Revocation:
    by: str
    at_ms: int
    reason: str


class TokensError(ValueError):
    """The token file is missing or wrong; the text names the file and the entry."""


class _UserEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^\S+$")
    role: Role
    token_sha256: str | None = Field(default=None, pattern=_SHA256_HEX)
    token_env: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_token(self) -> _UserEntry:
        if (self.token_sha256 is None) == (self.token_env is None):
            raise ValueError("give exactly one of token_sha256 and token_env")
        return self


class _TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[_UserEntry]


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Tokens:
    """The users who may use the API, each known by the SHA-256 of their token."""

    def __init__(self, users: Sequence[tuple[User, bytes]]) -> None:
        names = [user.name for user, _ in users]
        if len(set(names)) != len(names):
            raise TokensError(f"a user name appears twice: {sorted(names)}")
        self._users = list(users)
        self.revoked: dict[str, Revocation] = {}  # by user name: refused until restored
        # Told of every 403 (user, role needed, method, path): the API audits them.
        self.on_forbidden: Callable[[User, Role, str, str], None] | None = None

    @classmethod
    def of(cls, plain: Mapping[str, User]) -> Tokens:
        """From plain tokens (tests, and services that make their own)."""
        return cls([(user, hash_token(token)) for token, user in plain.items()])

    @classmethod
    def load(cls, path: Path, environ: Mapping[str, str] | None = None) -> Tokens:
        env = os.environ if environ is None else environ
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            parsed = _TokenFile.model_validate(raw)
        except (OSError, yaml.YAMLError) as exc:
            raise TokensError(f"{path}: {exc}") from exc
        except ValidationError as exc:
            raise TokensError(f"{path}: {_first_errors(exc)}") from exc
        users: list[tuple[User, bytes]] = []
        for entry in parsed.users:
            digest = _entry_digest(path, entry, env)
            if digest is not None:
                users.append((User(entry.name, entry.role), digest))
        return cls(users)

    def user(self, token: str) -> User | None:
        """The token's user, or None. Every entry is compared, in constant time, so the
        time taken says nothing about which entry, or how much of one, matched."""
        presented = hash_token(token)
        found: User | None = None
        for user, digest in self._users:
            if hmac.compare_digest(presented, digest):
                found = user
        return found

    @property
    def users(self) -> list[User]:
        return [user for user, _ in self._users]


def _entry_digest(path: Path, entry: _UserEntry, env: Mapping[str, str]) -> bytes | None:
    if entry.token_sha256 is not None:
        return bytes.fromhex(entry.token_sha256)
    assert entry.token_env is not None
    token = env.get(entry.token_env)
    if not token:
        # A host that does not hand this user a secret simply has no such user; the
        # service still starts so the rest of the crew can work.
        log.warning("%s: $%s is not set; %s cannot sign in", path, entry.token_env, entry.name)
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokensError(
            f"{path}: user {entry.name}: ${entry.token_env} is shorter than "
            f"{MIN_TOKEN_LENGTH} characters"
        )
    return hash_token(token)


def _first_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


# -- FastAPI dependencies ---------------------------------------------------------------

bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <token>`; tokens are listed in api-tokens.yaml",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
UserCheck = Callable[..., Awaitable[User]]


def requires(tokens: Tokens, role: Role) -> UserCheck:
    """A dependency: the signed-in user, who must hold `role` or a higher one."""

    async def signed_in(credentials: Credentials, request: Request) -> User:
        presented = credentials.credentials if credentials else None
        return authorize(tokens, presented, role, request)

    return signed_in


def requires_header_or_query(tokens: Tokens, role: Role) -> UserCheck:
    """Like `requires`, also taking `?token=`: a browser's EventSource cannot set headers."""

    async def signed_in(
        credentials: Credentials,
        request: Request,
        token: Annotated[
            str | None, Query(description="the bearer token, for clients that cannot set headers")
        ] = None,
    ) -> User:
        presented = credentials.credentials if credentials else token
        return authorize(tokens, presented, role, request)

    return signed_in


def authorize(
    tokens: Tokens, presented: str | None, role: Role, request: Request | None = None
) -> User:
    if not presented:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="facility"'},
        )
    user = tokens.user(presented)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown token",
            headers={"WWW-Authenticate": 'Bearer realm="facility", error="invalid_token"'},
        )
    revoked = tokens.revoked.get(user.name)
    if revoked is not None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"the access of {user.name} was revoked by {revoked.by}: {revoked.reason}",
            headers={"WWW-Authenticate": 'Bearer realm="facility", error="invalid_token"'},
        )
    if not user.role.allows(role):
        if tokens.on_forbidden is not None and request is not None:
            tokens.on_forbidden(user, role, request.method, request.url.path)
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{user.name} is {user.role}; this needs {role} or higher",
        )
    return user
