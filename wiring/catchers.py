"""Local catchers for what the alarm notifier sends: an SMTP server and a webhook
receiver on this machine, so the demo and the tests see every notification without a
message leaving the host. Real services (aiosmtpd, http.server), not stand-ins."""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from wiring.services import free_port


@dataclass
class Mail:
    to: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return str(self.message.get_content())

    @property
    def ack_urls(self) -> list[str]:
        return re.findall(r"acknowledge: (\S+)", self.body)


@dataclass
class MailCatcher:
    """An SMTP server (aiosmtpd) on a fixed free port: stop() and start() again.
    `on_mail` is called from the server's thread."""

    port: int = field(default_factory=free_port)
    mails: list[Mail] = field(default_factory=list)
    on_mail: Callable[[Mail], None] | None = None
    controller: Controller | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        mail = Mail([str(r) for r in envelope.rcpt_tos], parsed)
        self.mails.append(mail)
        if self.on_mail is not None:
            self.on_mail(mail)
        return "250 OK"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.to]


@dataclass
class Webhook:
    """A real HTTP server that keeps every JSON body POSTed to it."""

    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self, port: int = 0) -> int:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                hook.posts.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
