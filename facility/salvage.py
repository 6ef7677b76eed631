"""Schema validation that keeps going: every shape error, then the meaning checks of the rest.

`validate` (sourcemap) stops a file at its shape errors, so a mistyped field in one
rule hid an unknown name in another until the typo was fixed. `validate_salvaging`
reports the same shape errors, then takes out what they point at (the mistyped field;
the item whose required field is missing or misshapen) and validates what is left, so
the loader can go on and check the meaning of everything else in the same run. The
items it had to touch are returned too: a loader skips their meaning checks (a rule
without its mistyped `above` would only add "give one of above and below") but still
knows their names (a crew listing a person whose entry has a typo is not wrong).
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from facility.sourcemap import ConfigIssue, SourceDoc, issue_from_pydantic
from facility.sourcemap import _data_path as data_path

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]
MAX_ROUNDS = 50  # each round removes at least one thing; a file has few errors


def validate_salvaging(
    model: type[M], doc: SourceDoc, item_depth: int = 2
) -> tuple[M | None, list[ConfigIssue], set[Loc]]:
    """(what validates once the broken parts are out, or None if nothing does; the
    shape issues; the items touched: error paths cut to `item_depth` parts, e.g.
    ("rules", "tank_high") or ("people", 2))."""
    try:
        return model.model_validate(doc.data), [], set()
    except ValidationError as exc:
        errors = exc.errors()
    issues = [issue_from_pydantic(doc, e) for e in errors]
    data = copy.deepcopy(doc.data)
    touched: set[Loc] = set()
    for _ in range(MAX_ROUNDS):
        for error in errors:
            loc = tuple(data_path(data, [p for p in error["loc"] if not _is_tag(p)]))
            touched.add(loc[:item_depth])
            if not _remove(data, loc, missing=error["type"] == "missing"):
                return None, issues, touched
        data = _compact(data)
        try:
            return model.model_validate(data), issues, touched
        except ValidationError as exc:
            errors = exc.errors()
    return None, issues, touched


def _is_tag(part: str | int) -> bool:
    return str(part).startswith("function-")


_GONE = object()  # a list item taken out; lists are compacted after each round


def _remove(data: Any, loc: Loc, missing: bool) -> bool:
    """Take out the field an error points at, or, for a missing field, its parent item.
    False when nothing can go (the error is about the whole document)."""
    target = loc[:-1] if missing else loc
    if not target:
        return False
    parent = _at(data, target[:-1])
    last = target[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    if isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        parent[last] = _GONE  # the other items keep their indexes for this round
        return True
    return len(target) > 1 and _remove(data, target[:-1], missing=False)


def _compact(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _compact(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_compact(v) for v in node if v is not _GONE]
    return node


def _at(data: Any, loc: Loc) -> Any:
    node = data
    for part in loc:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node
