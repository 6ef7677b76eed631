"""Built boards checked against the typed models of Grafana's dashboard schema.

grafana-foundation-sdk's models are generated from Grafana's own schema (the CUE
`kinds` of the Grafana version the SDK names, 10.1): every field carries its type.
Decoding does not check types (`from_json` copies values), so a board is checked in
three steps:

1. decode it with the SDK (panel options and custom field config through each panel
   type's model, targets through our InfluxQL model, annotations through our InfluxDB
   annotation) and encode it again: a key the model does not know is dropped, a
   required key missing comes back as a default, so any difference is a problem;
2. check every decoded value against its field's type, all the way down (an `int`
   field holding "12", a panel type without a model, a value outside an enum);
3. check what the types cannot say: unit ids (the SDK's list of Grafana's units, or a
   custom `suffix:` … unit), grid positions inside the 24 columns, each override
   property as the field config it sets.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Iterator
from functools import cache
from typing import Any

from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import units

from dashboards import influxql

GRID_COLUMNS = 24
# Grafana's custom unit formats (FieldConfig.unit in the schema): prefix and a text.
CUSTOM_UNITS = ("suffix:", "prefix:", "time:", "si:", "count:", "currency:")


class BoardInvalid(ValueError):
    """A board that does not follow the schema; `problems` says where and how."""

    def __init__(self, uid: str, problems: list[str]) -> None:
        self.uid, self.problems = uid, problems
        super().__init__(f"board {uid}: " + "; ".join(problems))


def check(board: dict[str, Any]) -> None:
    """Raise BoardInvalid listing every problem of the board."""
    found = problems(board)
    if found:
        raise BoardInvalid(str(board.get("uid")), found)


def problems(board: dict[str, Any]) -> list[str]:
    """Every way the board departs from the schema's models (empty: none)."""
    _register()
    container = board.get("annotations", {})
    annotations = container.get("list", []) if isinstance(container, dict) else None
    if not isinstance(annotations, list):
        return [f"annotations: expected an object with a list, got {_show(container)}"]
    plain = {**board, "annotations": {**container, "list": []}}
    try:
        model = dm.Dashboard.from_json(plain)
    except DECODING as exc:
        return _undecodable(plain, exc)
    found = list(_differences(plain, _encoded(model), ""))
    found += _types(model, dm.Dashboard, "")
    for i, data in enumerate(annotations):
        found += _annotation(data, f"annotations.list[{i}]")
    for path, panel in _panels(model):
        found += _panel(panel, path)
    return found


# What the SDK's `from_json` raises on a value of the wrong shape (a list for an object).
DECODING = (TypeError, KeyError, AttributeError, ValueError)


def _undecodable(board: dict[str, Any], exc: Exception) -> list[str]:
    """Which panel the SDK cannot decode (a wrong shape fails before any type check)."""
    found = []
    for i, panel in enumerate(board.get("panels") or []):
        if not isinstance(panel, dict):
            found.append(f"panels[{i}]: expected an object, got {_show(panel)}")
            continue
        inner_panels = panel.get("panels", [])
        nested = enumerate(inner_panels if isinstance(inner_panels, list) else [])
        for path, data in [(f"panels[{i}]", panel)] + [
            (f"panels[{i}].panels[{j}]", inner) for j, inner in nested if isinstance(inner, dict)
        ]:
            shapes = [
                f"{path}.{key}: expected {'an object' if shape is dict else 'a list'}, "
                f"got {_show(data[key])}"
                for key, shape in PANEL_SHAPES.items()
                if key in data and not isinstance(data[key], shape)
            ]
            if shapes:
                found += shapes
                continue
            kind = dm.RowPanel if data.get("type") == "row" else dm.Panel
            try:
                kind.from_json(data)
            except DECODING as inner_exc:
                found.append(f"{path}: does not decode: {type(inner_exc).__name__} {inner_exc}")
    return found or [f"does not decode: {type(exc).__name__} {exc}"]


# A panel's keys whose values the SDK's decoder walks into (the schema's shapes).
PANEL_SHAPES: dict[str, type] = {
    "options": dict,
    "fieldConfig": dict,
    "gridPos": dict,
    "datasource": dict,
    "targets": list,
    "links": list,
    "transformations": list,
    "panels": list,
}


@cache
def _register() -> None:
    """Every panel type's options model, and our InfluxQL target, for decoding."""
    cogplugins.register_default_plugins()
    influxql.register()


def _annotation(data: Any, path: str) -> list[str]:
    """An annotation from InfluxDB: the schema's AnnotationQuery, whose `target` is the
    InfluxQL query (the schema's own target type is the built-in Grafana source's)."""
    if not isinstance(data, dict):
        return [f"{path}: expected an object, got {_show(data)}"]
    try:
        model = influxql.InfluxAnnotationQuery.from_json(data)
    except DECODING as exc:
        return [f"{path}: does not decode: {type(exc).__name__} {exc}"]
    found = list(_differences(data, _encoded(model), path))
    if model.influx_target is None:
        found.append(f"{path}.target: missing")
    return found + _types(model, dm.AnnotationQuery, path)


def _encoded(model: object) -> Any:
    return json.loads(json.dumps(model, cls=JSONEncoder))


def _panels(model: dm.Dashboard) -> Iterator[tuple[str, dm.Panel | dm.RowPanel]]:
    for i, panel in enumerate(model.panels or []):
        yield f"panels[{i}]", panel
        if isinstance(panel, dm.RowPanel):
            for j, inner in enumerate(panel.panels or []):
                yield f"panels[{i}].panels[{j}]", inner


def _panel(panel: dm.Panel | dm.RowPanel, path: str) -> list[str]:
    found = _grid(panel.grid_pos, path)
    if isinstance(panel, dm.RowPanel):
        return found
    config = cogruntime.panelcfg_config(panel.type_val)
    if config is None or config.options_from_json_hook is None:
        found.append(f"{path}.type: no model for panel type {panel.type_val!r}")
    elif isinstance(panel.options, dict):
        found.append(f"{path}.options: not decoded as {panel.type_val} options")
    fields = panel.field_config
    custom = fields.defaults.custom if fields and fields.defaults else None
    if custom and isinstance(custom, dict):
        found.append(f"{path}.fieldConfig.defaults.custom: no model for {panel.type_val}")
    if fields and fields.defaults:
        found += _unit(fields.defaults.unit, f"{path}.fieldConfig.defaults.unit")
    hook = config.field_config_from_json_hook if config else None
    for i, override in enumerate(fields.overrides if fields else []):
        for j, prop in enumerate(override.properties):
            where = f"{path}.fieldConfig.overrides[{i}].properties[{j}]"
            found += _override_property(prop, hook, where)
    return found


def _grid(pos: dm.GridPos | None, path: str) -> list[str]:
    if pos is None:
        return [f"{path}.gridPos: missing"]
    if not all(type(v) is int for v in (pos.x, pos.y, pos.w, pos.h)):
        return []  # reported by the type check
    if not (0 < pos.w <= GRID_COLUMNS and pos.x >= 0 and pos.x + pos.w <= GRID_COLUMNS):
        return [f"{path}.gridPos: x {pos.x} w {pos.w} outside {GRID_COLUMNS} columns"]
    if pos.h <= 0 or pos.y < 0:
        return [f"{path}.gridPos: y {pos.y} h {pos.h}"]
    return []


def _unit(unit: object, path: str) -> list[str]:
    if unit is None or not isinstance(unit, str):
        return []  # absent, or reported by the type check
    if unit in _known_units() or unit.startswith(CUSTOM_UNITS):
        return []
    return [f"{path}: unknown unit {unit!r}"]


@cache
def _known_units() -> frozenset[str]:
    return frozenset(v for v in vars(units).values() if isinstance(v, str))


def _override_property(
    prop: dm.DynamicConfigValue,
    custom_hook: typing.Callable[[dict[str, Any]], Any] | None,
    path: str,
) -> list[str]:
    """An override property sets one key of the field config (`custom.x` one of the
    panel type's custom field config): checked as that field config would be."""
    name, value = prop.id_val, prop.value
    if name.startswith("custom."):
        if custom_hook is None:
            return [f"{path}: {name!r} on a panel type without custom field config"]
        key, data = name.removeprefix("custom."), {name.removeprefix("custom."): value}
        try:
            model = custom_hook(data)
        except DECODING as exc:
            return [f"{path}: {name} does not decode: {exc}"]
        again = _encoded(model)
        if key not in again:
            return [f"{path}: unknown custom field config {key!r}"]
        return list(_differences(data, {key: again[key]}, path)) + _types(model, type(model), path)
    data = {name: value}
    try:
        field = dm.FieldConfig.from_json(data)
    except DECODING as exc:
        return [f"{path}: {name} does not decode: {exc}"]
    found = list(_differences(data, _encoded(field), path))
    found += _types(field, dm.FieldConfig, path)
    return found + _unit(field.unit, path)


def _differences(given: Any, again: Any, path: str) -> Iterator[str]:
    """Where a board and its decoded-and-encoded copy differ."""
    if isinstance(given, dict) and isinstance(again, dict):
        for key in given.keys() - again.keys():
            yield f"{_join(path, key)}: not in the schema (dropped by the model)"
        for key in again.keys() - given.keys():
            yield f"{_join(path, key)}: missing (the model fills in {_show(again[key])})"
        for key in given.keys() & again.keys():
            yield from _differences(given[key], again[key], _join(path, key))
    elif isinstance(given, list) and isinstance(again, list) and len(given) == len(again):
        for i, (a, b) in enumerate(zip(given, again, strict=True)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif given != again or type(given) is not type(again):
        yield f"{path}: {_show(given)} comes back as {_show(again)}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _types(value: object, hint: object, path: str) -> list[str]:
    """Every value against its declared type (the generated models' annotations)."""
    return list(_check(value, hint, path))


def _check(value: object, hint: Any, path: str) -> Iterator[str]:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return
    if hint is object:  # required; a panel's options, decoded by its type's model
        if value is None:
            yield f"{path}: missing"
        elif _is_model(value):
            yield from _instance(value, type(value), path)
        return
    if origin is typing.Union or origin is types.UnionType:
        yield from _union(value, typing.get_args(hint), path)
    elif origin is typing.Literal:
        if value not in typing.get_args(hint):
            yield f"{path}: {_show(value)} is not one of {typing.get_args(hint)}"
    elif origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            yield f"{path}: expected a list, got {_show(value)}"
            return
        for i, v in enumerate(value):
            yield from _check(v, item, f"{path}[{i}]")
    elif origin is dict:
        key_type, item = typing.get_args(hint)
        if not isinstance(value, dict):
            yield f"{path}: expected an object, got {_show(value)}"
            return
        for k, v in value.items():
            yield from _check(k, key_type, f"{path} key")
            yield from _check(v, item, f"{path}[{k!r}]")
    elif isinstance(hint, type):
        yield from _instance(value, hint, path)
    else:
        raise TypeError(f"{path}: cannot check against {hint!r}")


def _union(value: object, arms: tuple[Any, ...], path: str) -> Iterator[str]:
    if value is None and type(None) in arms:
        return
    arms = tuple(arm for arm in arms if arm is not type(None))
    # A decoded model is checked as the arm it was decoded as (Panel or RowPanel, …).
    chosen = [a for a in arms if isinstance(a, type) and _is_model(value) and isinstance(value, a)]
    tries = [list(_check(value, arm, path)) for arm in (chosen[:1] or arms)]
    if all(tries):
        if len(tries) == 1:
            yield from tries[0]
        else:
            names = ", ".join(getattr(a, "__name__", str(a)) for a in arms)
            yield f"{path}: {_show(value)} is none of {names}"


def _is_model(value: object) -> bool:
    """A decoded SDK (or our) model object, not a JSON scalar, list or dict."""
    return not isinstance(value, str | int | float | bool | list | dict | enum.Enum)


SCALARS: dict[type, tuple[type, ...]] = {
    bool: (bool,),
    int: (int,),
    float: (int, float),
    str: (str,),
}


def _instance(value: object, hint: type, path: str) -> Iterator[str]:
    if hint in SCALARS:
        # JSON true is not a number: bool is an int subclass in Python only
        if (isinstance(value, bool) and hint is not bool) or not isinstance(value, SCALARS[hint]):
            yield f"{path}: expected {hint.__name__}, got {_show(value)}"
        return
    if issubclass(hint, enum.Enum):
        if not isinstance(value, hint) and value not in {m.value for m in hint}:
            yield f"{path}: {_show(value)} is not one of {[m.value for m in hint]}"
        return
    if hint is cogvariants.Dataquery and isinstance(value, cogruntime.UnknownDataquery):
        yield f"{path}: a target of a data source without a model"
        return
    if not isinstance(value, hint):
        yield f"{path}: expected {hint.__name__}, got {_show(value)}"
        return
    for name, field_hint in _fields(type(value)).items():
        yield from _check(getattr(value, name, None), field_hint, _join(path, _json_name(name)))


_FIELDS: dict[type, dict[str, Any]] = {}


def _fields(cls: type) -> dict[str, Any]:
    """A model's declared fields and types (class annotations, forward refs resolved)."""
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        _FIELDS[cls] = {k: v for k, v in hints.items() if not k.startswith("_")}
    return _FIELDS[cls]


def _json_name(attribute: str) -> str:
    """The JSON key of a model's attribute (`grid_pos` → `gridPos`, `id_val` → `id`)."""
    if attribute == "influx_target":
        return "target"
    head, *rest = attribute.removesuffix("_val").split("_")
    return head + "".join(word.capitalize() for word in rest)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
