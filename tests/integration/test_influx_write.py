"""The InfluxDB writer against a real influxd 1.6 (private instance per test): exact values
and timestamps, floats that stay floats, refused lines with the server's reason while the
rest of the write lands, awkward names round-tripping, influxd killed mid-write, 413
splitting, wrong passwords, a missing database. What influxd 1.6 never sends (Retry-After,
403, dropped connections) is checked against a small real HTTP server that does, for the
v1 and the v2 writer alike; the v2 writer against a real server is test_influx_v2.py."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.influx import InfluxAuthError, InfluxUnavailable, InfluxV1Writer, Reply, quote_ident
from ingest.influx_v2 import InfluxV2Writer
from ingest.lineproto import FieldValue, LineProtocolError, encode_point
from wiring.services import InfluxDB

DB = "telemetry"
T0 = 1_780_264_860_000  # ms, 2026-05-31


def rows(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of every series of the first statement, as dicts with name and tags."""
    out = []
    for series in answer["results"][0].get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            out.append({"_name": series["name"], **series.get("tags", {}), **row})
    return out


def field_types(influxdb: InfluxDB, measurement: str) -> dict[str, str]:
    answer = influxdb.query(f"SHOW FIELD KEYS FROM {quote_ident(measurement)}", db=DB)
    return {k: t for k, t in answer["results"][0]["series"][0]["values"]}


async def writer_for(influxdb: InfluxDB, **options: Any) -> InfluxV1Writer:
    writer = InfluxV1Writer(influxdb.url, DB, **options)
    await writer.create_database(DB)
    return writer


async def test_values_and_millisecond_timestamps_read_back_exactly(influxdb: InfluxDB) -> None:
    fields: dict[str, FieldValue] = {
        "flow_m3h": 301.25,
        "head_m": 2.0,
        "starts": 12,
        "big": 2**62 + 1,
        "running": True,
        "fault": 'overcurrent "B" phase\nsee manual C:\\docs',
    }
    lines = [
        encode_point("pump", {"site": "fengshou", "asset": "pump_1"}, fields, T0 + 1),
        encode_point("pump", {"site": "fengshou", "asset": "pump_1"}, {"head_m": -0.5}, T0 + 2),
    ]
    async with await writer_for(influxdb) as writer:
        result = await writer.write(lines)
        assert (result.written, result.rejected) == (2, [])
        answer = await writer.query('SELECT * FROM "pump" ORDER BY time')
    first, second = rows(answer)
    assert first["time"] == T0 + 1 and second["time"] == T0 + 2
    assert {k: first[k] for k in fields} == fields
    assert isinstance(first["running"], bool) and second["head_m"] == -0.5
    assert field_types(influxdb, "pump") == {
        "big": "integer",
        "fault": "string",
        "flow_m3h": "float",
        "head_m": "float",
        "running": "boolean",
        "starts": "integer",
    }


async def test_float_stays_float_and_an_int_is_a_refused_conflict(influxdb: InfluxDB) -> None:
    tags = {"asset": "tank_1"}
    async with await writer_for(influxdb) as writer:
        assert (await writer.write([encode_point("tank", tags, {"level_m": 2.0}, T0)])).written
        # JSON shows 2.0 as 2; the stored type is what says it stayed a float
        assert field_types(influxdb, "tank") == {"level_m": "float"}
        conflict = encode_point("tank", tags, {"level_m": 3}, T0 + 2)
        good = [encode_point("tank", tags, {"level_m": 2.5 + i}, T0 + 1 + 2 * i) for i in range(3)]
        result = await writer.write([good[0], conflict, good[1], good[2]])
        answer = await writer.query('SELECT level_m FROM "tank" ORDER BY time')
    assert result.written == 3
    [(line, reason)] = result.rejected
    assert line == conflict
    assert "field type conflict" in reason and "already exists as type float" in reason
    assert [(r["time"], r["level_m"]) for r in rows(answer)] == [
        (T0, 2.0),
        (T0 + 1, 2.5),
        (T0 + 3, 3.5),
        (T0 + 5, 4.5),
    ]
    assert field_types(influxdb, "tank") == {"level_m": "float"}


async def test_in_batch_type_conflict_bisects_so_the_good_lines_land(influxdb: InfluxDB) -> None:
    # 1.6 drops the whole request on a conflict inside it ("field type conflict", no
    # "partial write"): only bisection gets the other lines in.
    lines = [encode_point("reservoir", {}, {"v": float(i)}, T0 + i) for i in range(20)]
    lines[13] = encode_point("reservoir", {}, {"v": 13}, T0 + 13)
    async with await writer_for(influxdb) as writer:
        result = await writer.write(lines)
        answer = await writer.query('SELECT count(v) FROM "reservoir"')
    assert result.written == 19 and [line for line, _ in result.rejected] == [lines[13]]
    assert rows(answer)[0]["count"] == 19


async def test_a_parse_error_is_refused_with_the_servers_words(influxdb: InfluxDB) -> None:
    async with await writer_for(influxdb) as writer:
        result = await writer.write(["pump v=1.0 1", "pump v= 2", "pump v=3.0 3"])
    assert result.written == 2
    assert result.rejected == [
        ("pump v= 2", "400: unable to parse 'pump v= 2': missing field value")
    ]


async def test_asset_name_with_quotes_commas_and_backslashes_round_trips(
    influxdb: InfluxDB,
) -> None:
    asset = 'No.1 tank, behind "school"'
    tags = {"asset": asset, "station": r"east\gate = 2", "site": "丰收 水厂"}
    line = encode_point("tank", tags, {"level_m": 1.5}, T0)
    async with await writer_for(influxdb) as writer:
        assert (await writer.write([line])).written == 1
        answer = await writer.query('SELECT * FROM "tank" GROUP BY *')
    [row] = rows(answer)
    assert {k: row[k] for k in tags} == tags and row["level_m"] == 1.5


# --- hypothesis: any name the encoder accepts reads back exactly from a real influxd

TRICKY = "ab ,=\"\\#\t'中文"
names = st.text(alphabet=TRICKY, min_size=1, max_size=6)
values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=TRICKY + "\n\\", max_size=8),
)


@dataclass
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    ts: int = 0
    line: str = field(default="", compare=False)


points = st.builds(
    Point,
    measurement=names,
    tags=st.dictionaries(names, names, max_size=2),
    fields=st.dictionaries(names, values, min_size=1, max_size=2),
).filter(lambda p: not set(p.tags) & set(p.fields))  # a tag and a field of one name clash
_databases = itertools.count()


def same(got: Any, want: FieldValue) -> bool:
    """Equal and of the same kind (JSON has 2 for the float 2.0, and True == 1 in Python)."""
    if isinstance(want, float):
        # float(): JSON writes 5.7e16 as 57181717296241270, not the float's exact integer
        return isinstance(got, int | float) and not isinstance(got, bool) and float(got) == want
    return type(got) is type(want) and got == want


def encodable(batch: list[Point]) -> list[Point]:
    kept = []
    for i, p in enumerate(batch):
        try:
            p.ts, p.line = T0 + i, encode_point(p.measurement, p.tags, p.fields, T0 + i)
        except LineProtocolError:
            continue  # a refusal is loud and documented; what is written must be exact
        kept.append(p)
    return kept


async def write_and_read(influxdb: InfluxDB, db: str, batch: list[Point]) -> list[dict[str, Any]]:
    async with InfluxV1Writer(influxdb.url, db) as writer:
        await writer.create_database(db)
        result = await writer.write([p.line for p in batch])
        assert result.rejected == [] and result.written == len(batch)
        # one query per measurement: across measurements 1.x keeps one type per field name
        found = []
        for p in batch:
            found += rows(
                await writer.query(f"SELECT * FROM {quote_ident(p.measurement)} GROUP BY *")
            )
        return found


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(points, min_size=1, max_size=3, unique_by=lambda p: p.measurement))
def test_any_accepted_name_round_trips_through_influxd(
    influxdb: InfluxDB, batch: list[Point]
) -> None:
    # one database per example, one measurement per point: nothing else to read back
    db = f"rt{next(_databases)}"
    batch = encodable(batch)
    if not batch:
        return
    got = asyncio.run(write_and_read(influxdb, db, batch))
    assert len(got) == len(batch)
    for p, row in zip(batch, sorted(got, key=lambda r: r["time"]), strict=True):
        assert (row["_name"], row["time"]) == (p.measurement, p.ts), p.line
        assert {k: v for k, v in row.items() if k in p.tags} == p.tags, p.line
        assert all(same(row[k], v) for k, v in p.fields.items()), (p.line, row)


# --- influxd going away


class KillAfterFirstChunk(InfluxV1Writer):
    """Kills influxd (SIGKILL) right after it accepted the first chunk of a write."""

    def __init__(self, influxdb: InfluxDB, **options: Any) -> None:
        super().__init__(influxdb.url, DB, **options)
        self.influxdb = influxdb

    async def _post(self, body: bytes) -> Reply:
        response = await super()._post(body)
        if self.influxdb.running:
            self.influxdb.kill()
        return response


async def test_influxd_killed_mid_write_then_restarted_loses_nothing(
    influxdb: InfluxDB,
) -> None:
    lines = [encode_point("pump", {"asset": "pump_1"}, {"v": i * 0.5}, T0 + i) for i in range(1000)]
    fast: dict[str, Any] = {
        "max_lines": 100,
        "max_retries": 3,
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
    }
    async with await writer_for(influxdb):
        pass
    async with KillAfterFirstChunk(influxdb, **fast) as writer:
        started = time.monotonic()
        with pytest.raises(InfluxUnavailable, match="after 4 attempts: ConnectError"):
            await writer.write(lines)
        assert time.monotonic() - started < 2
    influxdb.restart()
    async with InfluxV1Writer(influxdb.url, DB, **fast) as writer:
        # the chunk answered 204 before the kill is on disk (WAL), the rest is not
        assert rows(await writer.query('SELECT count(v) FROM "pump"'))[0]["count"] == 100
        # the caller did not ack, so the gateways send the whole batch again
        result = await writer.write(lines)
        assert (result.written, result.rejected) == (1000, [])
        answer = await writer.query('SELECT count(v), sum(v) FROM "pump"')
    assert rows(answer)[0]["count"] == 1000  # replayed lines land on the same points
    assert rows(answer)[0]["sum"] == sum(i * 0.5 for i in range(1000))


async def test_influxd_down_raises_unavailable_after_the_retries(influxdb: InfluxDB) -> None:
    influxdb.stop()
    async with InfluxV1Writer(
        influxdb.url, DB, max_retries=2, backoff_base_s=0.01, backoff_cap_s=0.02
    ) as writer:
        with pytest.raises(InfluxUnavailable, match="after 3 attempts"):
            await writer.write(["pump v=1.0 1"])


# --- 413


@pytest.mark.parametrize("influxdb", [{"http_options": "  max-body-size = 2000\n"}], indirect=True)
async def test_413_splits_until_every_line_fits(influxdb: InfluxDB) -> None:
    rng = random.Random(7)
    lines = [
        encode_point("transformer", {"asset": "tx_1"}, {"oil_c": rng.random() * 100}, T0 + i)
        for i in range(1000)
    ]
    huge = encode_point(
        "transformer",
        {"asset": "tx_1"},
        {"note": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8000))},
        T0 + 5000,
    )
    async with await writer_for(influxdb) as writer:
        assert len(gzip.compress("\n".join(lines).encode(), 1)) > 2000  # one request won't do
        result = await writer.write([*lines[:500], huge, *lines[500:]])
        answer = await writer.query('SELECT count(oil_c) FROM "transformer"')
    assert result.written == 1000 and result.requests > 2
    assert result.rejected == [(huge, "413: Request Entity Too Large")]
    assert rows(answer)[0]["count"] == 1000


# --- auth


@pytest.mark.parametrize("influxdb", [{"auth_enabled": True}], indirect=True)
async def test_wrong_password_is_an_auth_error(influxdb: InfluxDB) -> None:
    influxdb.query("CREATE USER admin WITH PASSWORD 'right' WITH ALL PRIVILEGES")
    async with InfluxV1Writer(influxdb.url, DB, username="admin", password="wrong") as writer:
        with pytest.raises(InfluxAuthError, match="401"):
            await writer.write(["pump v=1.0 1"])
    async with InfluxV1Writer(influxdb.url, DB) as writer:
        with pytest.raises(InfluxAuthError):
            await writer.write(["pump v=1.0 1"])
    async with InfluxV1Writer(influxdb.url, DB, username="admin", password="right") as writer:
        await writer.create_database(DB)
        assert (await writer.write(["pump v=1.0 1"])).written == 1


async def test_missing_database_refuses_each_chunk_whole_with_the_servers_words(
    influxdb: InfluxDB,
) -> None:
    lines = ["pump v=1.0 1", "pump v=2.0 2", "pump v=3.0 3"]
    async with InfluxV1Writer(influxdb.url, "nowhere", max_lines=2) as writer:
        result = await writer.write(lines)
    assert result.written == 0
    assert result.requests == 2  # one per chunk: a 404 is not about a line, no bisection
    assert result.rejected == [(line, '404: database not found: "nowhere"') for line in lines]


# --- both write APIs (v1 /write, v2 /api/v2/write) against a small real HTTP server:
# Retry-After, 401/403, a 404 for a bucket, dropped connections, which influxd 1.6 and
# VictoriaMetrics never send


Answer = tuple[int, dict[str, str], str]  # status, headers, message; status 0 hangs up


@dataclass
class Scripted:
    """An HTTP server for writes: the scripted answers in turn, then 400 for a body with
    a line holding `bad`, 413 for a body over max_body bytes, else 204. Messages go out in
    the API's own JSON form. It records each request (path, headers, gunzipped body, when
    it came) and the lines of every body it answered 204."""

    answers: list[Answer] = field(default_factory=list)
    max_body: int = 1_000_000
    requests: list[tuple[str, dict[str, str], bytes, float]] = field(default_factory=list)
    landed: list[str] = field(default_factory=list)

    def answer(self, body: bytes) -> Answer:
        if self.answers:
            return self.answers.pop(0)
        bad = [line for line in body.decode().split("\n") if "bad" in line]
        if bad:
            return 400, {}, f"unable to parse '{bad[0]}': bad line"
        if len(body) > self.max_body:
            return 413, {}, "Request Entity Too Large"
        self.landed += body.decode().split("\n")
        return 204, {}, ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                script.requests.append((self.path, dict(self.headers), body, time.monotonic()))
                status, headers, message = script.answer(body)
                if status:
                    self.reply(status, headers, message)

            def reply(self, status: int, headers: dict[str, str], message: str) -> None:
                key = "message" if self.path.startswith("/api/v2/") else "error"
                data = json.dumps({key: message}).encode() if message else b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def scripted() -> Iterator[tuple[Scripted, str]]:
    script = Scripted()
    server = ThreadingHTTPServer(("127.0.0.1", 0), script.handler())
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield script, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


Writer = InfluxV1Writer | InfluxV2Writer


@dataclass(frozen=True)
class Api:
    """One write API with the request a writer for it must send."""

    name: str
    path: str
    authorization: str

    def writer(self, url: str, **options: Any) -> Writer:
        if self.name == "v1":
            return InfluxV1Writer(
                url, "db", retention_policy="one_year", username="ingest", password="pw",
                **options,
            )  # fmt: skip
        return InfluxV2Writer(url, "acme", "telemetry", "secret", **options)


V1 = Api("v1", "/write?db=db&precision=ms&rp=one_year", "Basic aW5nZXN0OnB3")  # ingest:pw
V2 = Api("v2", "/api/v2/write?org=acme&bucket=telemetry&precision=ms", "Token secret")
both_apis = pytest.mark.parametrize("api", [V1, V2], ids=lambda a: a.name)
FAST: dict[str, Any] = {"max_retries": 2, "backoff_base_s": 0.001, "backoff_cap_s": 0.01}


@both_apis
async def test_retry_after_is_honoured_and_capped(scripted: tuple[Scripted, str], api: Api) -> None:
    script, url = scripted
    script.answers = [(503, {"Retry-After": "1"}, ""), (429, {"Retry-After": "3600"}, "slow")]
    async with api.writer(url, backoff_base_s=0.001, backoff_cap_s=1.2) as writer:
        result = await writer.write(["pump v=1.0 1", "pump v=2.0 2"])
    assert (result.written, result.requests) == (2, 3)
    times = [t for *_, t in script.requests]
    assert 0.95 < times[1] - times[0] < 1.4  # Retry-After: 1 over a 1 ms backoff
    assert 1.15 < times[2] - times[1] < 1.6  # Retry-After: 3600 held to the 1.2 s cap
    path, headers, body, _ = script.requests[-1]
    assert path == api.path
    assert headers["Authorization"] == api.authorization
    assert headers["Content-Encoding"] == "gzip"
    assert body == b"pump v=1.0 1\npump v=2.0 2"


@both_apis
async def test_5xx_every_time_raises_unavailable(scripted: tuple[Scripted, str], api: Api) -> None:
    script, url = scripted
    script.answers = [(500, {}, "engine on fire")] * 3
    async with api.writer(url, **FAST) as writer:
        with pytest.raises(InfluxUnavailable, match="after 3 attempts: HTTP 500: engine on fire"):
            await writer.write(["pump v=1.0 1"])
    assert len(script.requests) == 3


@both_apis
async def test_a_dropped_connection_is_retried(scripted: tuple[Scripted, str], api: Api) -> None:
    script, url = scripted
    script.answers = [(0, {}, ""), (0, {}, "")]
    async with api.writer(url, **FAST) as writer:
        result = await writer.write(["pump v=1.0 1"])
    assert (result.written, result.requests, script.landed) == (1, 3, ["pump v=1.0 1"])


@both_apis
@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_raise_auth_errors_without_retrying(
    scripted: tuple[Scripted, str], api: Api, status: int
) -> None:
    script, url = scripted
    script.answers = [(status, {}, "unauthorized access")]
    async with api.writer(url, **FAST) as writer:
        with pytest.raises(InfluxAuthError, match=f"{status}: unauthorized access"):
            await writer.write(["pump v=1.0 1", "pump v=2.0 2"])
    assert len(script.requests) == 1


@both_apis
async def test_another_4xx_refuses_its_chunk_whole_and_the_next_chunk_lands(
    scripted: tuple[Scripted, str], api: Api
) -> None:
    script, url = scripted
    script.answers = [(404, {}, 'bucket "telemetry" not found')]
    lines = ["pump v=1.0 1", "pump v=2.0 2", "pump v=3.0 3"]
    async with api.writer(url, max_lines=2, **FAST) as writer:
        result = await writer.write(lines)
    reason = '404: bucket "telemetry" not found'
    assert result.rejected == [(lines[0], reason), (lines[1], reason)]
    assert (result.written, result.requests, script.landed) == (1, 2, lines[2:])


@both_apis
async def test_400_bisects_until_the_bad_lines_stand_alone(
    scripted: tuple[Scripted, str], api: Api
) -> None:
    script, url = scripted
    lines = [f"pump v={i}.0 {i}" for i in range(8)]
    lines[2], lines[5] = "pump bad=2.0 2", "pump bad=5.0 5"
    async with api.writer(url, **FAST) as writer:
        result = await writer.write(lines)
    assert result.rejected == [
        (line, f"400: unable to parse '{line}': bad line") for line in (lines[2], lines[5])
    ]
    assert result.written == 6
    assert sorted(script.landed) == sorted(set(lines) - {lines[2], lines[5]})


@both_apis
async def test_413_splits_and_refuses_a_line_too_big_alone(
    scripted: tuple[Scripted, str], api: Api
) -> None:
    script, url = scripted
    script.max_body = 100
    lines = [f"tank level_m={i}.5 {T0 + i}" for i in range(12)]
    huge = f'tank note="{"x" * 120}" {T0}'
    async with api.writer(url, **FAST) as writer:
        result = await writer.write([*lines[:6], huge, *lines[6:]])
    assert result.rejected == [(huge, "413: Request Entity Too Large")]
    assert result.written == 12 and result.requests > 3
    assert sorted(script.landed) == sorted(lines)
