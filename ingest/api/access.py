"""Who may still use an acknowledge link (the user routes revoke, the link pages ask)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from ingest.alarms.links import AckGrant
from ingest.api.auth import Tokens, User


@dataclass
class LinkAccess:
    """Who may still use an acknowledge link: the person it names must not be revoked
    now, nor have been revoked after the link was sent, and (with a notifier) must still
    be one of its people."""

    tokens: Tokens
    revoked_at: dict[str, int]  # each name's newest revocation, ms
    people: Callable[[], Collection[str]] | None

    def refusal(self, grant: AckGrant) -> str | None:
        revoked = self.tokens.revoked.get(grant.user)
        if revoked is not None:
            return f"the access of {grant.user} was revoked by {revoked.by}: {revoked.reason}"
        at = self.revoked_at.get(grant.user)
        if at is not None and grant.issued_s * 1000 <= at:
            return (
                f"this link was sent before {grant.user}'s access was revoked, and stays "
                "refused; acknowledge in the console or from a newer message"
            )
        if self.people is not None and grant.user not in self.people():
            return f"{grant.user} is no longer one of the people alarms are sent to"
        return None

    def names(self) -> list[User | str]:
        """Token users, then the people with links only."""
        users: list[User | str] = list(self.tokens.users)
        with_token = {u.name for u in self.tokens.users}
        people = sorted(set(self.people()) - with_token) if self.people is not None else []
        return users + people
