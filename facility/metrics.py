"""Prometheus metrics of a daemon on an optional local port, served in its own loop.

A daemon describes what it knows as `Sample`s (plain data, read at scrape time from the
state it keeps anyway, so nothing is counted twice) and hands a function returning them
to `MetricsServer`. prometheus_client is imported only when a server starts: a gateway
without a metrics port never loads it (the gateway's memory budget, docs/gateway.md).

The endpoint is a small asyncio server in the daemon's own event loop, not
prometheus_client's threaded one: the samples read the outbox, the uplink and the
alarm book, which belong to that loop.

    server = MetricsServer(lambda: samples_of(daemon), "127.0.0.1", 9108)
    await server.start()        # listening when it returns; OSError if the port is taken
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

Kind = Literal["gauge", "counter", "histogram"]
Labels = tuple[tuple[str, str], ...]

MAX_REQUEST_BYTES = 8192  # a scrape's request line and headers; anything longer is refused
REQUEST_TIMEOUT_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Round trips of a batch (sent -> acknowledged), seconds: a LAN ingest answers in
# milliseconds, a loaded one or a cellular uplink in seconds.
ROUND_TRIP_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class Histogram:
    """Cumulative buckets of observations, as Prometheus wants them."""

    bounds: tuple[float, ...] = ROUND_TRIP_BOUNDS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1

    def buckets(self) -> list[tuple[str, float]]:
        pairs = [(_bound(b), float(n)) for b, n in zip(self.bounds, self.counts, strict=True)]
        return [*pairs, ("+Inf", float(self.count))]

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "sum": round(self.total, 6), "buckets": self.buckets()}


def _bound(value: float) -> str:
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one metric. `name` is the full Prometheus name; a counter's ends in
    `_total`. Samples of one name must carry the same label names."""

    name: str
    help: str
    value: float | Histogram
    kind: Kind = "gauge"
    labels: Labels = ()

    def as_json(self) -> dict[str, Any]:
        value = self.value.as_json() if isinstance(self.value, Histogram) else self.value
        return {"name": self.name, "labels": dict(self.labels), "value": value}


Samples = Callable[[], Sequence[Sample]]


@dataclass(frozen=True)
class SampleMaker:
    """Samples of one daemon: its name prefix and its labels, given once."""

    prefix: str
    labels: Labels

    def gauge(self, name: str, help_: str, value: float, extra: Labels = ()) -> Sample:
        return Sample(self.prefix + name, help_, value, "gauge", self.labels + extra)

    def counter(self, name: str, help_: str, value: float, extra: Labels = ()) -> Sample:
        return Sample(self.prefix + name, help_, value, "counter", self.labels + extra)


class MetricsServer:
    """GET /metrics on host:port. Constructing it does nothing; start() listens."""

    def __init__(self, samples: Samples, host: str = "127.0.0.1", port: int = 0) -> None:
        self.samples = samples
        self.host = host
        self.requested_port = port
        self.scrapes = 0
        self._server: asyncio.Server | None = None
        self._render: Callable[[], bytes] | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        self._render = _renderer(self.samples)
        self._server = await asyncio.start_server(self._serve, self.host, self.requested_port)
        log.info("metrics on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, content_type = self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, body, content_type = "400 Bad Request", b"bad request\n", "text/plain"
        except ConnectionError:
            writer.close()
            return
        header = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(header.encode() + body)
            await writer.drain()
        writer.close()

    def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        if len(head) > MAX_REQUEST_BYTES:
            return "431 Request Header Fields Too Large", b"too large\n", "text/plain"
        method, _, rest = head.split(b"\r\n", 1)[0].partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", b"GET only\n", "text/plain"
        if path != b"/metrics":
            return "404 Not Found", b"see /metrics\n", "text/plain"
        assert self._render is not None
        self.scrapes += 1
        try:
            body = self._render()
        except Exception:  # a bug in a sample must not take the daemon's loop down
            log.exception("metrics could not be rendered")
            return "500 Internal Server Error", b"see the daemon's log\n", "text/plain"
        return "200 OK", body if method == b"GET" else b"", CONTENT_TYPE


def _renderer(samples: Samples) -> Callable[[], bytes]:
    """prometheus_client, imported here: only a daemon that serves metrics pays for it."""
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )

    class Collector:
        def collect(self) -> Iterator[Metric]:
            gauges: dict[str, GaugeMetricFamily] = {}
            counters: dict[str, CounterMetricFamily] = {}
            histograms: dict[str, HistogramMetricFamily] = {}
            for s in samples():
                names, values = [k for k, _ in s.labels], [v for _, v in s.labels]
                if isinstance(s.value, Histogram):
                    histogram = histograms.get(s.name)
                    if histogram is None:
                        histogram = HistogramMetricFamily(s.name, s.help, labels=names)
                        histograms[s.name] = histogram
                    histogram.add_metric(values, s.value.buckets(), s.value.total)
                elif s.kind == "counter":
                    counter = counters.get(s.name)
                    if counter is None:
                        counter = counters[s.name] = CounterMetricFamily(
                            s.name, s.help, labels=names
                        )
                    counter.add_metric(values, float(s.value))
                else:
                    gauge = gauges.get(s.name)
                    if gauge is None:
                        gauge = gauges[s.name] = GaugeMetricFamily(s.name, s.help, labels=names)
                    gauge.add_metric(values, float(s.value))
            yield from gauges.values()
            yield from counters.values()
            yield from histograms.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type,unused-ignore]
    ProcessCollector(registry=registry)  # RSS, CPU, open files of the daemon itself
    return lambda: generate_latest(registry)


def samples_as_json(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    return [s.as_json() for s in samples]
