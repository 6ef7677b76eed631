"""The alarm API against its own OpenAPI document, over real HTTP.

Schemathesis reads /openapi.json and makes requests to every operation from it, valid
ones and ones that break the document (wrong types, unknown enum values, junk
parameters, bodies that are not JSON). Each goes to the real server (the stack of
test_alarm_api.py, with one alarm of each priority) with a role's token, none or a
broken one, and half of them name an alarm, asset or user that exists, so the actions
reach the book and not only its 404. Every answer must be no 5xx, a status code the
document declares for the operation, and, for JSON, match the schema declared for it.

Alongside, bodies schemathesis never makes because they are not JSON, though Python's
parser reads them (NaN, Infinity, a lone surrogate "\\ud800"), and bytes that are not
UTF-8 under other media types: each of them once answered 500.

Requests go through httpx: schemathesis's own transport needs requests over urllib3, and
grafana-client's niquests installs urllib3-future in urllib3's place.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from facility.config import SiteConfig
from ingest.alarms.model import AlarmKey
from ingest.api import Role
from tests.integration.test_alarm_api import NAMES, Stack, auth, running_stack

pytestmark = pytest.mark.timeout(120)

EXAMPLES = 15  # cases per operation and generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ALARM = "/api/alarms/{site}/{station}/{asset}/{rule}"
ASSET = "/api/assets/{site}/{station}/{asset}"
BODY_ACTIONS = [
    f"{ALARM}/ack",
    f"{ALARM}/reset",
    f"{ALARM}/shelve",
    f"{ALARM}/unshelve",
    f"{ASSET}/out-of-service",
    f"{ASSET}/in-service",
    "/api/users/{name}/revoke",
    "/api/users/{name}/restore",
]


@dataclass(repr=False)  # hypothesis prints its arguments: keep the stack out
class Api:
    """The running stack; requests run its event loop until they are answered."""

    runner: asyncio.Runner
    stack: Stack
    client: httpx.AsyncClient
    keys: list[AlarmKey]
    document: dict[str, Any]

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.runner.run(self.client.request(method, url, **kwargs))

    def documented(self, path: str, method: str = "post") -> set[int]:
        return {int(code) for code in self.document["paths"][path][method]["responses"]}

    def restore_everyone(self) -> None:
        """Undo the revocations a fuzzed admin made, so the next operation's roles work."""
        admin = auth(Role.ADMIN)
        for user in self.send("GET", "/api/users", headers=admin).json():
            if user["revoked"]:
                self.send("POST", f"/api/users/{user['name']}/restore", headers=admin)


@pytest.fixture(scope="module")
def api(demo_config: SiteConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz")
    rosters = {"fengshou": {"on_duty": ["li"]}}
    with asyncio.Runner() as runner:
        serving = running_stack(tmp_path, demo_config, lambda: rosters, kpis=True)
        stack = runner.run(serving.__aenter__())
        try:
            keys = runner.run(stack.all_priorities())
            client = httpx.AsyncClient(base_url=stack.url, timeout=10)
            document = runner.run(client.get("/openapi.json")).json()
            yield Api(runner, stack, client, keys, document)
            runner.run(client.aclose())
        finally:
            runner.run(serving.__aexit__(None, None, None))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_is_one_the_document_declares(api: Api, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_dict(api.document)
    for path, methods in api.document["paths"].items():
        if path == "/api/events":
            continue  # the live stream never ends; test_alarm_api.py reads it
        for method, spec in methods.items():
            if mode is GenerationMode.NEGATIVE and not spec.keys() & {"parameters", "requestBody"}:
                continue  # nothing to break but the token, which the positive cases vary
            fuzz(api, schema[path][method.upper()], mode)
            api.restore_everyone()


def fuzz(api: Api, operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode) -> None:
    # Each role's token, or schemathesis's own Authorization: none, or a broken one.
    signed_in = [operation.as_strategy(mode, headers=auth(role)) for role in Role]
    cases = st.one_of([*signed_in, operation.as_strategy(mode)])

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, pick=st.none() | st.integers(0, 20))
    def answers_as_documented(case: Case[Any], pick: int | None) -> None:
        if pick is not None:
            existing(case, api, pick)
        sent = case.as_transport_kwargs(base_url=api.stack.url)
        body: dict[str, Any] = {}
        if "json" in sent:
            body["json"] = sent["json"]
        elif "data" in sent:
            body["content"] = sent["data"]
        try:
            response = api.send(
                sent["method"], sent["url"], params=sent["params"], headers=sent["headers"], **body
            )
        except httpx.LocalProtocolError:
            reject()  # a header httpx will not send ("Bearer " with its trailing space)
        case.validate_response(response, checks=CHECKS)

    answers_as_documented()


def existing(case: Case[Any], api: Api, pick: int) -> None:
    """Name an alarm, asset or user that exists in the case's path."""
    params = case.path_parameters
    if params is None:
        return
    if "name" in params:
        params["name"] = list(NAMES.values())[pick % len(NAMES)]
    elif "site" in params:
        key = api.keys[pick % len(api.keys)]
        params.update(site=key.site, station=key.station, asset=key.asset)
        if "rule" in params:
            params["rule"] = key.rule


# -- what schemathesis does not send --------------------------------------------------

JSON_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "x\udfff", "\u0000", "水泵"])
)
JSON = st.recursive(
    JSON_SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["comment", "reason", "minutes"]), inner, max_size=3)
    ),
    max_leaves=8,
)
# json.dumps writes NaN and Infinity (allow_nan), and lone surrogates as \ud800 escapes.
BODY = JSON.map(lambda v: json.dumps(v, allow_nan=True).encode()) | st.binary(max_size=40)
MEDIA_TYPE = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", None]
)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(BODY_ACTIONS),
    body=BODY,
    media_type=MEDIA_TYPE,
    role=st.sampled_from(list(Role)),
    pick=st.integers(0, 20),
)
@example(f"{ALARM}/ack", b'{"comment": NaN}', "application/json", Role.ADMIN, 0)
@example(f"{ALARM}/ack", b"NaN", "application/json", Role.CREW, 0)
@example(f"{ALARM}/ack", b'{"comment": "\\ud800"}', "application/json", Role.CREW, 0)
@example(
    f"{ALARM}/shelve", b'{"reason": "x", "minutes": -Infinity}', "application/json", Role.ADMIN, 0
)
@example(
    f"{ALARM}/shelve", b'{"reason": "x", "minutes": Infinity}', "application/json", Role.ADMIN, 0
)
@example(f"{ALARM}/unshelve", b"\xff\xfe", "text/plain", Role.ADMIN, 0)
@example(f"{ASSET}/out-of-service", b"\xff", None, Role.SUPERVISOR, 0)
@example("/api/users/{name}/revoke", b'{"reason": NaN}', "application/json", Role.ADMIN, 1)
def test_bodies_json_cannot_carry_are_refused_not_500(
    api: Api, path: str, body: bytes, media_type: str | None, role: Role, pick: int
) -> None:
    key = api.keys[pick % len(api.keys)]
    name = list(NAMES.values())[pick % len(NAMES)]
    url = path.format(site=key.site, station=key.station, asset=key.asset, rule=key.rule, name=name)
    headers = auth(role) | ({"Content-Type": media_type} if media_type else {})
    response = api.send("POST", url, content=body, headers=headers)
    assert response.status_code < 500, response.text
    assert response.status_code in api.documented(path), (response.status_code, response.text)
    if response.status_code == 422:
        errors = response.json()["detail"]  # JSON, whatever the input was
        assert errors and all(e["loc"][0] == "body" for e in errors), errors
