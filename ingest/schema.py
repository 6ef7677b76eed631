"""`facility ingest init`: the database, its retention policies and rollups (InfluxDB 1.x).

Three retention policies: `raw` (the default: what the ingest writes), `rollup_1m` and
`rollup_1h`. Two continuous queries fill the rollups with mean_/min_/max_ of every
numeric and boolean field, keeping every tag. A CQ only looks at recent windows
(RESAMPLE ... FOR), so data that arrives later than that, a backlog after a long
outage, is rolled up by `facility ingest rollup --since`, which runs the same query
over a stated range. 2.x and 3.x do this differently: see docs/ingest.md.

Running init again changes what differs and leaves the rest: it is safe to re-run.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ingest.config import Retention
from ingest.influx import quote_ident

RAW = "raw"


class InfluxQL(Protocol):
    """The part of the v1 writer that runs statements."""

    async def statement(self, q: str) -> dict[str, Any]: ...

    async def query(self, q: str, epoch: str = "ms") -> dict[str, Any]: ...


@dataclass(frozen=True)
class Rollup:
    name: str  # also the name of its retention policy and continuous query
    interval: str
    resample_for: str  # how far back each run recomputes, for data that arrived late
    days_attr: str

    def select_into(self, database: str, where: str = "", measurement: str = "") -> str:
        """Every raw measurement rolled up into its namesake, or the one named."""
        db = quote_ident(database)
        source = quote_ident(measurement) if measurement else "/.*/"
        return (
            f"SELECT mean(*), min(*), max(*) INTO {db}.{quote_ident(self.name)}.:MEASUREMENT "
            f"FROM {db}.{quote_ident(RAW)}.{source}{where} GROUP BY time({self.interval}), *"
        )

    def continuous_query(self, database: str) -> str:
        return (
            f"CREATE CONTINUOUS QUERY {quote_ident(self.name)} ON {quote_ident(database)} "
            f"RESAMPLE EVERY {self.interval} FOR {self.resample_for} "
            f"BEGIN {self.select_into(database)} END"
        )


ROLLUPS = (
    Rollup("rollup_1m", "1m", "10m", "rollup_1m_days"),
    Rollup("rollup_1h", "1h", "2h", "rollup_1h_days"),
)


def duration(days: int) -> str:
    return f"{days}d" if days else "INF"


async def init_database(db: InfluxQL, database: str, retention: Retention) -> list[str]:
    """Create or update everything; returns the statements that changed something."""
    done = [f"CREATE DATABASE {quote_ident(database)}"]
    await db.statement(done[0])
    policies = await _policies(db, database)
    wanted = [(RAW, retention.raw_days, True)] + [
        (r.name, int(getattr(retention, r.days_attr)), False) for r in ROLLUPS
    ]
    for name, days, default in wanted:
        statement = _policy_statement(database, name, days, default, policies.get(name))
        if statement:
            await db.statement(statement)
            done.append(statement)
    queries = await _continuous_queries(db, database)
    for rollup in ROLLUPS:
        done += await _ensure_cq(db, database, rollup, queries.get(rollup.name))
    return done


def _policy_statement(
    database: str, name: str, days: int, default: bool, existing: tuple[str, bool] | None
) -> str:
    options = f"DURATION {duration(days)} REPLICATION 1" + (" DEFAULT" if default else "")
    where = f"{quote_ident(name)} ON {quote_ident(database)}"
    if existing is None:
        return f"CREATE RETENTION POLICY {where} {options}"
    if existing != (_influx_duration(days), default):
        return f"ALTER RETENTION POLICY {where} {options}"
    return ""


async def _ensure_cq(
    db: InfluxQL, database: str, rollup: Rollup, existing: str | None
) -> list[str]:
    wanted = rollup.continuous_query(database)
    if existing is not None and _same_query(existing, wanted):
        return []
    done = []
    if existing is not None:
        done.append(f"DROP CONTINUOUS QUERY {quote_ident(rollup.name)} ON {quote_ident(database)}")
        await db.statement(done[-1])
    await db.statement(wanted)
    return [*done, wanted]


def _same_query(shown: str, wanted: str) -> bool:
    # InfluxDB shows identifiers unquoted where it can: compare without quotes.
    return shown.replace('"', "") == wanted.replace('"', "")


ROLLUP_CHUNK_MS = 3_600_000


async def rollup_range(
    db: InfluxQL,
    database: str,
    since_ms: int,
    until_ms: int,
    chunk_ms: int = ROLLUP_CHUNK_MS,
    measurements: Sequence[str] = (),
) -> int:
    """Recompute both rollups over [since, until): for a backlog older than the CQs look.
    An hour at a time (`chunk_ms`, whole hours), aligned to it: one `SELECT … INTO` over
    days of every field outlasts any sensible HTTP timeout. Larger chunks give the same
    rows for less of InfluxDB's CPU (a simulated day: 6 h chunks 43 s, 1 h chunks 60 s)
    and need a longer timeout. `measurements` given: a statement per measurement, the
    same rows for half of InfluxDB's CPU (the simulated day's 6 h chunks: 44 s -> 22 s;
    `FROM /.*/` merges every measurement's series in one cursor)."""
    written = 0
    start = since_ms - since_ms % chunk_ms
    sources = list(measurements) or [""]
    for chunk in range(start, until_ms, chunk_ms):
        lo, hi = max(chunk, since_ms), min(chunk + chunk_ms, until_ms)
        where = f" WHERE time >= {lo}ms AND time < {hi}ms"
        for rollup, source in itertools.product(ROLLUPS, sources):
            answer = await db.statement(rollup.select_into(database, where, source))
            for result in answer.get("results", []):
                for series in result.get("series", []):
                    written += int(series["values"][0][1])
    return written


async def measurements(db: InfluxQL, database: str) -> list[str]:
    answer = await db.query(f"SHOW MEASUREMENTS ON {quote_ident(database)}")
    return [v[0] for s in answer["results"][0].get("series", []) for v in s["values"]]


async def _policies(db: InfluxQL, database: str) -> dict[str, tuple[str, bool]]:
    answer = await db.query(f"SHOW RETENTION POLICIES ON {quote_ident(database)}")
    out: dict[str, tuple[str, bool]] = {}
    for series in answer["results"][0].get("series", []):
        for name, dur, _shard, _replicas, default in series["values"]:
            out[name] = (dur, bool(default))
    return out


async def _continuous_queries(db: InfluxQL, database: str) -> dict[str, str]:
    answer = await db.query("SHOW CONTINUOUS QUERIES")
    for series in answer["results"][0].get("series", []):
        if series["name"] == database:
            return {name: text for name, text in series.get("values", [])}
    return {}


def _influx_duration(days: int) -> str:
    """How SHOW RETENTION POLICIES prints a duration: 90d -> '2160h0m0s', INF -> '0s'."""
    return f"{days * 24}h0m0s" if days else "0s"
