"""The API's JSON shapes: what /openapi.json documents and the console reads.

Times are UTC milliseconds since the epoch, like everywhere else in the platform.
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import unquote

from pydantic import BaseModel, Field

from facility.wire import Value
from ingest.alarms.book import Alarm, AlarmEvent, Transition
from ingest.alarms.kpi import AlarmKpis, PositionKpis
from ingest.alarms.model import AlarmKey, AlarmState, Priority
from ingest.alarms.notify.store import Delivery, DeliveryStatus
from ingest.api.audit import AuditAction, AuditEntry, Outcome
from ingest.api.auth import Revocation, Role, User


class KeyParts(BaseModel):
    key: str = Field(description="site/station/asset/rule")
    site: str
    station: str
    asset: str
    rule: str


def _parts(key: AlarmKey) -> dict[str, str]:
    return {
        "key": str(key),
        "site": key.site,
        "station": key.station,
        "asset": key.asset,
        "rule": key.rule,
    }


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

    @classmethod
    def of(cls, alarm: Alarm) -> AlarmOut:
        return cls(
            **_parts(alarm.key),
            state=alarm.state,
            active=alarm.active,
            priority=alarm.priority,
            message=alarm.message,
            value=alarm.value,
            latched=alarm.latched,
            raised_ms=alarm.raised_ms,
            last_change_ms=alarm.last_change_ms,
            updated_ms=alarm.updated_ms,
            acked_ms=alarm.acked_ms,
            acked_by=alarm.acked_by,
            shelved=alarm.shelved,
            shelved_until_ms=alarm.shelved_until_ms,
            shelved_by=alarm.shelved_by,
            shelve_reason=alarm.shelve_reason,
            out_of_service=alarm.out_of_service,
            hidden=alarm.hidden,
        )


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

    @classmethod
    def of(cls, t: Transition) -> TransitionOut:
        return cls(
            **_parts(t.key),
            id=t.id,
            event=t.event,
            from_state=t.from_state,
            to_state=t.to_state,
            at_ms=t.at_ms,
            recorded_ms=t.recorded_ms,
            user=t.user,
            comment=t.comment,
            priority=t.priority,
            message=t.message,
            text=t.text,
            value=t.value,
            suppressed=t.suppressed,
            active=t.active,
            notify=t.notify,
            since_ms=t.since_ms,
        )


class ActionResult(BaseModel):
    alarm: AlarmOut
    transitions: list[TransitionOut]


class AssetActionResult(BaseModel):
    asset: str = Field(description="site/station/asset")
    out_of_service: bool
    transitions: list[TransitionOut]


class AuditEntryOut(BaseModel):
    id: int
    at_ms: int
    user: str
    role: str = Field(description="the user's role, or `link` for a signed acknowledge link")
    action: AuditAction
    target: str
    comment: str
    outcome: Outcome
    detail: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            id=entry.id,
            at_ms=entry.at_ms,
            user=entry.user,
            role=entry.role,
            action=entry.action,
            target=entry.target,
            comment=entry.comment,
            outcome=entry.outcome,
            detail=entry.detail,
        )


class Me(BaseModel):
    name: str
    role: Role

    @classmethod
    def of(cls, user: User) -> Me:
        return cls(name=user.name, role=user.role)


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


class KpiGroupOut(BaseModel):
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

    @classmethod
    def of(cls, k: PositionKpis) -> KpiGroupOut:
        return cls(
            position=k.position,
            alarms=k.alarms,
            per_10min_average=k.per_10min_average,
            per_10min_peak=k.per_10min_peak,
            flood_periods=k.flood_periods,
            time_in_flood_pct=k.time_in_flood_pct,
            chattering=k.chattering,
            stale=k.stale,
            raised={Priority(p): n for p, n in k.raised.items()},
            acknowledged=k.acknowledged,
            ack_median_s=k.ack_median_s,
            ack_p90_s=k.ack_p90_s,
        )


class KpisOut(BaseModel):
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

    @classmethod
    def of(cls, k: AlarmKpis) -> KpisOut:
        return cls(
            since_ms=k.since_ms,
            until_ms=k.until_ms,
            alarms=k.alarms,
            position_basis=k.position_basis,
            positions=[KpiGroupOut.of(p) for p in k.positions],
            sites=[KpiGroupOut.of(s) for s in k.sites],
            priorities={Priority(p): n for p, n in k.priorities.items()},
            priority_pct={Priority(p): n for p, n in k.priority_pct.items()},
            chattering=k.chattering,
            stale=k.stale,
            acknowledged=k.acknowledged,
            ack_median_s=k.ack_median_s,
            ack_p90_s=k.ack_p90_s,
        )


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
