"""Writes line protocol to InfluxDB through the v1 HTTP API (`/write`, `/query`).

The v1 API is the one every InfluxDB speaks: 1.x natively, 2.x and 3.x through their
v1 compatibility endpoints (DBRP mapping); `influx_v2.py` writes through `/api/v2/write`
with the same chunking and retries (`_ChunkedWriter`). The ingest acks a gateway's batch
only after write() returned, so every failure mode here ends in one of two places:

- the lines are stored, or refused with InfluxDB's reason (WriteResult.rejected, for the
  dead-letter store): the batch can be acked. A bad line is refused alone (bisection); a
  4xx about the request itself (e.g. 404 database not found) refuses its whole chunk;
- an exception (InfluxUnavailable, InfluxAuthError): nothing may be acked, the gateways
  keep the batch and send it again. Writing a line twice is harmless, it lands on the
  same point (same series, same timestamp).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self, TypedDict, Unpack

import httpx


class InfluxError(Exception):
    """A write that did not finish; the caller must not ack the data."""


class InfluxUnavailable(InfluxError):
    """InfluxDB did not answer, or answered 5xx/429, through every retry."""


class InfluxAuthError(InfluxError):
    """401/403: wrong or missing credentials, or no write permission on the database."""


class InfluxRequestError(InfluxError):
    """A query InfluxDB refused (4xx, or an error in the answer). Writes never raise it:
    a refused write ends in WriteResult.rejected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"InfluxDB answered {status}: {message}")
        self.status = status


@dataclass
class WriteResult:
    written: int = 0  # lines InfluxDB accepted
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (line, InfluxDB's reason)
    requests: int = 0  # HTTP requests made, retries included


@dataclass(frozen=True)
class Reply:
    """What a transport makes of one write request's answer."""

    status: int
    text: str = ""  # the server's own words when status >= 300
    retry_after: str | None = None  # the Retry-After header, as sent


# Answers that say "this data cannot be stored", line by line: bisect to find the lines.
_LINE_ERRORS = frozenset((400, 413, 422))
_AUTH_ERRORS = frozenset((401, 403))


class Chunking(TypedDict, total=False):
    """How a writer cuts and retries, the same for every API (defaults in _ChunkedWriter)."""

    max_lines: int
    max_retries: int
    backoff_cap_s: float
    backoff_base_s: float


class _ChunkedWriter(ABC):
    """Chunking, retries with backoff, 413 splitting, bisection of bad lines: the part of
    writing that does not depend on the API. A subclass sends one body (`_post`) and names
    the exceptions its transport raises when the server could not be reached."""

    # Raised by _post when no answer came (refused, reset, timed out): retried.
    _transport_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(
        self,
        max_lines: int = 5000,
        max_retries: int = 5,
        backoff_cap_s: float = 10,
        backoff_base_s: float = 0.5,
    ) -> None:
        if max_lines < 1 or max_retries < 0:
            raise ValueError("max_lines must be >= 1 and max_retries >= 0")
        self.max_lines = max_lines
        self.max_retries = max_retries
        self.backoff_cap_s = backoff_cap_s
        self.backoff_base_s = backoff_base_s

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @abstractmethod
    async def close(self) -> None:
        """Release the connections."""

    @abstractmethod
    async def _post(self, body: bytes) -> Reply:
        """Send one body of lines (uncompressed; the transport compresses)."""

    async def write(self, lines: Sequence[str]) -> WriteResult:
        """Write lines (no trailing newlines) in chunks of at most max_lines. Returns what
        landed and what InfluxDB refused; raises InfluxError when the outcome is unknown
        or the fault is not in the lines (then some chunks may have landed already)."""
        result = WriteResult()
        for start in range(0, len(lines), self.max_lines):
            await self._write_chunk(lines[start : start + self.max_lines], result)
        return result

    async def _write_chunk(self, lines: Sequence[str], result: WriteResult) -> None:
        reply = await self._post_retrying("\n".join(lines).encode(), result)
        status = reply.status
        if status < 300:
            result.written += len(lines)
        elif status in _AUTH_ERRORS:
            raise InfluxAuthError(f"InfluxDB answered {status}: {reply.text}")
        elif status not in _LINE_ERRORS or len(lines) == 1:
            # Not about one line (e.g. 404 database not found): bisecting would only
            # repeat the answer, so the whole chunk goes to the dead letters with it.
            result.rejected += [(line, f"{status}: {reply.text}") for line in lines]
        else:
            # 413: too big, halves may pass. 400: some line is bad, and 1.x may have kept
            # none of the chunk (an in-batch type conflict drops it all): bisect until the
            # bad lines stand alone, so the good ones still land.
            half = len(lines) // 2
            await self._write_chunk(lines[:half], result)
            await self._write_chunk(lines[half:], result)

    async def _post_retrying(self, body: bytes, result: WriteResult) -> Reply:
        reason = ""
        for attempt in range(self.max_retries + 1):
            retry_after: str | None = None
            try:
                result.requests += 1
                reply = await self._post(body)
            except self._transport_errors as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if reply.status != 429 and reply.status < 500:
                    return reply
                reason = f"HTTP {reply.status}: {reply.text}"
                retry_after = reply.retry_after
            if attempt < self.max_retries:
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise InfluxUnavailable(f"no write after {self.max_retries + 1} attempts: {reason}")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff with jitter (ingest instances restarting together do not
        retry in step), raised to the server's Retry-After, never above the cap."""
        backoff = min(self.backoff_cap_s, self.backoff_base_s * 2.0**attempt)
        backoff *= random.uniform(0.5, 1.0)
        return min(self.backoff_cap_s, max(backoff, _seconds(retry_after)))


class InfluxV1Writer(_ChunkedWriter):
    _transport_errors = (httpx.TransportError,)

    def __init__(
        self,
        url: str,
        database: str,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10,
        **chunking: Unpack[Chunking],
    ) -> None:
        super().__init__(**chunking)
        self.database = database
        self._params = {"db": database, "precision": "ms"}
        if retention_policy:
            self._params["rp"] = retention_policy
        # Basic auth rather than u/p in the query string: URLs end up in logs.
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._client = httpx.AsyncClient(base_url=url, auth=auth, timeout=timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    async def _post(self, body: bytes) -> Reply:
        # Line protocol compresses ~10x; level 1 gets most of that for little CPU.
        response = await self._client.post(
            "/write",
            params=self._params,
            content=gzip.compress(body, compresslevel=1),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
        )
        if response.status_code < 300:
            return Reply(response.status_code)
        return Reply(
            response.status_code, _error_text(response), response.headers.get("Retry-After")
        )

    async def create_database(self, name: str) -> None:
        # CREATE must be a POST in 1.x; it is a no-op when the database exists.
        await self._query(f"CREATE DATABASE {quote_ident(name)}", method="POST", db=None)

    async def query(self, q: str, epoch: str = "ms") -> dict[str, Any]:
        """Run InfluxQL on the database (GET /query), timestamps as epoch `epoch`."""
        return await self._query(q, method="GET", db=self.database, epoch=epoch)

    async def statement(self, q: str) -> dict[str, Any]:
        """Run InfluxQL that changes something (CREATE, ALTER, DROP, SELECT INTO) on the
        database: 1.x refuses those sent as GET."""
        return await self._query(q, method="POST", db=self.database)

    async def _query(
        self, q: str, method: str, db: str | None, epoch: str = "ms"
    ) -> dict[str, Any]:
        params = {"q": q, "epoch": epoch} | ({"db": db} if db else {})
        response = await self._client.request(method, "/query", params=params)
        if response.status_code in _AUTH_ERRORS:
            raise InfluxAuthError(
                f"InfluxDB answered {response.status_code}: {_error_text(response)}"
            )
        if response.status_code >= 300:
            raise InfluxRequestError(response.status_code, _error_text(response))
        answer: dict[str, Any] = response.json()
        errors = [r["error"] for r in answer.get("results", []) if "error" in r]
        if errors:
            raise InfluxRequestError(response.status_code, "; ".join(errors))
        return answer


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes (any name, even with quotes in it)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _seconds(retry_after: str | None) -> float:
    # Retry-After in seconds; the HTTP-date form is not worth a parser here (no InfluxDB
    # sends it), and an unreadable value just leaves the backoff as it is.
    try:
        return max(0.0, float(retry_after)) if retry_after else 0.0
    except ValueError:
        return 0.0


def server_words(body: str, header: str | None, fallback: str = "") -> str:
    """The server's own words: `error` (1.x) or `message` (2.x) of a JSON body, else the
    error header, else the body as text, else the fallback (e.g. the HTTP reason)."""
    try:
        answer = json.loads(body)
    except ValueError:  # not JSON; UnicodeDecodeError is a ValueError too
        answer = None
    if isinstance(answer, dict):
        for key in ("error", "message"):
            if isinstance(answer.get(key), str):
                return str(answer[key])
    return header or body.strip() or fallback or "(no text)"


def _error_text(response: httpx.Response) -> str:
    return server_words(response.text, response.headers.get("X-Influxdb-Error"))
