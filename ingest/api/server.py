"""Serving the API inside the ingest service's own event loop.

The pipeline calls its listeners (the console's live stream among them) in the
service's loop, and the alarm book is shared, so the API runs as one more task of that
loop rather than a process of its own:

    server = ApiServer(create_app(...), host="0.0.0.0", port=8080)
    await server.start()      # listening when this returns; OSError if the port is taken
    ...
    await server.stop()       # ends the live streams first, then uvicorn

uvicorn's own `serve()` would take over SIGINT/SIGTERM and exit the process if it could
not bind; here the service keeps its signals, and a taken port is an ordinary OSError.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from ingest.api.events import EventHub

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5

# The console's event stream carries its token in the query (EventSource cannot set a
# header), and an ack link is a credential in the path: neither belongs in a log.
_SECRETS_IN_PATH = re.compile(r"(token=)[^&\s]+|(/ack/)[^/?\s]+")


class _RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRETS_IN_PATH.sub(_redacted, arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def _redacted(match: re.Match[str]) -> str:
    return f"{match.group(1) or match.group(2)}***"


_redact = _RedactTokens()


class _EmbeddedServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The host service owns the process's signals and calls ApiServer.stop().
        yield


class ApiServer:
    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 8080, access_log: bool = True
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        config = uvicorn.Config(
            app,
            lifespan="off",  # nothing to start; and a failed lifespan would exit the process
            access_log=access_log,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            log_config=None,  # the service's logging, not uvicorn's
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        logging.getLogger("uvicorn.access").addFilter(_redact)

    @property
    def port(self) -> int:
        """The port listened on (the one chosen, when asked for port 0)."""
        if self._socket is None:
            raise RuntimeError("the API server is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._socket = _listen(self.host, self.requested_port)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # its exception, if it has one
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        log.info("alarm API and console on %s", self.url)

    async def stop(self) -> None:
        hub = getattr(self.app.state, "hub", None)
        if isinstance(hub, EventHub):
            hub.close()
        self._server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _listen(host: str, port: int) -> socket.socket:
    """What socket.create_server makes, but saying it is TCP: asyncio turns Nagle off
    (TCP_NODELAY) only on connections whose socket says IPPROTO_TCP, and create_server's
    says 0. With Nagle on, every response after a connection's first waited ~40 ms for
    the client's delayed ACK between its headers and its body."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock
