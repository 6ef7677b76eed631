"""The API's JSON shapes: what /openapi.json documents and the console reads.

Times are UTC milliseconds since the epoch, like everywhere else in the platform.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from pydantic import AliasChoices, AliasPath, BaseModel, ConfigDict, Field, field_validator

from facility.wire import Value
from ingest.alarms.book import AlarmEvent
from ingest.alarms.model import AlarmKey, AlarmState, Priority
from ingest.alarms.notify.store import Delivery, DeliveryStatus
from ingest.api.audit import AuditAction, Outcome
from ingest.api.auth import Revocation, Role, User


class FromAttributes(BaseModel):
    """A shape read off the object it shows: `Model.model_validate(obj)` takes each
    field from the attribute of its name."""

    model_config = ConfigDict(from_attributes=True)


def _of_key(part: str) -> Any:
    # `site` given by name, or read off the object's AlarmKey (`alarm.key.site`).
    return Field(validation_alias=AliasChoices(part, AliasPath("key", part)))


class KeyParts(FromAttributes):
    key: str = Field(description="site/station/asset/rule")
    site: str = _of_key("site")
    station: str = _of_key("station")
    asset: str = _of_key("asset")
    rule: str = _of_key("rule")

    @field_validator("key", mode="before")
    @classmethod
    def _key_as_path(cls, key: object) -> object:
        return str(key) if isinstance(key, AlarmKey) else key


class AlarmOut(KeyParts):
    state: AlarmState
    active: bool = Field(description="the condition is active (state UNACKED or ACKED)")
    priority: Priority
    message: str
    value: Value
    latched: bool
    raised_ms: int | None = Field(description="event time of the latest raise")
    last_change_ms: int
    updated_ms: int
    acked_ms: int | None
    acked_by: str | None
    shelved: bool
    shelved_until_ms: int | None
    shelved_by: str | None
    shelve_reason: str | None
    out_of_service: bool
    hidden: bool = Field(description="out of the crew's view: shelved or out of service")


class AlarmList(BaseModel):
    now_ms: int = Field(description="the server's clock, so a console can show true ages")
    alarms: list[AlarmOut]


class TransitionOut(KeyParts):
    id: int
    event: AlarmEvent
    from_state: AlarmState
    to_state: AlarmState
    at_ms: int = Field(description="event time, or the wall time of an operator action")
    recorded_ms: int
    user: str
    comment: str
    priority: Priority
    message: str = Field(description="the alarm in words (a clear: its return to normal)")
    text: str = Field(description="the transition in a sentence for a person")
    value: Value
    suppressed: bool
    active: bool
    notify: bool = Field(description="whether the crew is told of it")
    since_ms: int | None = Field(
        default=None,
        description="a late condition (event `late`): when it began; `at_ms` is its end",
    )


class ActionResult(BaseModel):
    alarm: AlarmOut
    transitions: list[TransitionOut]


class AssetActionResult(BaseModel):
    asset: str = Field(description="site/station/asset")
    out_of_service: bool
    transitions: list[TransitionOut]


class AuditEntryOut(FromAttributes):
    id: int
    at_ms: int
    user: str
    role: str = Field(description="the user's role, or `link` for a signed acknowledge link")
    action: AuditAction
    target: str
    comment: str
    outcome: Outcome
    detail: str


class Me(FromAttributes):
    name: str
    role: Role


class Health(BaseModel):
    status: str


class UserOut(BaseModel):
    name: str
    role: Role | None = Field(
        description="null: a person of the notifier, with acknowledge links but no token"
    )
    revoked: bool = Field(description="the token and acknowledge links no longer work")
    revoked_by: str | None = None
    revoked_ms: int | None = None
    revoke_reason: str | None = None

    @classmethod
    def of(cls, user: User | str, revocation: Revocation | None) -> UserOut:
        # Two objects (or a bare name) joined: no one object to read attributes off.
        name, role = (user, None) if isinstance(user, str) else (user.name, user.role)
        if revocation is None:
            return cls(name=name, role=role, revoked=False)
        return cls(
            name=name,
            role=role,
            revoked=True,
            revoked_by=revocation.by,
            revoked_ms=revocation.at_ms,
            revoke_reason=revocation.reason,
        )


# -- KPIs -------------------------------------------------------------------------------


class KpiGroupOut(FromAttributes):
    """One operator position's figures (or one site's)."""

    position: str = Field(description="the operator position (in `sites`: the site)")
    alarms: int = Field(description="alarms raised in the window")
    per_10min_average: float = Field(description="EEMUA 191: ≤ 1 very likely acceptable")
    per_10min_peak: int = Field(description="most in one clock 10-minute interval (< 10)")
    flood_periods: int = Field(description="10-minute intervals with more than 10 alarms")
    time_in_flood_pct: float = Field(description="ISA-18.2: < 1 %")
    chattering: int = Field(description="alarms raised 3 times within a minute")
    stale: int = Field(description="alarms standing over 24 h at the window's end")
    raised: dict[Priority, int] = Field(description="alarms raised, per priority")
    acknowledged: int
    ack_median_s: float | None = Field(description="time to acknowledge, median")
    ack_p90_s: float | None = Field(description="time to acknowledge, 90th percentile")


class KpisOut(FromAttributes):
    """EEMUA 191 / ISA-18.2 alarm KPIs over [since_ms, until_ms)."""

    since_ms: int
    until_ms: int
    alarms: int
    position_basis: str = Field(description="what an operator position is here")
    positions: list[KpiGroupOut] = Field(description="per operator position")
    sites: list[KpiGroupOut] = Field(description="per site")
    priorities: dict[Priority, int]
    priority_pct: dict[Priority, float] = Field(description="EEMUA: ~5 % critical, ~15 % high")
    chattering: list[str] = Field(description="alarm keys")
    stale: list[str] = Field(description="alarm keys")
    acknowledged: int
    ack_median_s: float | None
    ack_p90_s: float | None


# -- notification deliveries ------------------------------------------------------------


class DeliveryState(StrEnum):
    PENDING = "pending"  # not tried yet
    FAILED = "failed"  # the last try failed; it is tried again
    DELIVERED = "delivered"
    ABANDONED = "abandoned"  # failed for longer than delivery.give_up_after


STATE_OF = {
    DeliveryStatus.PENDING: DeliveryState.PENDING,
    DeliveryStatus.FAILED: DeliveryState.FAILED,
    DeliveryStatus.SENT: DeliveryState.DELIVERED,
    DeliveryStatus.ABANDONED: DeliveryState.ABANDONED,
}
STATUS_OF = {state: status for status, state in STATE_OF.items()}


class DeliveryOut(BaseModel):
    """One message to one contact of one person."""

    id: int
    state: DeliveryState
    kind: str = Field(description="group (raises, clears, ...), escalation or reminder")
    person: str
    channel: str = Field(description="mailto, json, tgram, ... (Apprise's scheme) or mqtt")
    recipient: str = Field(description="the contact, secrets masked")
    attempts: int
    last_error: str
    created_ms: int
    last_attempt_ms: int | None
    next_attempt_ms: int | None = Field(description="the next try, while pending or failed")
    sent_ms: int | None
    title: str
    alarms: list[str] = Field(description="keys of the alarms in the message")

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        # Most fields are derived (state, channel, unmasked recipient, keys), not read.
        state = STATE_OF[d.status]
        waiting = state in (DeliveryState.PENDING, DeliveryState.FAILED)
        return cls(
            id=d.id,
            state=state,
            kind=d.kind,
            person=d.person,
            channel=d.contact_label.split("://", 1)[0],
            recipient=unquote(d.contact_label),
            attempts=d.attempts,
            last_error=d.last_error,
            created_ms=d.created_ms,
            last_attempt_ms=d.last_attempt_ms,
            next_attempt_ms=d.next_attempt_ms if waiting else None,
            sent_ms=d.sent_ms,
            title=d.title,
            alarms=[str(a.get("key", "")) for a in d.alarms],
        )


class NotificationsOut(BaseModel):
    notifier: bool = Field(description="false: no notifier is configured, nobody is told")
    counts: dict[DeliveryState, int] = Field(description="every delivery kept, per state")
    deliveries: list[DeliveryOut] = Field(description="newest first")


# -- request bodies ---------------------------------------------------------------------


class CommentBody(BaseModel):
    comment: str = Field(default="", max_length=1000)


class ShelveBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    minutes: float = Field(
        gt=0, allow_inf_nan=False, description="how long; the service caps it (8 h by default)"
    )


class OutOfServiceBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class RevokeBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
