"""What the boards need to know from the site model, the profiles and the alarm rules.

Units come from the device profiles, alarm levels from the site model's limits and from
the rules (a threshold rule's resolved level, or a condition that is one comparison of
a signal with a number, like `load_pct > 120`). Everything is looked up per asset, so a
station added to the site files is on the boards after the next build.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

from facility.config import SiteConfig
from facility.kind import Kind
from facility.site import Asset, AssetRef, AssetStatus, Site, Station
from ingest.alarms.readout import Bound, ConditionRule, RuleSet, ThresholdRule

PRIORITY_COLOURS = {"critical": "red", "high": "orange", "medium": "yellow", "low": "blue"}
_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


@dataclass(frozen=True)
class Level:
    """One alarm level of a signal: where the colour changes on a panel."""

    value: float
    colour: str
    above: bool  # alarms above the value (else below)
    source: str  # the limit or rule it comes from, for descriptions


@dataclass
class Facts:
    config: SiteConfig
    rules: RuleSet | None = None
    _levels: dict[tuple[str, str], list[Level]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for ref in self.config.assets():
            for signal, limits in ref.asset.limits.items():
                self._add(ref.path, signal, _limit_levels(limits.model_dump()))
        for bound in self.rules.bound if self.rules else []:
            found = _rule_level(bound)
            if found is not None:
                self._add(bound.path, found[0], [found[1]])

    def _add(self, path: str, signal: str, levels: list[Level]) -> None:
        known = self._levels.setdefault((path, signal), [])
        for level in levels:
            if all(abs(k.value - level.value) > 1e-9 or k.above != level.above for k in known):
                known.append(level)

    def levels(self, ref: AssetRef, signal: str) -> list[Level]:
        return sorted(self._levels.get((ref.path, signal), []), key=lambda lv: lv.value)

    def unit(self, kind: str, signal: str) -> str:
        for ref in self.config.assets():
            if ref.asset.kind == kind and ref.asset.profile:
                profile = self.config.profile_of(ref)
                for s in profile.signals:
                    if s.name == signal:
                        return s.unit
        return ""

    def sites(self, kind: str) -> list[Site]:
        return [s for s in self.config.sites if s.kind == kind]

    def assets(self, kind: str, sites: list[Site] | None = None) -> Iterator[AssetRef]:
        for ref in self.config.assets():
            if ref.asset.kind == kind and (sites is None or ref.site in sites):
                yield ref

    def kinds(self, sites: list[Site] | None = None) -> list[Kind]:
        """The kinds of the assets that report (a profile), in site-file order."""
        return [
            k
            for k in self.config.kinds_in_use()
            if k.polled and any(True for _ in self.assets(k.kind, sites))
        ]

    def having(self, kind: str, signal: str, sites: list[Site] | None = None) -> list[AssetRef]:
        """The assets of `kind` whose profile reports `signal`."""
        out = []
        for ref in self.assets(kind, sites):
            profile = self.config.profiles.get(ref.asset.profile or "")
            if profile is not None and any(s.name == signal for s in profile.signals):
                out.append(ref)
        return out

    def signals(self, kind: str, sites: list[Site] | None = None) -> list[Signal]:
        """Every number or state the assets of `kind` report, in profile order, with the
        unit and role of its first profile (strings have no trend: left out)."""
        out: dict[str, Signal] = {}
        for ref in self.assets(kind, sites):
            profile = self.config.profiles.get(ref.asset.profile or "")
            roles = self.config.roles_of(ref.asset)
            for s in profile.signals if profile else []:
                if s.name in out or str(s.type) == "string":
                    continue
                state = str(s.type) in ("bool", "bit")
                role = roles.get(s.name)
                out[s.name] = Signal(
                    s.name, s.description, s.unit, state, role.value if role else ""
                )
        return list(out.values())

    def out_of_service(self, sites: list[Site] | None = None) -> list[AssetRef]:
        return [
            ref
            for ref in self.config.assets()
            if ref.asset.status is AssetStatus.OUT_OF_SERVICE
            and (sites is None or ref.site in sites)
        ]


@dataclass(frozen=True)
class Signal:
    name: str
    description: str
    unit: str
    state: bool  # a boolean: a state timeline, not a trend
    role: str

    @property
    def title(self) -> str:
        words = self.description or self.name.replace("_", " ")
        return words[:1].upper() + words[1:]


def stations_with(site: Site, kind: str) -> list[Station]:
    return [st for st in site.stations if any(a.kind == kind for a in st.assets)]


def label(ref: AssetRef) -> str:
    """The series name the boards' aliases give an asset: `$tag_station/$tag_asset`."""
    return f"{ref.station.id}/{ref.asset.id}"


def display(ref: AssetRef) -> str:
    name = f"{ref.station.id}/{ref.asset.id}"
    if ref.asset.name:
        name += f" {ref.asset.name}"
    return name + status_suffix(ref.asset)


def status_suffix(asset: Asset) -> str:
    if asset.status is AssetStatus.OUT_OF_SERVICE:
        return " (out of service)"
    if asset.status is AssetStatus.STANDBY:
        return " (standby)"
    return ""


def _limit_levels(limits: dict[str, float | None]) -> list[Level]:
    colours = {"high_high": "red", "high": "orange", "low": "orange", "low_low": "red"}
    return [
        Level(value, colours[name], name.startswith("high"), f"limit.{name}")
        for name, value in limits.items()
        if value is not None
    ]


def _rule_level(bound: Bound) -> tuple[str, Level] | None:
    rule = bound.rule
    colour = PRIORITY_COLOURS[rule.priority.value]
    if isinstance(rule, ThresholdRule) and bound.level is not None:
        return rule.signal, Level(bound.level, colour, rule.above is not None, bound.id)
    when = bound.when.value if isinstance(bound.when, ast.Expr) else bound.when
    if isinstance(rule, ConditionRule) and isinstance(when, ast.Compare):
        cmp = when
        if (
            len(cmp.ops) == 1
            and isinstance(cmp.left, ast.Name)
            and isinstance(cmp.comparators[0], ast.Constant)
            and isinstance(cmp.comparators[0].value, int | float)
        ):
            above = isinstance(cmp.ops[0], ast.Gt | ast.GtE)
            value = float(cmp.comparators[0].value)
            return cmp.left.id, Level(value, colour, above, bound.id)
    return None


def priority_rank(priority: str) -> int:
    return _RANK.get(priority, len(_RANK))
