"""Writes line protocol through the InfluxDB v2 API (`/api/v2/write`) with influxdb-client.

For InfluxDB 2.x and 3.x without a DBRP mapping, and for servers that speak only the v2
write API. The client's synchronous write API sends one request per call; chunking,
retries, 413 splitting and bisection of bad lines are ours (`_ChunkedWriter`), the same
as for v1. Not the client's batching mode: once its retry budget is spent it logs and
drops the batch, and the ingest must know whether data landed before it acks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Unpack, cast

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from ingest.influx import Chunking, Reply, _ChunkedWriter, server_words

# The generated WritePrecision is a namespace of strings, annotated as if an instance.
_MS = cast(WritePrecision, WritePrecision.MS)


class InfluxV2Writer(_ChunkedWriter):
    # urllib3 raises these itself once the client's own retries are off.
    _transport_errors = (urllib3.exceptions.HTTPError, OSError)

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str,
        timeout_s: float = 10,
        **chunking: Unpack[Chunking],
    ) -> None:
        super().__init__(**chunking)
        self.org = org
        self.bucket = bucket
        # retries=False: a retry inside the client would hide a 429/503 and its
        # Retry-After from our backoff, and a request count we report.
        self._client = InfluxDBClient(
            url=url,
            token=token,
            org=org,
            timeout=int(timeout_s * 1000),
            enable_gzip=True,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    async def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    async def _post(self, body: bytes) -> Reply:
        # The client blocks (urllib3): a thread keeps the event loop serving the receiver.
        try:
            await asyncio.to_thread(self._send, body)
        except ApiException as exc:
            if not exc.status:  # the client's code for "no HTTP answer" (e.g. TLS failed)
                raise ConnectionError(exc.reason) from exc
            return _reply(exc)
        return Reply(204)

    def _send(self, body: bytes) -> None:
        self._write_api.write(self.bucket, self.org, body, _MS)


def _reply(exc: ApiException) -> Reply:
    headers: Mapping[str, str] = exc.headers or {}
    text = server_words(exc.body or "", headers.get("X-Influxdb-Error"), exc.reason or "")
    return Reply(int(exc.status), text, headers.get("Retry-After"))
