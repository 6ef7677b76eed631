"""How the suite is spread over pytest-xdist workers (docs/testing.md, "Parallel workers").

Tests that share an expensive fixture run on one worker, so it is made once: a session
fixture of ours (the simulated day, the wheel) groups its tests by its name, a module
fixture by its module; an `xdist_group` mark (the demo's fixed ports) is a group too.
New tests need nothing to be grouped.

xdist's own `--dist loadgroup` cannot do this with pytest 9.2: it marks a group by
rewriting the test's node id, which pytest 9.2 no longer reads back
(pytest-dev/pytest-xdist#1386). So each worker writes the groups it computed at
collection to a folder the controller names, and the controller's scheduler (xdist's
loadscope, which sends a scope whole to one worker) reads a test's scope from there.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import pytest

try:
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - without xdist the suite runs in one process
    LoadScopeScheduling = object

GROUPS_FOLDER_ENV = "FACILITY_TEST_GROUPS"
# Modules whose tests each take minutes of CPU (docs/testing.md): started first, so the
# workers do not all end on them at once while the quick tests are long done.
SLOW_FIRST = (
    "tests/unit/test_alarm_scenarios.py",
    "tests/unit/test_scenarios.py",
    "tests/integration/test_own_devices_e2e.py",
    "tests/unit/test_outbox.py",
    "tests/unit/test_alarm_book.py",
    "tests/unit/test_physics.py",
)
TESTS = Path(__file__).resolve().parent
# Shared fixtures cheap enough to make again on every worker: no group needed.
CHEAP_SHARED_FIXTURES = frozenset({"demo_config"})


def group_of(item: pytest.Item) -> str:
    """The group a test must share a worker with, or "" when it can run anywhere."""
    marks = sorted(str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                   for m in item.iter_markers("xdist_group"))  # fmt: skip
    if marks:
        return "_".join(marks)
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return ""
    sessions, modules = [], []
    for name in getattr(item, "fixturenames", ()):
        defs = info.name2fixturedefs.get(name)
        if not defs or name in CHEAP_SHARED_FIXTURES:
            continue
        fixture = defs[-1]
        source = inspect.getsourcefile(fixture.func)
        if source is None or not Path(source).resolve().is_relative_to(TESTS):
            continue  # a plugin's fixture (pytest-asyncio's loop policy...)
        if fixture.scope in ("session", "package"):
            sessions.append(name)
        elif fixture.scope in ("module", "class"):
            modules.append(item.nodeid.split("::", 1)[0])
    return sorted(sessions)[0] if sessions else (modules[0] if modules else "")


def slow_first(items: list[pytest.Item]) -> None:
    """Reorder in place (the same on every worker): SLOW_FIRST's modules first."""
    rank = {module: i for i, module in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def write_groups(items: list[pytest.Item]) -> None:
    """On a worker: the groups of the collected tests, for the controller's scheduler."""
    folder, worker = os.environ.get(GROUPS_FOLDER_ENV), os.environ.get("PYTEST_XDIST_WORKER")
    if not folder or not worker:
        return
    groups = {item.nodeid: group for item in items if (group := group_of(item))}
    path = Path(folder) / f"{worker}.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(groups))
    partial.replace(path)  # the controller never reads half a file


class SharedFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """xdist's loadscope with our groups as scopes; a test without a group is a scope
    of its own, so it goes to whichever worker is free. Bigger groups go out first."""

    def __init__(self, config: pytest.Config, log: Any, folder: Path) -> None:
        super().__init__(config, log)
        self.folder = folder
        self.groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self.groups is None:  # first asked once every worker has collected
            self.groups = {}
            for path in sorted(self.folder.glob("*.json")):
                self.groups.update(json.loads(path.read_text()))
        group = self.groups.get(nodeid)
        return f"group:{group}" if group else nodeid
