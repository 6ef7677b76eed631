"""What the reports read: InfluxDB over InfluxQL (`/query`, epoch=ms) and SQLite files of
the ingest (the alarm book, the notifier's store), never written.

Every failure a person can fix (InfluxDB down, wrong database, no alarm book) becomes a
`ReportError` with a sentence saying what and where, not a traceback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Protocol

import httpx

from facility.closing import ClosedOnExit
from ingest.alarms.readout import AlarmBook, NotifyStore

AssetPath = tuple[str, str, str]  # site, station, asset
Samples = list[tuple[int, float]]  # (time ms, value), time ascending


class ReportError(Exception):
    """A problem the person running the report can act on; the text says which."""


@dataclass(frozen=True)
class Window:
    """A query window: [start_ms, end_ms], both ends included so a counter's reading at
    the boundary instant counts for the period it closes."""

    start_ms: int
    end_ms: int

    def where(self) -> str:
        return f"time >= {self.start_ms}ms AND time <= {self.end_ms}ms"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


class Influx(ClosedOnExit):
    """A read-only InfluxDB 1.x client for the reports' few query shapes."""

    def __init__(self, url: str, database: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def query(self, q: str) -> list[dict[str, Any]]:
        """The series of one statement's answer (empty if nothing matched)."""
        params = {"db": self.database, "q": q, "epoch": "ms"}
        try:
            response = self._http.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise ReportError(f"cannot reach InfluxDB at {self.url}: {exc}") from None
        if response.status_code in (401, 403):
            raise ReportError(f"InfluxDB at {self.url} refused the query (authentication)")
        try:
            body = response.json()
        except ValueError:
            raise ReportError(
                f"InfluxDB at {self.url} answered HTTP {response.status_code}, not JSON: "
                f"{response.text[:200]}"
            ) from None
        results = body.get("results") or [{}]
        error = body.get("error") or results[0].get("error")
        if error:
            raise ReportError(f"InfluxDB at {self.url}, database {self.database!r}: {error}")
        return list(results[0].get("series", []))

    def check(self) -> None:
        """Fail early, clearly, if the database is not there."""
        names = [v[0] for s in self.query("SHOW DATABASES") for v in s.get("values", [])]
        if self.database not in names:
            raise ReportError(
                f"InfluxDB at {self.url} has no database {self.database!r} "
                f"(it has: {', '.join(names) or 'none'})"
            )

    def per_asset(
        self,
        measurement: str,
        aggregate: str,
        window: Window,
        bucket_ms: int,
        condition: str = "",
        tz: str | None = None,
    ) -> dict[AssetPath, Samples]:
        """`aggregate` (e.g. `max("load_pct")`) per bucket and asset, empty buckets left
        out. Buckets start on multiples of bucket_ms (UTC), or of local time with `tz`.
        With two aggregates (`first(x), last(x)`) the second is placed at the bucket's
        last ms, so a counter keeps its readings' order at both ends of every bucket."""
        q = bucket_query(measurement, aggregate, window, bucket_ms, condition, tz)
        return {_asset_of(s): _samples(s, bucket_ms - 1) for s in self.query(q)}

    def raw(self, measurement: str, field: str, window: Window, asset: AssetPath) -> Samples:
        """One asset's raw readings of one field (for the small charts of incidents)."""
        site, station, name = asset
        q = (
            f"SELECT {_ident(field)} FROM {_ident(measurement)} WHERE {window.where()} "
            f'AND "site" = {_quote(site)} AND "station" = {_quote(station)} '
            f'AND "asset" = {_quote(name)}'
        )
        series = self.query(q)
        return _samples(series[0]) if series else []


def bucket_query(
    measurement: str,
    aggregate: str,
    window: Window,
    bucket_ms: int,
    condition: str = "",
    tz: str | None = None,
) -> str:
    """The InfluxQL of `Influx.per_asset`. `tz('<zone>')` aligns the buckets to the
    zone's clock: UTC-aligned hours straddle local midnight where the offset is not
    whole hours (Asia/Kolkata +5:30, Asia/Kathmandu +5:45)."""
    where = window.where() + (f" AND {condition}" if condition else "")
    zone = f" tz({_quote(tz)})" if tz else ""
    return (
        f"SELECT {aggregate} FROM {_ident(measurement)} WHERE {where} "
        f'GROUP BY time({bucket_ms}ms), "site", "station", "asset" fill(none){zone}'
    )


def _asset_of(series: dict[str, Any]) -> AssetPath:
    tags = series.get("tags") or {}
    return (str(tags.get("site", "")), str(tags.get("station", "")), str(tags.get("asset", "")))


def _samples(series: dict[str, Any], spread_ms: int = 0) -> Samples:
    out: Samples = []
    for row in series.get("values", []):
        for i, value in enumerate(row[1:]):
            if value is not None:
                out.append((int(row[0]) + i * spread_ms, float(value)))
    return out


# -- SQLite files of the ingest --------------------------------------------------------


def _snapshot(source: Path, target: Path, what: str) -> None:
    """A consistent copy through SQLite's backup API: the ingest may be writing the file,
    and the report must neither block it nor change it."""
    if not source.is_file():
        raise ReportError(f"no {what} at {source}")
    try:
        src = sqlite3.connect(f"file:{source.resolve()}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise ReportError(f"cannot read the {what} {source}: {exc}") from None


@contextmanager
def alarm_book_snapshot(path: Path) -> Iterator[AlarmBook]:
    with _opened_copy(path, "alarm book", AlarmBook) as book:
        yield book


@contextmanager
def notify_store_snapshot(path: Path | None) -> Iterator[NotifyStore | None]:
    """The notifier's store, or None when there is none (no notifier configured): the
    report then says nobody's notification is on record."""
    if path is None:
        yield None
        return
    with _opened_copy(path, "notification store", NotifyStore) as store:
        yield store


@contextmanager
def _opened_copy(path: Path, what: str, open_: Callable[[Path], _Closable]) -> Iterator[Any]:
    """A private copy of a live SQLite file, opened by its owner's class: the report
    never writes to (or locks) what the ingest is using."""
    with TemporaryDirectory(prefix="report-") as tmp:
        copy = Path(tmp) / path.name
        _snapshot(path, copy, what)
        try:
            opened = open_(copy)
        except (sqlite3.Error, RuntimeError) as exc:
            raise ReportError(f"{path} is not a {what} this software reads: {exc}") from None
        try:
            yield opened
        finally:
            opened.close()


class _Closable(Protocol):
    def close(self) -> None: ...
