"""Load and check a site configuration: site files plus device profiles.

A site configuration is a folder: every `*.yaml` in it is one site, an optional
`profiles/` subfolder adds or overrides device profiles next to the built-in ones in
`facility/profiles/`, and an optional `kinds/` subfolder adds or overrides asset kinds
next to the built-in ones in `facility/kinds/`. Every problem found is reported at
once, each with file, line and field.
"""

from __future__ import annotations

import string
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TypeVar

from facility.codec import DataType
from facility.kind import REPORT_UNITS, Kind, Role, report_factor
from facility.profile import (
    MAX_REGISTER_ADDRESS,
    ModbusProfile,
    ModbusSignal,
    MqttProfile,
    MqttSignal,
)
from facility.simspec import SignalSim, spec_problems
from facility.site import Asset, AssetKind, AssetRef, Site, Station, by_id
from facility.sourcemap import ConfigError, ConfigIssue, SourceDoc, load_yaml, validate

BUILTIN_PROFILES = Path(__file__).parent / "profiles"
BUILTIN_KINDS = Path(__file__).parent / "kinds"
Profile = ModbusProfile | MqttProfile
_Named = TypeVar("_Named", Kind, ModbusProfile | MqttProfile)


@dataclass
class SiteConfig:
    """A validated configuration: sites and the profiles their assets use."""

    root: Path
    sites: list[Site]
    profiles: dict[str, Profile]
    sources: dict[str, SourceDoc] = field(default_factory=dict)
    profile_sources: dict[str, SourceDoc] = field(default_factory=dict)
    kinds: dict[str, Kind] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.kinds:  # built in code (tests, benchmarks): the built-in kinds
            self.kinds = builtin_kinds()

    def assets(self) -> Iterator[AssetRef]:
        for site in self.sites:
            for station in site.stations:
                for asset in station.assets:
                    yield AssetRef(site=site, station=station, asset=asset)

    def site(self, site_id: str) -> Site:
        return by_id(self.sites, site_id)

    def profile_of(self, ref: AssetRef) -> Profile:
        if ref.asset.profile is None:
            raise KeyError(f"{ref.path} has no device profile")
        return self.profiles[ref.asset.profile]

    def kind_of(self, asset: Asset) -> Kind:
        return self.kinds[asset.kind]

    def roles_of(self, asset: Asset) -> dict[str, Role]:
        """signal → role of one asset: the profile's `role:` where it gives one, else
        the kind's role for a signal of that name."""
        profile = self.profiles.get(asset.profile or "")
        if profile is None:
            return {}
        by_kind = self.kinds[asset.kind].roles if asset.kind in self.kinds else {}
        out: dict[str, Role] = {}
        for s in profile.signals:
            role = s.role or by_kind.get(s.name)
            if role is not None:
                out[s.name] = role
        return out

    def signals_with(self, asset: Asset, role: Role) -> list[str]:
        return [name for name, r in self.roles_of(asset).items() if r is role]

    def unit_of(self, asset: Asset, signal: str) -> str:
        profile = self.profiles.get(asset.profile or "")
        for s in profile.signals if profile else []:
            if s.name == signal:
                return s.unit
        return ""

    def kinds_in_use(self) -> list[Kind]:
        """The kinds of the configured assets, in the order they first appear."""
        seen: dict[str, Kind] = {}
        for ref in self.assets():
            seen.setdefault(ref.asset.kind, self.kinds[ref.asset.kind])
        return list(seen.values())


def builtin_kinds() -> dict[str, Kind]:
    return dict(_builtin_kinds())


@cache
def _builtin_kinds() -> dict[str, Kind]:
    issues: list[ConfigIssue] = []
    kinds, _ = _load_kinds([BUILTIN_KINDS], issues)
    if issues:
        raise ConfigError(issues)
    return kinds


def load_site_config(path: Path) -> SiteConfig:
    """Load a site folder (or one site file); raise ConfigError listing every issue."""
    path = Path(path)
    issues: list[ConfigIssue] = []
    profile_dirs = [BUILTIN_PROFILES]
    kind_dirs = [BUILTIN_KINDS]
    if path.is_dir():
        site_files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
        if (path / "profiles").is_dir():
            profile_dirs.append(path / "profiles")
        if (path / "kinds").is_dir():
            kind_dirs.append(path / "kinds")
    elif path.is_file():
        site_files = [path]
    else:
        raise ConfigError([ConfigIssue(str(path), 0, "", "no such file or folder")])
    if not site_files:
        raise ConfigError([ConfigIssue(str(path), 0, "", "no site files (*.yaml) in folder")])

    profiles, profile_sources = _load_profiles(profile_dirs, issues)
    kinds, _ = _load_kinds(kind_dirs, issues)
    sites: list[Site] = []
    sources: dict[str, SourceDoc] = {}
    for file in site_files:
        try:
            doc = load_yaml(file)
            site = validate(Site, doc)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        if site.id in sources:
            issues.append(
                doc.issue(
                    ["id"], f"duplicate site id {site.id!r} (also in {sources[site.id].file})"
                )
            )
            continue
        sites.append(site)
        sources[site.id] = doc
    for site in sites:
        issues.extend(check_site(site, sources[site.id], profiles, kinds))
    for name, doc in profile_sources.items():
        issues.extend(check_profile(profiles[name], doc))
    if issues:
        raise ConfigError(issues)
    return SiteConfig(
        root=path,
        sites=sites,
        profiles=profiles,
        sources=sources,
        profile_sources=profile_sources,
        kinds=kinds,
    )


def _load_kinds(
    dirs: list[Path], issues: list[ConfigIssue]
) -> tuple[dict[str, Kind], dict[str, SourceDoc]]:
    """Kinds by id; a site folder's kind replaces a built-in one of the same id."""
    return _load_named(dirs, issues, "kind", lambda doc: validate(Kind, doc))


def _load_profiles(
    dirs: list[Path], issues: list[ConfigIssue]
) -> tuple[dict[str, Profile], dict[str, SourceDoc]]:
    return _load_named(dirs, issues, "profile", _validate_profile)


def _load_named(
    dirs: list[Path],
    issues: list[ConfigIssue],
    id_field: str,
    parse: Callable[[SourceDoc], _Named],
) -> tuple[dict[str, _Named], dict[str, SourceDoc]]:
    """Documents by their `id_field`; a later folder's document overrides an earlier one's
    (a site's own over a built-in), while two of the same id in one folder is an issue."""
    named: dict[str, _Named] = {}
    sources: dict[str, SourceDoc] = {}
    for directory in dirs:
        local: dict[str, SourceDoc] = {}
        for file in sorted(directory.glob("*.yaml")):
            try:
                doc = load_yaml(file)
                item = parse(doc)
            except ConfigError as exc:
                issues.extend(exc.issues)
                continue
            name: str = getattr(item, id_field)
            if name in local:
                issues.append(
                    doc.issue(
                        [id_field],
                        f"duplicate {id_field} {name!r} (also in {local[name].file})",
                    )
                )
                continue
            local[name] = doc
            named[name] = item
            sources[name] = doc
    return named, sources


def _validate_profile(doc: SourceDoc) -> Profile:
    protocol = doc.data.get("protocol") if isinstance(doc.data, dict) else None
    if protocol == "modbus":
        return validate(ModbusProfile, doc)
    if protocol == "mqtt":
        return validate(MqttProfile, doc)
    raise ConfigError(
        [doc.issue(["protocol"], f"protocol must be modbus or mqtt, not {protocol!r}")]
    )


def check_profile(profile: Profile, doc: SourceDoc) -> list[ConfigIssue]:
    """Register-map checks pydantic cannot do alone: ranges, overlaps, duplicates."""
    issues: list[ConfigIssue] = []
    seen: set[str] = set()
    for i, name in enumerate(s.name for s in profile.signals):
        if name in seen:
            issues.append(doc.issue(["signals", i, "name"], f"duplicate signal {name!r}"))
        seen.add(name)
    signals: list[ModbusSignal | MqttSignal] = list(profile.signals)
    for i, signal in enumerate(signals):
        if signal.role is not None and report_factor(signal.role, signal.unit) is None:
            issues.append(
                doc.issue(["signals", i, "unit"], _unit_message(signal.role, signal.unit))
            )
    types = {s.name: str(s.type) for s in profile.signals}
    specs: list[tuple[str, SignalSim | None]] = [(s.name, s.simulate) for s in profile.signals]
    for i, (name, spec) in enumerate(specs):
        for path, message in spec_problems({name: spec} if spec else {}, types):
            issues.append(doc.issue(["signals", i, "simulate", *path[1:]], message))
    if isinstance(profile, ModbusProfile):
        issues.extend(_check_register_map(profile, doc))
    else:
        for key, pattern in profile.topics.items():
            issues += [doc.issue(["topics", key], m) for m in topic_pattern_mistakes(pattern)]
    return issues


TOPIC_PLACEHOLDERS = ("site", "station", "asset")


def topic_pattern_mistakes(pattern: str) -> list[str]:
    """What is wrong with an MQTT profile's topic pattern, in words. The gateway fills
    in {site}, {station} and {asset} and subscribes to the result, then files each
    message by its exact topic: a wildcard would subscribe to many topics and match none
    of them (every message dropped, silently), and anything but a plain placeholder
    (an unknown name, {site.__class__}, {asset[0]}, {site!r}, {site:>9}) fails at start
    or puts something other than the id in the topic."""
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        return [f"topic pattern {pattern!r}: {exc} (write a literal brace as {{{{ or }}}})"]
    mistakes: list[str] = []
    literal = "".join(text for text, _, _, _ in parts)
    if "+" in literal or "#" in literal:
        mistakes.append(
            f"topic pattern {pattern!r} has an MQTT wildcard (+ or #): the gateway files "
            "messages by their exact topic, so none would match; name the topic exactly"
        )
    if "\x00" in literal or literal.startswith("$"):
        mistakes.append(f"topic pattern {pattern!r}: no NUL, and no leading '$' (broker topics)")
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TOPIC_PLACEHOLDERS or spec or conversion:
            shown = (
                "{"
                + name
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            mistakes.append(
                f"topic pattern {pattern!r}: {shown} is not a placeholder; "
                "use {site}, {station} or {asset} as they are"
            )
    return mistakes


def _check_register_map(profile: ModbusProfile, doc: SourceDoc) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    # (table, protocol address) -> (signal index, bit or None for the whole register)
    owners: dict[tuple[str, int], list[tuple[int, int | None]]] = defaultdict(list)
    for i, s in enumerate(profile.signals):
        start = profile.protocol_address(s)
        end = start + s.count - 1
        if start < 0:
            issues.append(
                doc.issue(
                    ["signals", i, "address"],
                    f"address {s.address} is below the address base {profile.base_of(s)}",
                )
            )
            continue
        if end > MAX_REGISTER_ADDRESS:
            what = "string" if s.length else s.type.value
            issues.append(
                doc.issue(
                    ["signals", i, "address"],
                    f"{what} of {s.count} registers at {s.address} runs past "
                    f"the last address {MAX_REGISTER_ADDRESS}",
                )
            )
            continue
        for reg in range(start, end + 1):
            key = (s.table.value, reg)
            for j, other_bit in owners[key]:
                if s.bit is None or other_bit is None or s.bit == other_bit:
                    other = profile.signals[j]
                    issues.append(
                        doc.issue(
                            ["signals", i, "address"],
                            f"{s.name!r} overlaps {other.name!r} at "
                            f"{s.table.value} register {reg + profile.base_of(s)}",
                        )
                    )
                    break
            owners[key].append((i, s.bit))
    return issues


def _unit_message(role: Role, unit: str) -> str:
    report_unit, factors = REPORT_UNITS[role]
    return (
        f"role {role.value}: unit {unit or 'none'!r} cannot be counted in {report_unit} "
        f"(units known: {', '.join(factors)})"
    )


def check_site(
    site: Site,
    doc: SourceDoc,
    profiles: dict[str, Profile],
    kinds: dict[str, Kind] | None = None,
) -> list[ConfigIssue]:
    kinds = builtin_kinds() if kinds is None else kinds
    issues: list[ConfigIssue] = []
    station_ids: set[str] = set()
    for si, station in enumerate(site.stations):
        where: list[str | int] = ["stations", si]
        if station.id in station_ids:
            issues.append(doc.issue([*where, "id"], f"duplicate station id {station.id!r}"))
        station_ids.add(station.id)
        issues.extend(_check_station(site, station, where, doc, profiles, kinds))
    return issues


def _check_station(
    site: Site,
    station: Station,
    where: list[str | int],
    doc: SourceDoc,
    profiles: dict[str, Profile],
    kinds: dict[str, Kind],
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    bus_ids = {b.id for b in station.buses}
    asset_ids: set[str] = set()
    units: dict[tuple[str, int], str] = {}
    for ai, asset in enumerate(station.assets):
        at = [*where, "assets", ai]
        if asset.id in asset_ids:
            issues.append(
                doc.issue([*at, "id"], f"duplicate asset id {asset.id!r} in station {station.id!r}")
            )
        asset_ids.add(asset.id)
        kind = kinds.get(asset.kind)
        if kind is None:
            known = ", ".join(sorted(kinds))
            issues.append(
                doc.issue(
                    [*at, "kind"],
                    f"no asset kind {asset.kind!r} (known: {known}; a site adds its own "
                    "in kinds/*.yaml)",
                )
            )
            continue
        for rating in kind.ratings:
            if getattr(asset.ratings, rating) is None:
                issues.append(
                    doc.issue([*at, "ratings", rating], f"a {kind.kind} needs ratings.{rating}")
                )
        if not kind.polled:
            continue
        if asset.profile is None:
            issues.append(doc.issue([*at, "profile"], "required field is missing"))
            continue
        profile = profiles.get(asset.profile)
        if profile is None:
            known = ", ".join(sorted(profiles))
            issues.append(
                doc.issue([*at, "profile"], f"no device profile {asset.profile!r} (known: {known})")
            )
            continue
        issues.extend(
            _check_addressing(
                asset_at=at, asset=asset, profile=profile, doc=doc, bus_ids=bus_ids, units=units
            )
        )
        issues.extend(_check_role_units(at, kind, profile, doc))
    issues.extend(_check_control(station, where, doc))
    issues.extend(_check_device_topics(site, station, where, doc, profiles))
    return issues


def _check_device_topics(
    site: Site,
    station: Station,
    where: list[str | int],
    doc: SourceDoc,
    profiles: dict[str, Profile],
) -> list[ConfigIssue]:
    """Two MQTT routes of a station on one topic: the gateway keeps one, and the other's
    signals never arrive (a pattern without {asset} on two assets of one profile)."""
    issues: list[ConfigIssue] = []
    owners: dict[str, str] = {}
    for ai, asset in enumerate(station.assets):
        profile = profiles.get(asset.profile or "")
        if not isinstance(profile, MqttProfile):
            continue
        for key, pattern in profile.topics.items():
            if topic_pattern_mistakes(pattern):
                continue  # reported with the profile
            name = profile.topic_for(key, site.id, station.id, asset.id)
            owner = f"{asset.id} ({key})"
            if name in owners:
                issues.append(
                    doc.issue(
                        [*where, "assets", ai, "profile"],
                        f"MQTT topic {name!r} of {owner} is also {owners[name]}'s: "
                        "the gateway would drop one of them; put {asset} in the pattern",
                    )
                )
            owners.setdefault(name, owner)
    return issues


def _check_addressing(
    *,
    asset_at: list[str | int],
    asset: Asset,
    profile: Profile,
    doc: SourceDoc,
    bus_ids: set[str],
    units: dict[tuple[str, int], str],
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if isinstance(profile, ModbusProfile):
        if asset.modbus is None:
            return [
                doc.issue(
                    [*asset_at, "modbus"],
                    f"profile {profile.profile!r} is Modbus: "
                    "the asset needs modbus.bus and modbus.unit_id",
                )
            ]
        if asset.modbus.bus not in bus_ids:
            issues.append(
                doc.issue(
                    [*asset_at, "modbus", "bus"], f"no bus {asset.modbus.bus!r} in this station"
                )
            )
        key = (asset.modbus.bus, asset.modbus.unit_id)
        if key in units:
            issues.append(
                doc.issue(
                    [*asset_at, "modbus", "unit_id"],
                    f"unit id {asset.modbus.unit_id} on bus {asset.modbus.bus!r}"
                    f" is already used by {units[key]!r}",
                )
            )
        units[key] = asset.id
    elif asset.modbus is not None:
        issues.append(
            doc.issue([*asset_at, "modbus"], f"profile {profile.profile!r} is MQTT: remove modbus")
        )
    types = {s.name: str(s.type) for s in profile.signals}
    for path, message in spec_problems(dict(asset.simulate), types):
        issues.append(doc.issue([*asset_at, "simulate", *path], message))
    for signal in asset.limits:
        if signal not in {s.name for s in profile.signals}:
            issues.append(
                doc.issue(
                    [*asset_at, "limits", signal],
                    f"profile {profile.profile!r} has no signal {signal!r}",
                )
            )
    return issues


def _check_role_units(
    asset_at: list[str | int], kind: Kind, profile: Profile, doc: SourceDoc
) -> list[ConfigIssue]:
    """A role the kind gives a profile's signal must come in a unit the reports count."""
    issues = []
    for s in profile.signals:
        role = kind.roles.get(s.name)
        if s.role is None and role is not None and report_factor(role, s.unit) is None:
            issues.append(
                doc.issue(
                    [*asset_at, "kind"],
                    f"kind {kind.kind!r} gives {profile.profile}.{s.name} a role: "
                    + _unit_message(role, s.unit),
                )
            )
    return issues


def _check_control(station: Station, where: list[str | int], doc: SourceDoc) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    tanks = {a.id: a for a in station.assets if a.kind == AssetKind.TANK}
    for i, tank in enumerate(station.feeds):
        if tank not in tanks:
            issues.append(
                doc.issue([*where, "feeds", i], f"no tank {tank!r} among this station's assets")
            )
    control = station.control
    if control is None:
        return issues
    if control.lead_tank not in station.feeds:
        issues.append(
            doc.issue(
                [*where, "control", "lead_tank"], f"lead tank {control.lead_tank!r} is not in feeds"
            )
        )
    elif control.lead_tank in tanks:
        height = tanks[control.lead_tank].ratings.height_m or 0
        if control.stop_level_m >= height:
            issues.append(
                doc.issue(
                    [*where, "control", "stop_level_m"],
                    f"stop level {control.stop_level_m} m is not below the tank height {height} m",
                )
            )
    if station.static_head_m is None and any(a.kind == AssetKind.PUMP for a in station.assets):
        issues.append(
            doc.issue(
                [*where, "static_head_m"],
                "a station with pumps needs static_head_m (lift to its tanks)",
            )
        )
    return issues


def config_warnings(config: SiteConfig) -> list[ConfigIssue]:
    """What loads but will cost data later (`facility check` prints these as warnings):
    an unscaled uint64 reads as an integer, and InfluxDB's integers are int64, so every
    value of 2^63 or more would be refused at the ingest (that field alone, into the
    dead letters)."""
    warnings: list[ConfigIssue] = []
    for name, profile in sorted(config.profiles.items()):
        doc = config.profile_sources.get(name)
        if doc is None or not isinstance(profile, ModbusProfile):
            continue
        for i, s in enumerate(profile.signals):
            if s.type is DataType.UINT64 and s.scale == 1.0 and s.offset == 0.0:
                warnings.append(
                    doc.issue(
                        ["signals", i, "type"],
                        f"{s.name!r} is an unscaled uint64: values of 2^63 or more do not fit "
                        "InfluxDB's int64 and will be refused; use int64 if the device never "
                        "goes that high, or a scale (stored as a float)",
                    )
                )
    return warnings
