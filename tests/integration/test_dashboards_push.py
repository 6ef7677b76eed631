"""`facility dashboards push` against a recorded Grafana HTTP API contract: a local
HTTP server on a real socket replays the request/response pairs in
tests/dashboards/grafana_api.json (folder lookup, folder creation, POST
/api/dashboards/db). Grafana itself cannot run here; the pairs follow Grafana's HTTP API
reference, and the server keeps the state that decides which pair answers (folder made
or not, a dashboard's version per uid)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from dashboards.commands import dashboards_app
from tests.conftest import DEMO_SITE

CONTRACT = json.loads((Path(__file__).parents[1] / "dashboards" / "grafana_api.json").read_text())


class Grafana(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.folder = False
        self.versions: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict[str, Any], str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Grafana

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        size = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(size)) if size else {}
        grafana = self.server
        grafana.requests.append((self.command, self.path, body, self.headers["Authorization"]))
        state = "folder" if grafana.folder else "no folder"
        for ex in CONTRACT["exchanges"]:
            if (ex["method"], ex["path"]) == (self.command, self.path) and ex["when"] in (
                state,
                "any",
            ):
                if not _carries(body, ex.get("request", {})):
                    self._send(400, {"message": f"body does not match the contract: {body}"})
                    return
                self._send(ex["status"], self._fill(ex, body))
                return
        self._send(404, {"message": "not in the recorded contract"})

    def _fill(self, ex: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        grafana = self.server
        if ex["name"] == "create folder":
            grafana.folder = True
        if ex["name"] != "save dashboard":
            return dict(ex["body"])
        uid = body["dashboard"]["uid"]
        grafana.versions[uid] = grafana.versions.get(uid, 0) + 1
        text = json.dumps(ex["body"]).replace("{uid}", uid)
        answer: dict[str, Any] = json.loads(text.replace('"{version}"', str(grafana.versions[uid])))
        return answer

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _carries(body: Any, wanted: Any) -> bool:
    """The body has every field of the recorded request with that value; `{uid}`
    stands for a board's uid (`facility-…`)."""
    if isinstance(wanted, dict):
        return isinstance(body, dict) and all(
            k in body and _carries(body[k], v) for k, v in wanted.items()
        )
    if wanted == "{uid}":
        return isinstance(body, str) and body.startswith("facility-")
    return bool(body == wanted and type(body) is type(wanted))


@pytest.fixture
def grafana() -> Iterator[Grafana]:
    server = Grafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def push(grafana: Grafana) -> str:
    args = ["push", str(DEMO_SITE), "--url", grafana.url, "--token", "glsa_test"]
    result = CliRunner().invoke(dashboards_app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_push_creates_the_folder_once_and_overwrites_by_uid(grafana: Grafana) -> None:
    push(grafana)
    first = [(m, p) for m, p, _, _ in grafana.requests]
    assert first[:3] == [
        ("GET", "/api/datasources/uid/facility-influxdb"),
        ("GET", "/api/folders/facility"),
        ("POST", "/api/folders"),
    ]
    assert first[3:] == [("POST", "/api/dashboards/db")] * 6
    assert grafana.requests[2][2] == {"title": "Facility", "uid": "facility"}
    grafana.requests.clear()
    output = push(grafana)
    again = [(m, p) for m, p, _, _ in grafana.requests]
    assert again[:2] == [
        ("GET", "/api/datasources/uid/facility-influxdb"),
        ("GET", "/api/folders/facility"),
    ]
    assert again[2:] == [("POST", "/api/dashboards/db")] * 6
    assert "pushed facility-fleet version 2" in output
    saved = []
    for _, _, body, auth in grafana.requests[2:]:
        assert auth == "Bearer glsa_test"
        assert body["overwrite"] is True and body["folderUid"] == "facility"
        assert body["dashboard"]["id"] is None and body["dashboard"]["uid"].startswith("facility-")
        assert body["dashboard"]["panels"] and body["dashboard"]["title"]
        saved.append(body["dashboard"]["uid"])
    assert len(set(saved)) == 6
    assert set(grafana.versions) == {
        "facility-fleet", "facility-reservoir", "facility-station",
        "facility-parking", "facility-gateways", "facility-alarms",
    }  # fmt: skip


def push_with_first_answer(grafana: Grafana, exchange: dict[str, Any], token: str) -> Result:
    """`dashboards push` with `exchange` put first in the recorded contract for this call."""
    CONTRACT["exchanges"].insert(0, exchange)
    try:
        args = ["push", str(DEMO_SITE), "--url", grafana.url, "--token", token]
        return CliRunner().invoke(dashboards_app, args)
    finally:
        CONTRACT["exchanges"].remove(exchange)


def test_push_reports_a_refused_token(grafana: Grafana) -> None:
    grafana.folder = True
    refused: dict[str, Any] = {"name": "bad token", "method": "GET"}
    refused |= {"path": "/api/folders/facility"}
    refused |= {"when": "folder", "status": 401, "body": {"message": "invalid API key"}}
    result = push_with_first_answer(grafana, refused, "wrong")
    assert result.exit_code == 1
    assert "Grafana at" in result.output and "Unauthorized" in result.output


def test_push_refuses_a_grafana_without_the_data_source(grafana: Grafana) -> None:
    missing: dict[str, Any] = {"name": "no data source", "method": "GET"}
    missing |= {"path": "/api/datasources/uid/facility-influxdb", "when": "any"}
    missing |= {"status": 404, "body": {"message": "Data source not found"}}
    result = push_with_first_answer(grafana, missing, "glsa_test")
    assert result.exit_code == 1
    assert "facility-influxdb" in result.output.replace("\n", "")
    assert [(m, p) for m, p, _, _ in grafana.requests] == [
        ("GET", "/api/datasources/uid/facility-influxdb")
    ]  # nothing pushed
