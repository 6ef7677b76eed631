"""Acknowledge links in notifications: signed, for one alarm and one person, expiring.

A link carries the alarm key and who it was sent to, signed with the service's secret
(itsdangerous, HMAC-SHA256) and stamped; it is refused after `max_age_s` or if a single
character was changed. Whoever holds the link can acknowledge that one alarm as that
person, which is what a crew member on a phone needs and no more.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ingest.alarms.model import AlarmKey

SALT = "facility-alarm-ack"


class AckLinkError(ValueError):
    """The link is forged, damaged or too old; the text says which."""


@dataclass(frozen=True)
class AckGrant:
    key: AlarmKey
    user: str


class AckLinks:
    def __init__(self, secret: str, base_url: str, max_age_s: float = 24 * 3600) -> None:
        if len(secret) < 16:
            raise ValueError("the ack link secret must be at least 16 characters")
        self._signer = URLSafeTimedSerializer(secret, salt=SALT)
        self.base_url = base_url.rstrip("/")
        self.max_age_s = max_age_s

    def token(self, key: AlarmKey, user: str) -> str:
        return str(self._signer.dumps([str(key), user]))

    def url(self, key: AlarmKey, user: str) -> str:
        return f"{self.base_url}/ack/{self.token(key, user)}"

    def verify(self, token: str) -> AckGrant:
        try:
            key, user = self._signer.loads(token, max_age=int(self.max_age_s))
        except SignatureExpired as exc:
            raise AckLinkError("this acknowledge link has expired") from exc
        except (BadSignature, ValueError, TypeError) as exc:
            raise AckLinkError("this acknowledge link is not valid") from exc
        return AckGrant(AlarmKey.parse(str(key)), str(user))
