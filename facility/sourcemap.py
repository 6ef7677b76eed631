"""YAML loading that remembers where every value came from.

Config errors must name the file, line and field. PyYAML's composed node tree carries
line marks; we walk it once to build a map from field path to line, and turn pydantic
validation errors into `ConfigIssue`s that point at the offending line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Path_ = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One problem in a config file, precise enough to jump to."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ConfigError(Exception):
    """Raised with every issue found, never just the first."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = sorted(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass
class SourceDoc:
    """A parsed YAML document plus the line of every field in it."""

    file: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int:
        """Line of the deepest known prefix of `path` (1-based; 0 if unknown)."""
        key = tuple(_norm(p) for p in path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), 0)

    def issue(self, path: Sequence[str | int], message: str) -> ConfigIssue:
        return ConfigIssue(str(self.file), self.line_of(path), format_path(path), message)


def _norm(part: str | int) -> str | int:
    return part if isinstance(part, int) else str(part)


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(path: Path) -> SourceDoc:
    """Parse one YAML file; a syntax error becomes a ConfigError with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), 0, "", f"cannot read: {exc.strerror}")]) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError(
            [ConfigIssue(str(path), line, "", f"YAML syntax: {exc.problem}")]
        ) from exc
    finally:
        loader.dispose()
    doc = SourceDoc(path, data)
    if node is not None:
        _index(loader, node, (), doc.lines)
    return doc


def _index(loader: yaml.SafeLoader, node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = _norm(loader.construct_object(key_node, deep=True))
            child = (*path, key)
            lines[child] = key_node.start_mark.line + 1
            _index(loader, value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(loader, item, (*path, i), lines)


def validate(model: type[M], doc: SourceDoc) -> M:
    """Validate a document against a pydantic model; errors become ConfigIssues."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError([issue_from_pydantic(doc, err) for err in exc.errors()]) from exc


def issue_from_pydantic(doc: SourceDoc, err: Any) -> ConfigIssue:
    # pydantic puts the tag of a discriminated union into loc; it is not a field name.
    loc = _data_path(doc.data, [p for p in err["loc"] if not str(p).startswith("function-")])
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field (check the spelling)"
    elif err["type"] == "missing":
        message = "required field is missing"
    return doc.issue(loc, message)


def _data_path(data: Any, loc: list[str | int]) -> list[str | int]:
    """pydantic's error location minus the tags of discriminated unions (`v2` in
    influxdb.v2.bucket): a part that is no key of the document, where more follows."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        is_last = i == len(loc) - 1
        if isinstance(node, dict) and part not in node and not is_last:
            continue
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else _item(node, part)
    return out


def _item(node: Any, part: str | int) -> Any:
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None
