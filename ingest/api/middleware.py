"""ASGI middleware around the whole API: the body-size limit and the security headers.
Both are pure ASGI, so the event stream passes through unbuffered."""

from __future__ import annotations

import json

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The largest body any operation takes is a comment of 1000 characters; a body over this
# is refused before it is read (by its Content-Length, or as it streams in).
MAX_BODY_BYTES = 64 * 1024

# The console and the ack pages load nothing but their own files.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class BodyLimit:
    """Refuses a request body over `max_bytes` with 413 before the application reads it:
    by its Content-Length at once, or, for a chunked body, as soon as the bytes received
    pass the limit. FastAPI reads a body before checking the token, so without this a
    200 MB POST with no token was read into memory before its 401."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes an HTTPException from reading the body through.
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, self._why())
            return message

        await self.app(scope, counted, send)

    def _why(self) -> str:
        return f"the body is larger than {self.max_bytes} bytes"

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": self._why()}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status.HTTP_413_CONTENT_TOO_LARGE,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed one before we see it
    return None


class SecurityHeaders:
    """Headers every response gets; a pure ASGI middleware, so the event stream passes
    through unbuffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _security_headers(str(scope.get("path", "")))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),  # an ack link's token must not leak on
        (b"x-frame-options", b"DENY"),
    ]
    # /docs (Swagger UI) loads its scripts from a CDN, so the strict policy is for ours.
    if path == "/" or path.startswith(("/ack/", "/static/")):
        headers.append((b"content-security-policy", PAGE_CSP.encode()))
    if path.startswith(("/api/", "/ack/")):
        headers.append((b"cache-control", b"no-store"))
    return headers
