"""Build every board from a site configuration, as Grafana dashboard JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import validate
from dashboards.boards import alarms, fleet, gateways, parking, reservoir, station
from dashboards.boards.base import Board
from dashboards.model import Facts

# A board with nothing to show for the site model (no car park, no water site) is None.
BOARDS: tuple[Callable[[Facts], Board | None], ...] = (
    fleet.build,
    reservoir.build,
    station.build,
    parking.build,
    gateways.build,
    alarms.build,
)


def build_all(facts: Facts) -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON (as a dict), panel ids numbered 1… per board. Each board is
    checked against the schema's models first (validate.BoardInvalid if it fails)."""
    out: dict[str, dict[str, Any]] = {}
    for make in BOARDS:
        board = make(facts)
        if board is None:
            continue
        built = board.builder.build()
        _number_panels(built)
        _layout(built)
        out[board.uid] = to_dict(built)
        validate.check(out[board.uid])
    return out


def to_dict(board: dm.Dashboard) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(board, cls=JSONEncoder))
    return result


def _number_panels(board: dm.Dashboard) -> None:
    """Grafana needs ids unique per board for links, repeats and annotations filters."""
    n = 0
    for panel in board.panels or []:
        n += 1
        panel.id_val = n
        for inner in getattr(panel, "panels", None) or []:
            n += 1
            inner.id_val = n


def _layout(board: dm.Dashboard) -> None:
    """Left to right, wrapping when a panel does not fit; a row starts a new line.
    (The SDK's builder wraps only after the line is full, so a wide panel could overflow.)"""
    x = y = line_h = 0
    for panel in board.panels or []:
        pos = panel.grid_pos or dm.GridPos()
        panel.grid_pos = pos
        if isinstance(panel, dm.RowPanel) or x + pos.w > 24:
            x, y, line_h = 0, y + line_h, 0
        pos.x, pos.y = x, y
        x, line_h = x + pos.w, max(line_h, pos.h)
        if isinstance(panel, dm.RowPanel):
            x, y, line_h = 0, y + pos.h, 0


def write(boards: dict[str, dict[str, Any]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid, board in boards.items():
        path = folder / f"{uid}.json"
        path.write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
