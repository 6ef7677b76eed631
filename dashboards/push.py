"""Upload built boards through Grafana's HTTP API (grafana-client): into a folder made
if missing, overwriting by uid so pushing twice changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.influxql import DATASOURCE_UID
from dashboards.provisioning import FOLDER

FOLDER_UID = "facility"
GrafanaError = GrafanaException  # every failure grafana-client raises


@dataclass(frozen=True)
class Pushed:
    uid: str
    url: str
    version: int


def connect(url: str, token: str, timeout: float = 10.0) -> GrafanaApi:
    api: GrafanaApi = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    return api


def _call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """grafana-client has no annotations: its answers are JSON objects."""
    answer = method(*args, **kwargs)
    if not isinstance(answer, dict):
        raise TypeError(f"Grafana answered {answer!r}, expected a JSON object")
    return answer


class MissingDataSource(GrafanaException):
    """The boards' data source uid is not in this Grafana: every panel would fail."""

    def __init__(self, uid: str) -> None:
        message = (
            f"no data source with uid {uid!r}: every panel would fail; provision it "
            "(provisioning/datasources from `facility dashboards build`) first"
        )
        super().__init__(404, None, message)  # type: ignore[no-untyped-call]


def check_datasource(api: GrafanaApi, uid: str = DATASOURCE_UID) -> None:
    """Fail before uploading anything when Grafana has no data source with `uid`
    (provision it with `build`'s provisioning/datasources, or create it by that uid)."""
    try:
        _call(api.datasource.get_datasource_by_uid, uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        raise MissingDataSource(uid) from None


def ensure_folder(api: GrafanaApi, title: str = FOLDER, uid: str = FOLDER_UID) -> str:
    """The folder's uid; created when no folder has that uid."""
    try:
        found = _call(api.folder.get_folder, uid)
        return str(found["uid"])
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
    made = _call(api.folder.create_folder, title, uid=uid)
    return str(made["uid"])


def push(api: GrafanaApi, boards: dict[str, dict[str, Any]], folder_uid: str) -> list[Pushed]:
    done = []
    for uid, board in boards.items():
        body = {
            "dashboard": {**board, "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": "facility dashboards push",
        }
        answer = _call(api.dashboard.update_dashboard, body)
        done.append(Pushed(uid, str(answer.get("url", "")), int(answer.get("version", 0))))
    return done
