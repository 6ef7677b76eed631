"""Alarm rules as data: one YAML file, rules per asset kind, overrides per asset.

```yaml
rules:
  tank_level_high_high:
    kind: threshold   # threshold | condition | rate | unchanged | device | gateway | silent
    applies_to: {asset_kind: tank}
    signal: level_m
    above: limit.high_high     # a number, or the asset's limit from the site model
    deadband: 0.05             # hysteresis: clears below the limit minus this
    on_delay: 30s              # the condition must hold this long (event time)
    priority: high
    deadline: 1h               # how fast it must alarm once the condition starts
  pump_trip:
    kind: condition
    applies_to: {asset_kind: pump}
    when: tripped
    message: "tripped (fault code {fault_code}: {fault_code.meaning})"
    priority: high
overrides:
  - {asset: fengshou/xiba/tank_no4, rule: tank_level_high_high, set: {deadband: 0.1}}
```

Expressions (`when`, `suppress_when`) are parsed by simpleeval, never eval'd as text
(the engine compiles the plain ones to the walk's equal: ingest/alarms/expressions.py):
names are the asset's signals and its nameplate ratings, plus abs/min/max. They are parsed and their
names checked when the file loads, so a typo is a ConfigError naming rule and field.

A `message` is a template for the text an alarm is raised with, `clear_message` for
its return to normal: `{signal}` is the asset's value (ratings too), with an optional
format spec (`{load_pct:.0f}`), `{signal.unit}` its unit from the device profile,
`{signal.meaning}` what the profile says a code means (its `enum`), and in a threshold
rule `{limit}` its resolved limit. Nothing else: no attribute access, indexing or
conversions, checked at load like an expression.
Delays longer than the rule's `deadline` are load errors: the rule could never meet it.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field
from simpleeval import SimpleEval

from facility.config import SiteConfig
from facility.durations import parse_duration
from facility.salvage import validate_salvaging
from facility.site import Asset, AssetKind, AssetStatus, Ratings, Strict
from facility.sourcemap import ConfigError, ConfigIssue, SourceDoc, load_yaml
from facility.wire import STATUS_SIGNALS, Value
from ingest.alarms.model import Priority

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
LIMIT_LEVELS = ("low_low", "low", "high", "high_high")
FUNCTIONS = {"abs": abs, "min": min, "max": max}


class Selector(Strict):
    asset_kind: str | None = None  # a kind id (facility/kinds/ or the site's kinds/)
    assets: list[str] = Field(default_factory=list)  # site/station/asset paths


class RuleBase(Strict):
    applies_to: Selector = Selector()
    priority: Priority
    deadline: Seconds | None = None
    on_delay: Seconds = 0.0
    off_delay: Seconds = 0.0
    latched: bool = False
    description: str = ""
    message: str | None = None  # template of the raised alarm's text (module docstring)
    clear_message: str | None = None  # template of its return to normal
    suppress_when: str | None = None  # suppression by design: no alarm while true
    inhibited_by: list[str] = Field(default_factory=list)  # rules on the same asset


class ThresholdRule(RuleBase):
    kind: Literal["threshold"]
    signal: str
    above: float | str | None = None
    below: float | str | None = None
    deadband: float = Field(default=0.0, ge=0)


class ConditionRule(RuleBase):
    kind: Literal["condition"]
    when: str
    clear_when: str | None = None  # hysteresis: once active, clears only when this holds


class RateRule(RuleBase):
    """Change per minute over the last minute, in the signal's unit."""

    kind: Literal["rate"]
    signal: str
    max_rise_per_min: float | None = Field(default=None, gt=0)
    max_fall_per_min: float | None = Field(default=None, gt=0)
    deadband: float = Field(default=0.0, ge=0)  # per minute: clears below the limit minus this


class UnchangedRule(RuleBase):
    """A flatline: the value has not moved at all for `for_` (a stuck transmitter)."""

    kind: Literal["unchanged"]
    signal: str
    for_: Seconds = Field(alias="for", gt=0)


class DeviceRule(RuleBase):
    """On the gateway's device status (comm_ok, error, exception_code, ...)."""

    kind: Literal["device"]
    when: str


class GatewayRule(RuleBase):
    """A deadman per gateway: nothing received from it for `silent_for` (wall time)."""

    kind: Literal["gateway"]
    silent_for: Seconds = Field(gt=0)


class SilentRule(RuleBase):
    """A deadman per device: nothing from the asset for `silent_for` while its gateway
    keeps delivering. Measured in event time, the gateway's newest reading against the
    asset's, so a backlog after an outage raises nothing."""

    kind: Literal["silent"]
    silent_for: Seconds = Field(gt=0)


Rule = Annotated[
    ThresholdRule
    | ConditionRule
    | RateRule
    | UnchangedRule
    | DeviceRule
    | GatewayRule
    | SilentRule,
    Field(discriminator="kind"),
]


class Override(Strict):
    asset: str  # site/station/asset
    rule: str
    enabled: bool = True
    set: dict[str, Any] = Field(default_factory=dict)


class RulesFile(Strict):
    rules: dict[str, Rule]
    overrides: list[Override] = Field(default_factory=list)


@dataclass(frozen=True)
class Placeholder:
    """`{signal}` or `{signal.meaning}` in a message template, with its format spec."""

    signal: str
    spec: str = ""
    meanings: Mapping[int, str] | None = None  # set for `{signal.meaning}`


MessagePart = str | Placeholder


@dataclass(frozen=True)
class Bound:
    """One rule on one asset, with overrides applied and limits resolved."""

    id: str
    rule: Rule
    site: str
    station: str
    asset: Asset
    level: float | None = None  # a threshold's resolved limit
    when: ast.AST | None = None  # the parsed expression (condition / device rules)
    suppress: ast.AST | None = None
    clear: ast.AST | None = None
    message: tuple[MessagePart, ...] = ()  # the parsed `message` template
    clear_message: tuple[MessagePart, ...] = ()  # the parsed `clear_message` template

    @property
    def path(self) -> str:
        return f"{self.site}/{self.station}/{self.asset.id}"


@dataclass
class RuleSet:
    file: Path
    rules: dict[str, Rule]
    bound: list[Bound]

    def for_asset(self, path: str) -> list[Bound]:
        return [b for b in self.bound if b.path == path]


def load_rules(path: Path, site: SiteConfig) -> RuleSet:
    doc = load_yaml(path)
    # A rule with a shape error (a mistyped field) is reported and left out of the
    # checks below, which still run for every other rule: one typo hides nothing.
    spec, issues, touched = validate_salvaging(RulesFile, doc)
    if spec is None:
        raise ConfigError(issues)
    issues += _check_references(spec, site, doc)
    misshapen = {str(loc[1]) for loc in touched if loc[:1] == ("rules",) and len(loc) == 2}
    for rid, rule in spec.rules.items():
        problems = shape_problems(rule)
        issues += [doc.issue(["rules", rid, *f], m) for f, m in problems]
        misshapen |= {rid} if problems else set()
    bound, more = _bind(spec, site, doc, skip=misshapen)  # binding those would only add noise
    issues += more
    if issues:
        raise ConfigError(issues)
    return RuleSet(path, spec.rules, bound)


def _check_references(spec: RulesFile, site: SiteConfig, doc: SourceDoc) -> list[ConfigIssue]:
    paths = {ref.path for ref in site.assets()}
    issues = []
    for rid, rule in spec.rules.items():
        kind = rule.applies_to.asset_kind
        if kind is not None and kind not in site.kinds:
            issues.append(
                doc.issue(
                    ["rules", rid, "applies_to", "asset_kind"],
                    f"no asset kind {kind!r} (known: {', '.join(sorted(site.kinds))})",
                )
            )
        for i, other in enumerate(rule.inhibited_by):
            if other not in spec.rules:
                issues.append(doc.issue(["rules", rid, "inhibited_by", i], f"no rule {other!r}"))
        for i, asset in enumerate(rule.applies_to.assets):
            if asset not in paths:
                issues.append(
                    doc.issue(["rules", rid, "applies_to", "assets", i], f"no asset {asset!r}")
                )
    for i, override in enumerate(spec.overrides):
        if override.rule not in spec.rules:
            issues.append(doc.issue(["overrides", i, "rule"], f"no rule {override.rule!r}"))
        if override.asset not in paths:
            issues.append(doc.issue(["overrides", i, "asset"], f"no asset {override.asset!r}"))
    return issues


def _bind(
    spec: RulesFile, site: SiteConfig, doc: SourceDoc, skip: set[str]
) -> tuple[list[Bound], list[ConfigIssue]]:
    bound: list[Bound] = []
    issues: list[ConfigIssue] = []
    overrides = {(o.asset, o.rule): (i, o) for i, o in enumerate(spec.overrides)}
    for rid, rule in spec.rules.items():
        if rid in skip:
            continue
        for ref in _targets(rule, site):
            where: list[str | int] = ["rules", rid]
            override = overrides.get((ref.path, rid))
            if override is not None:
                index, o = override
                if not o.enabled:
                    continue
                rule, where = _overridden(rule, o, doc, index, issues), ["overrides", index, "set"]
            words = Words(
                _names_for(ref.asset, site), _codes_for(ref.asset, site), units_for(ref.asset, site)
            )
            try:
                bound.append(_bound(rid, rule, ref.site.id, ref.station.id, ref.asset, words))
            except ValueError as exc:
                field, message = exc.args if len(exc.args) == 2 else ("", str(exc))
                issues.append(
                    doc.issue([*where, field] if field else where, f"{ref.path}: {message}")
                )
    return bound, issues


def _overridden(
    rule: Rule, o: Override, doc: SourceDoc, index: int, issues: list[ConfigIssue]
) -> Rule:
    data = rule.model_dump(by_alias=True) | o.set
    try:
        changed = type(rule).model_validate(data)
    except Exception as exc:  # pydantic's ValidationError: name the override
        issues.append(doc.issue(["overrides", index, "set"], str(exc).splitlines()[0]))
        return rule
    problems = shape_problems(changed)
    issues += [doc.issue(["overrides", index, "set", *f], m) for f, m in problems]
    return rule if problems else changed


def shape_problems(rule: Rule) -> list[tuple[list[str | int], str]]:
    """What the fields of one rule get wrong together: (field path, message)."""
    out: list[tuple[list[str | int], str]] = []
    if isinstance(rule, ThresholdRule) and (rule.above is None) == (rule.below is None):
        out.append(([], "give exactly one of `above` and `below`"))
    if (
        isinstance(rule, RateRule)
        and rule.max_rise_per_min is None
        and rule.max_fall_per_min is None
    ):
        out.append(([], "a rate rule needs max_rise_per_min, max_fall_per_min or both"))
    for field in ("message", "clear_message"):
        if isinstance(rule, GatewayRule | SilentRule) and getattr(rule, field) is not None:
            out.append(([field], f"{rule.kind} rules write their own message"))
    if rule.deadline is not None:
        for field, delay in _delays(rule):
            if delay > rule.deadline:
                out.append(
                    (
                        [field],
                        f"{field} {delay:g} s is longer than the deadline {rule.deadline:g} s: "
                        "the rule could never alarm in time",
                    )
                )
    return out


def _delays(rule: Rule) -> list[tuple[str, float]]:
    """Each wait a rule has before it can alarm, by the field that sets it."""
    delays = [("on_delay", rule.on_delay)]
    if isinstance(rule, UnchangedRule):
        delays.append(("for", rule.for_))
    if isinstance(rule, GatewayRule | SilentRule):
        delays.append(("silent_for", rule.silent_for))
    return delays


def _targets(rule: Rule, site: SiteConfig) -> Iterator[Any]:
    wanted = set(rule.applies_to.assets)
    for ref in site.assets():
        if ref.asset.status is AssetStatus.OUT_OF_SERVICE:
            continue  # out of service in the asset register: raises nothing
        if wanted and ref.path not in wanted:
            continue
        if isinstance(rule, SilentRule) and not ref.asset.profile:
            continue  # in the register, but nothing reports for it: not a silent device
        kind = rule.applies_to.asset_kind
        is_gateway = ref.asset.kind == AssetKind.GATEWAY
        if isinstance(rule, GatewayRule):
            if is_gateway and kind in (None, AssetKind.GATEWAY):
                yield ref
        elif not is_gateway and kind in (None, ref.asset.kind):
            yield ref


def _names_for(asset: Asset, site: SiteConfig) -> set[str]:
    ratings = {k for k, v in asset.ratings.model_dump().items() if v is not None}
    profile = site.profiles.get(asset.profile or "")
    signals = {s.name for s in profile.signals} if profile else set()
    return signals | ratings


def units_for(asset: Asset, site: SiteConfig) -> dict[str, str]:
    """Each signal's unit from the asset's device profile."""
    profile = site.profiles.get(asset.profile or "")
    return {s.name: s.unit for s in profile.signals if s.unit} if profile else {}


def _codes_for(asset: Asset, site: SiteConfig) -> dict[str, dict[int, str]]:
    """The signals whose codes the device profile describes (`enum`), with their meanings."""
    profile = site.profiles.get(asset.profile or "")
    if profile is None:
        return {}
    return {s.name: s.enum for s in profile.signals if s.enum}


@dataclass(frozen=True)
class Words:
    """What a message template may name on one asset: its signals and ratings, the codes
    its profile explains, the units of its signals."""

    names: set[str]
    codes: dict[str, dict[int, str]]
    units: dict[str, str]


def _bound(rid: str, rule: Rule, site: str, station: str, asset: Asset, words: Words) -> Bound:
    if isinstance(rule, DeviceRule):
        words = Words(set(STATUS_SIGNALS), {}, {})
    names = words.names
    level = None
    if isinstance(rule, ThresholdRule | RateRule | UnchangedRule) and rule.signal not in names:
        raise ValueError("signal", f"no signal {rule.signal!r} on a {asset.kind}")
    if isinstance(rule, ThresholdRule):
        level = _level(rule, asset)
    when = None
    if isinstance(rule, ConditionRule | DeviceRule):
        when = parse_expression(rule.when, names, "when")
    suppress = _optional(rule.suppress_when, names, "suppress_when")
    clear = (
        _optional(rule.clear_when, names, "clear_when") if isinstance(rule, ConditionRule) else None
    )
    if isinstance(rule, ThresholdRule):
        words = replace(words, names=names | {"limit"}, units={**words.units})
        words.units["limit"] = words.units.get(rule.signal, "")
    message = parse_message(rule.message, words) if rule.message else ()
    back = parse_message(rule.clear_message, words, "clear_message") if rule.clear_message else ()
    return Bound(rid, rule, site, station, asset, level, when, suppress, clear, message, back)


def _optional(text: str | None, names: set[str], field: str) -> ast.AST | None:
    return parse_expression(text, names, field) if text else None


def _level(rule: ThresholdRule, asset: Asset) -> float:
    side = "above" if rule.above is not None else "below"
    value = rule.above if rule.above is not None else rule.below
    if isinstance(value, int | float):
        return float(value)
    assert value is not None
    prefix, _, level = value.partition(".")
    if prefix != "limit" or level not in LIMIT_LEVELS:
        raise ValueError(side, f"{value!r}: use a number or limit.<{'|'.join(LIMIT_LEVELS)}>")
    limits = asset.limits.get(rule.signal)
    found = getattr(limits, level) if limits else None
    if found is None:
        raise ValueError(side, f"no {level} limit for {rule.signal} in the site model")
    return float(found)


def parse_expression(text: str | None, names: set[str], field: str) -> ast.AST:
    """Parse once, check every name is known: a typo fails at load, not at 3 a.m."""
    if text is None:
        raise ValueError(field, "missing expression")
    try:
        tree: ast.AST = SimpleEval(functions=FUNCTIONS).parse(text)
    except SyntaxError as exc:
        raise ValueError(field, f"not an expression: {exc.msg}") from None
    unknown = sorted(
        {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        - names
        - set(FUNCTIONS)
        - {"True", "False", "None"}
    )
    if unknown:
        raise ValueError(
            field, f"unknown name(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )
    return tree


PLACEHOLDER = re.compile(r"^([a-z][a-z0-9_]*)(\.meaning|\.unit)?$")
SPEC_SAMPLES: tuple[Value, ...] = (1, 1.5, True, "text")
WIDE_SPEC = re.compile(r"\d{3,}")  # a 1000-character field is a mistake, or worse


def parse_message(text: str, words: Words, field: str = "message") -> tuple[MessagePart, ...]:
    """A message template, parsed once: literal text and checked placeholders (a
    signal's unit is literal text: it comes from the profile, not from the reading)."""
    try:
        pieces = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(field, f"not a message template: {exc}") from None
    parts: list[MessagePart] = []
    for literal, name, spec, conversion in pieces:
        if literal:
            parts.append(literal)
        if name is None:
            continue
        try:
            parts.append(_placeholder(name, spec or "", conversion, words))
        except ValueError as exc:
            raise ValueError(field, str(exc)) from None
    return tuple(parts)


def _placeholder(name: str, spec: str, conversion: str | None, words: Words) -> MessagePart:
    found = PLACEHOLDER.match(name)
    if found is None or conversion is not None or "{" in spec:
        raise ValueError(
            f"{{{name}}}: use {{signal}}, {{signal:spec}}, {{signal.unit}} or {{signal.meaning}}"
        )
    signal, attribute = found.group(1), found.group(2)
    if signal not in words.names:
        raise ValueError(f"unknown name {signal} (known: {', '.join(sorted(words.names))})")
    if attribute == ".unit":
        return words.units.get(signal, "")
    if attribute == ".meaning" and signal not in words.codes:
        raise ValueError(f"{signal}: its device profile describes no codes (enum)")
    if WIDE_SPEC.search(spec) or not any(_formats(sample, spec) for sample in SPEC_SAMPLES):
        raise ValueError(f"{{{name}:{spec}}}: not a format spec (up to 99 wide)")
    return Placeholder(signal, spec, words.codes[signal] if attribute else None)


def _formats(value: Value, spec: str) -> str | None:
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return None


def render_message(parts: tuple[MessagePart, ...], values: Mapping[str, Value]) -> str | None:
    """The template filled with the asset's values; None while one is missing (the rule's
    plain message is used instead)."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = values.get(part.signal)
        if part.meanings is not None:
            value = _meaning(value, part.meanings)
        text = None if value is None else _formats(value, part.spec)
        if text is None:
            return None
        out.append(text)
    return "".join(out)


def _meaning(code: Value, meanings: Mapping[int, str]) -> str | None:
    if not isinstance(code, int | float):
        return None
    return meanings.get(int(code), "not a known code").replace("_", " ")


def ratings_of(asset: Asset) -> dict[str, float]:
    return {k: float(v) for k, v in asset.ratings.model_dump().items() if v is not None}


__all__ = [
    "Bound",
    "Ratings",
    "RuleSet",
    "load_rules",
    "parse_expression",
    "parse_message",
    "ratings_of",
    "render_message",
    "units_for",
]
