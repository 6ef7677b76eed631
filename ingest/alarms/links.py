"""Acknowledge links in notifications: signed, for one raise of one alarm and one
person, expiring.

A link carries the alarm key, the event time of the raise it was sent for (the
occurrence) and who it was sent to, signed with the service's secret (itsdangerous,
HMAC-SHA256) and stamped; it is refused after `max_age_s` or if a single character was
changed. Whoever holds the link can acknowledge that one raise as that person, which is
what a crew member on a phone needs and no more: once the alarm has been raised again,
an older message's link no longer acknowledges it (the API checks the occurrence, and
that the person's access is not revoked, when the link is used: ingest/api/routes/pages.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from ingest.alarms.model import AlarmKey

SALT = "facility-alarm-ack"


class AckLinkError(ValueError):
    """The link is forged, damaged or too old; the text says which."""


class AckLinkExpired(AckLinkError):
    """A genuine link, older than `max_age_s`."""


@dataclass(frozen=True)
class AckGrant:
    key: AlarmKey
    user: str
    raised_ms: int | None  # the occurrence the link was sent for
    issued_s: int  # when the link was made (Unix seconds)


class _ClockedSigner(TimestampSigner):
    """itsdangerous's signer on a given clock, for stamping and for measuring age."""

    def __init__(self, *args: Any, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def get_timestamp(self) -> int:
        return int(self.clock())


class AckLinks:
    """`clock` (seconds, like time.time) stamps the links and measures their age."""

    def __init__(
        self,
        secret: str,
        base_url: str,
        max_age_s: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the ack link secret must be at least 16 characters")
        self._signer = URLSafeTimedSerializer(
            secret, salt=SALT, signer=_ClockedSigner, signer_kwargs={"clock": clock}
        )
        self.base_url = base_url.rstrip("/")
        self.max_age_s = max_age_s

    def token(self, key: AlarmKey, user: str, raised_ms: int | None) -> str:
        return str(self._signer.dumps([str(key), user, raised_ms]))

    def url(self, key: AlarmKey, user: str, raised_ms: int | None) -> str:
        return f"{self.base_url}/ack/{self.token(key, user, raised_ms)}"

    def verify(self, token: str) -> AckGrant:
        try:
            (key, user, raised_ms), issued = self._signer.loads(
                token, max_age=int(self.max_age_s), return_timestamp=True
            )
        except SignatureExpired as exc:
            hours = self.max_age_s / 3600
            raise AckLinkExpired(
                f"this acknowledge link has expired (links work for {hours:g} h after "
                "they are sent); acknowledge the alarm in the console instead"
            ) from exc
        except (BadSignature, ValueError, TypeError) as exc:
            # a link of the earlier format (no occurrence) unpacks wrongly: not valid either
            raise AckLinkError("this acknowledge link is not valid") from exc
        if raised_ms is not None and not isinstance(raised_ms, int):
            raise AckLinkError("this acknowledge link is not valid")
        return AckGrant(AlarmKey.parse(str(key)), str(user), raised_ms, int(issued.timestamp()))
