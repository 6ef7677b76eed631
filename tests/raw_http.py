"""An HTTP request over a plain socket, for what an HTTP client library would not do:
keep sending a body the server has already answered (tests of the alarm API's body
limit, bench/bench_api_body.py)."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterable


def raw_post(
    port: int,
    head: bytes,
    body_chunks: Iterable[bytes],
    budget: int | None = None,
    timeout_s: float = 10.0,
) -> tuple[bytes, int]:
    """Send a request over a plain socket until the server answers (or `budget` bytes of
    body are out): the answer's first bytes and how much body was sent before it."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            if select.select([sock], [], [], 0)[0] or (budget is not None and sent >= budget):
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(timeout_s)
        answer = sock.recv(65536)
    return answer, sent
