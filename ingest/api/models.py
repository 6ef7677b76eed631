"""The API's JSON shapes: what /openapi.json documents and the console reads.

Times are UTC milliseconds since the epoch, like everywhere else in the platform.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from facility.wire import Value
from ingest.alarms.book import Alarm, AlarmEvent, Transition
from ingest.alarms.model import AlarmKey, AlarmState, Priority
from ingest.api.audit import AuditAction, AuditEntry, Outcome
from ingest.api.auth import Role, User


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
    message: str
    value: Value
    suppressed: bool
    active: bool
    notify: bool = Field(description="whether the crew is told of it")

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
            value=t.value,
            suppressed=t.suppressed,
            active=t.active,
            notify=t.notify,
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


# -- request bodies ---------------------------------------------------------------------


class CommentBody(BaseModel):
    comment: str = Field(default="", max_length=1000)


class ShelveBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    minutes: float = Field(gt=0, description="how long; the service caps it (8 h by default)")


class OutOfServiceBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
