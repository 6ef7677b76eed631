"""What a 200 MB POST with no token costs the alarm API, with and without the body limit.

Serves the real API (uvicorn in this process, a real alarm book and audit log in a
temporary folder) and posts 200 MB to an acknowledge endpoint over a plain socket, once
announced by Content-Length and once chunked. Prints the answer, how much was sent
before it, the time, and the growth of this process's peak RSS (VmHWM). The second run
lifts the limit to show what it prevents (what main did: the body was read whole before
the 401). Runs in about a minute.

    .venv/bin/python -m bench.bench_api_body
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import DEMO, DEMO_RULES, memory_mb, print_header
from facility.config import load_site_config
from ingest.alarms.pipeline import AlarmPipeline
from ingest.api import ApiServer, AuditLog, Role, Tokens, User, create_app
from ingest.api.app import MAX_BODY_BYTES
from tests.raw_http import raw_post

BODY = 200_000_000
BLOCK = b"x" * 1_000_000


def peak_rss_mb() -> float:
    return memory_mb(key="VmHWM")


def blocks(chunked: bool) -> Iterator[bytes]:
    framed = b"%x\r\n%s\r\n" % (len(BLOCK), BLOCK) if chunked else BLOCK
    for _ in range(BODY // len(BLOCK)):
        yield framed
    if chunked:
        yield b"0\r\n\r\n"


def post(port: int, chunked: bool) -> tuple[str, int, float]:
    length = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % BODY
    head = (
        b"POST /api/alarms/fengshou/xiba/pump_1/pump_trip/ack HTTP/1.1\r\nHost: bench\r\n"
        b"Content-Type: application/json\r\n" + length + b"\r\n\r\n"
    )
    started = time.perf_counter()
    answer, sent = raw_post(port, head, blocks(chunked), timeout_s=120)
    return answer.split(b"\r\n", 1)[0].decode(), sent, time.perf_counter() - started


async def run(limit: int | None, folder: Path) -> None:
    site = load_site_config(DEMO)
    pipeline = AlarmPipeline.open(DEMO_RULES, site, folder / "book.db", None)
    audit = AuditLog(folder / "audit.db")
    tokens = Tokens.of({"bench-token-0123456789": User("bench", Role.CREW)})
    app = create_app(pipeline.book, pipeline, tokens, audit, max_body_bytes=limit or MAX_BODY_BYTES)
    server = ApiServer(app, port=0)
    await server.start()
    try:
        for chunked in (False, True):
            before = peak_rss_mb()
            answer, sent, took = await asyncio.to_thread(post, server.port, chunked)
            growth = peak_rss_mb() - before
            how = "chunked" if chunked else "Content-Length"
            print(
                f"  {how:>14}: {answer!r} after {sent / 1e6:.1f} MB sent, {took:.2f} s, "
                f"peak RSS +{growth:.0f} MB"
            )
    finally:
        await server.stop()
        audit.close()
        pipeline.close()


def main() -> None:
    print_header()
    print(f"peak RSS at start: {peak_rss_mb():.0f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        print("with the 64 kB body limit (the default):")
        asyncio.run(run(None, Path(tmp) / "limited"))
        print("without it (limit lifted to 1 GB: what main did):")
        asyncio.run(run(1 << 30, Path(tmp) / "unlimited"))


if __name__ == "__main__":
    main()
