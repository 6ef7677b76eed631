"""The v2 writer (/api/v2/write through influxdb-client) against a real VictoriaMetrics
(private instance per test): exact values and millisecond timestamps, awkward names,
chunking, the server stopped or killed mid-write, a wrong token, a 4xx about the request.
The answers VictoriaMetrics never gives (Retry-After, 403, 404, 413, a bad line's 400)
are checked for both writers in test_influx_write.py against a small real HTTP server.

VictoriaMetrics stores `{measurement}_{field}` as the metric name, tags as labels and
every value as a float64; the fixture runs it with 1 ms deduplication, so a point
written twice is one sample, as in InfluxDB."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ingest.influx import InfluxAuthError, InfluxUnavailable, Reply
from ingest.influx_v2 import InfluxV2Writer
from ingest.lineproto import FieldValue, encode_point
from wiring.services import VictoriaMetrics

T0 = 1_780_264_860_000  # ms, 2026-05-31
FAST: dict[str, Any] = {"max_retries": 2, "backoff_base_s": 0.01, "backoff_cap_s": 0.02}


def writer_for(server: VictoriaMetrics, **options: Any) -> InfluxV2Writer:
    return InfluxV2Writer(server.url, "acme", "telemetry", "secret", **options)


def samples(server: VictoriaMetrics, match: str = '{__name__!=""}') -> dict[str, list[Any]]:
    """{metric name: [(timestamp, value), ...]} of every series matching, labels left out."""
    out: dict[str, list[Any]] = {}
    for series in server.export(match):
        pairs = zip(series["timestamps"], series["values"], strict=True)
        out.setdefault(series["metric"]["__name__"], []).extend(sorted(pairs))
    return out


async def test_values_and_millisecond_timestamps_read_back_exactly(
    victoria_metrics: VictoriaMetrics,
) -> None:
    fields: dict[str, FieldValue] = {
        "flow_m3h": 301.25,
        "head_m": 2.0,
        "tiny": 1e-300,
        "starts": 12,
        "big": 2**53,  # float64 holds integers exactly up to here
        "running": True,
        "fault": False,
    }
    tags = {"site": "fengshou", "asset": "pump_1"}
    lines = [
        encode_point("pump", tags, fields, T0 + 1),
        encode_point("pump", tags, {"head_m": -0.5}, T0 + 2),
    ]
    async with writer_for(victoria_metrics) as writer:
        result = await writer.write(lines)
    assert (result.written, result.rejected, result.requests) == (2, [], 1)
    got = samples(victoria_metrics)
    assert got.pop("pump_head_m") == [(T0 + 1, 2.0), (T0 + 2, -0.5)]
    want = {f"pump_{k}": [(T0 + 1, float(v))] for k, v in fields.items() if k != "head_m"}
    assert got == want
    [series] = victoria_metrics.export('{__name__="pump_flow_m3h"}')
    assert series["metric"] == {"__name__": "pump_flow_m3h", **tags}


async def test_names_with_quotes_commas_spaces_and_backslashes_round_trip(
    victoria_metrics: VictoriaMetrics,
) -> None:
    tags = {"asset": 'No.1 tank, behind "school"', "station": r"east\gate = 2", "site": "丰收 水厂"}
    line = encode_point("supply tank", tags, {"level m": 1.5}, T0)
    async with writer_for(victoria_metrics) as writer:
        assert (await writer.write([line])).written == 1
    [series] = victoria_metrics.export()
    assert series["metric"] == {"__name__": "supply tank_level m", **tags}
    assert (series["timestamps"], series["values"]) == ([T0], [1.5])


async def test_a_batch_over_max_lines_goes_in_chunks(victoria_metrics: VictoriaMetrics) -> None:
    lines = [encode_point("tank", {"asset": "tank_1"}, {"v": i / 4}, T0 + i) for i in range(2501)]
    async with writer_for(victoria_metrics, max_lines=1000) as writer:
        result = await writer.write(lines)
    assert (result.written, result.rejected, result.requests) == (2501, [], 3)
    assert samples(victoria_metrics) == {"tank_v": [(T0 + i, i / 4) for i in range(2501)]}


async def test_server_stopped_raises_unavailable_then_a_restart_takes_the_write(
    victoria_metrics: VictoriaMetrics,
) -> None:
    line = encode_point("reservoir", {}, {"level_m": 4.25}, T0)
    victoria_metrics.stop()
    async with writer_for(victoria_metrics, **FAST) as writer:
        started = time.monotonic()
        with pytest.raises(InfluxUnavailable, match="after 3 attempts: NewConnectionError"):
            await writer.write([line])
        assert time.monotonic() - started < 2
        victoria_metrics.start()
        result = await writer.write([line])  # the same client: its pool reconnects
    assert (result.written, result.requests) == (1, 1)
    assert samples(victoria_metrics) == {"reservoir_level_m": [(T0, 4.25)]}


class KillAfterFirstChunk(InfluxV2Writer):
    """Kills VictoriaMetrics (SIGKILL) right after it accepted the first chunk of a write."""

    def __init__(self, server: VictoriaMetrics, **options: Any) -> None:
        super().__init__(server.url, "acme", "telemetry", "secret", **options)
        self.server = server

    async def _post(self, body: bytes) -> Reply:
        reply = await super()._post(body)
        if self.server.running:
            self.server.kill()
        return reply


async def test_killed_mid_write_then_the_batch_resent_lands_once(
    victoria_metrics: VictoriaMetrics,
) -> None:
    # How much of the first chunk survives the kill is not asserted: VictoriaMetrics
    # answers 204 before its in-memory buffer reaches disk (about a second later).
    lines = [encode_point("pump", {"asset": "pump_1"}, {"v": i * 0.5}, T0 + i) for i in range(1000)]
    async with KillAfterFirstChunk(victoria_metrics, max_lines=100, **FAST) as writer:
        with pytest.raises(InfluxUnavailable, match="after 3 attempts"):
            await writer.write(lines)
    victoria_metrics.start()
    async with writer_for(victoria_metrics, max_lines=100) as writer:
        result = await writer.write(lines)
    assert (result.written, result.rejected, result.requests) == (1000, [], 10)
    assert samples(victoria_metrics) == {"pump_v": [(T0 + i, i * 0.5) for i in range(1000)]}


@pytest.mark.parametrize(
    "victoria_metrics", [{"username": "ingest", "password": "pw"}], indirect=True
)
async def test_a_token_the_server_refuses_is_an_auth_error(
    victoria_metrics: VictoriaMetrics,
) -> None:
    async with writer_for(victoria_metrics, **FAST) as writer:
        with pytest.raises(InfluxAuthError, match="InfluxDB answered 401: Unauthorized"):
            await writer.write(["pump v=1.0 1"])
    assert samples(victoria_metrics) == {}


async def test_a_wrong_url_refuses_every_line_with_the_servers_words(
    victoria_metrics: VictoriaMetrics,
) -> None:
    # VictoriaMetrics answers an unknown path with 400, which reads as "a bad line": the
    # writer bisects down to single lines, each refused with the server's message.
    lines = ["pump v=1.0 1", "pump v=2.0 2", "pump v=3.0 3"]
    writer = InfluxV2Writer(f"{victoria_metrics.url}/nowhere", "acme", "telemetry", "t", **FAST)
    async with writer:
        result = await writer.write(lines)
    assert [line for line, _ in result.rejected] == lines and result.written == 0
    assert all(
        reason.startswith("400: ")
        and 'unsupported path requested: "/nowhere/api/v2/write"' in reason
        for _, reason in result.rejected
    )
    assert result.requests == 5  # 3 lines bisected: 1 + 2 + 2
