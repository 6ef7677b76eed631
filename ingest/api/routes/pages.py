"""The pages: the web console, and the acknowledge-link pages a notification points at
(GET only shows; the form's POST acknowledges, as the person the link was sent to)."""

from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, status
from fastapi.responses import FileResponse, HTMLResponse

from ingest.alarms.book import Alarm, AlarmActionError
from ingest.alarms.links import AckGrant, AckLinkError, AckLinkExpired, AckLinks
from ingest.api import ackpage
from ingest.api.access import LinkAccess
from ingest.api.audit import AuditAction, Outcome
from ingest.api.routes.common import LINK_ROLE, Operations


def routes(ops: Operations, links: AckLinks | None, access: LinkAccess, static: Path) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def console() -> FileResponse:
        return FileResponse(static / "console.html", headers={"Cache-Control": "no-cache"})

    @router.get("/ack/{token}")
    async def ack_link_page(token: str) -> HTMLResponse:
        """Shows the alarm; acknowledging is the form's POST (see ackpage)."""
        found = _granted(ops, links, access, token)
        if isinstance(found, HTMLResponse):
            return found
        grant, alarm = found
        return HTMLResponse(ackpage.alarm_page(alarm, grant.user))

    @router.post("/ack/{token}")
    async def ack_link(token: str, request: Request) -> HTMLResponse:
        found = _granted(ops, links, access, token, audit_refusal=True)
        if isinstance(found, HTMLResponse):
            return found
        grant, _ = found
        comment = _form_field(await request.body(), "comment")[:1000]
        try:
            await ops.act(
                (grant.user, LINK_ROLE),
                AuditAction.ACKNOWLEDGE,
                str(grant.key),
                comment,
                lambda: [ops.book.acknowledge(grant.key, grant.user, comment)],
            )
        except AlarmActionError as exc:
            page = ackpage.message_page("Not acknowledged", str(exc))
            return HTMLResponse(page, status.HTTP_409_CONFLICT)
        return HTMLResponse(ackpage.done_page(ops.alarm(grant.key)))

    return router


def _granted(
    ops: Operations,
    links: AckLinks | None,
    access: LinkAccess,
    token: str,
    audit_refusal: bool = False,
) -> tuple[AckGrant, Alarm] | HTMLResponse:
    """The link's grant and alarm, or the page that says why there is none."""
    if links is None:
        page = ackpage.message_page("Not found", "acknowledge links are not enabled")
        return HTMLResponse(page, status.HTTP_404_NOT_FOUND)
    try:
        grant = links.verify(token)
    except AckLinkExpired as exc:
        page = ackpage.message_page("Link expired", str(exc))
        return HTMLResponse(page, status.HTTP_410_GONE)
    except AckLinkError as exc:
        return HTMLResponse(ackpage.message_page("Link refused", str(exc)), 400)
    refused = access.refusal(grant)
    if refused is not None:
        if audit_refusal:
            ops.audit.record(
                grant.user,
                LINK_ROLE,
                AuditAction.ACKNOWLEDGE,
                str(grant.key),
                "",
                Outcome.FORBIDDEN,
                refused,
            )
        return HTMLResponse(ackpage.message_page("Link refused", refused), 403)
    alarm = ops.book.get(grant.key)
    if alarm is None:
        page = ackpage.message_page("Not found", f"no alarm {grant.key}")
        return HTMLResponse(page, status.HTTP_404_NOT_FOUND)
    if grant.raised_ms != alarm.raised_ms:
        return HTMLResponse(ackpage.earlier_raise_page(alarm, grant.raised_ms), 410)
    return grant, alarm


def _form_field(body: bytes, name: str) -> str:
    """One field of an application/x-www-form-urlencoded body (no multipart needed)."""
    values = parse_qs(body.decode("utf-8", errors="replace")).get(name, [""])
    return values[0].strip()
