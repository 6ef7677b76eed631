"""Check each reading of a batch against the site model before it is written.

A reading is refused, with a reason, when its gateway, asset or signal is unknown,
when its value has the wrong type for its signal, or when its timestamp is absurdly far
from now. The rest of the batch is still written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.logs import preview
from facility.profile import ModbusProfile, MqttProfile
from facility.site import Asset, AssetKind
from facility.wire import STATUS_SIGNALS, BadRow, Batch, Reading
from ingest.lineproto import DEVICE_STATUS, GATEWAY_HEALTH

MAX_FUTURE_MS = 5 * 60_000  # a gateway clock a few minutes fast is tolerated
MAX_PAST_MS = 400 * 86_400_000  # a backlog may be old, but not older than the outbox allows


class Accepted(NamedTuple):
    # A NamedTuple, not a frozen dataclass: one is made per reading, and a frozen
    # dataclass costs several times as much to build.
    reading: Reading
    measurement: str
    asset_kind: str


@dataclass
class Verdict:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[tuple[Any, str]] = field(default_factory=list)  # (wire row, reason)


@dataclass(frozen=True)
class _StationRules:
    """What a station's readings are checked against, worked out once per site model."""

    assets: dict[str, Asset]
    # (asset, signal) -> (measurement, asset kind, the exact value types that pass)
    values: dict[tuple[str, str], tuple[str, str, frozenset[type]]]
    status: dict[str, str]  # asset -> its kind, for device status readings


_STATUS_NAMES = frozenset(STATUS_SIGNALS)
_GATEWAY = AssetKind.GATEWAY.value  # the measurement of a reading is its asset's kind
# Accepted(...) goes through a generated Python __new__; building the tuple directly
# gives the same object at about half the cost, once per reading.
_accepted = tuple.__new__


@dataclass
class Validator:
    """Checks batches against `config`. What each station's readings are checked against
    is worked out on its first batch and kept until `config` is replaced by another
    site model (the service's reload does that); a model is not edited in place."""

    config: SiteConfig
    now_ms: float = 0.0  # 0: the wall clock
    _rules: dict[tuple[str, str], _StationRules] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _rules_of: SiteConfig | None = field(default=None, init=False, repr=False, compare=False)

    def check(self, batch: Batch, bad_rows: Sequence[BadRow] = ()) -> Verdict:
        verdict = Verdict(rejected=[(b.raw, f"row {b.position}: {b.reason}") for b in bad_rows])
        rules = self._station_rules(batch.site, batch.station)
        if rules is None:
            verdict.rejected += [
                (r.row(), f"unknown gateway {batch.site}/{batch.station}") for r in batch.readings
            ]
            return verdict
        now = self.now_ms or now_ms()
        earliest, latest = now - MAX_PAST_MS, now + MAX_FUTURE_MS
        values, status = rules.values, rules.status
        accepted, rejected = verdict.accepted, verdict.rejected
        for reading in batch.readings:
            # The common cases, decided by table lookups and exact types; whatever does
            # not pass them takes the full path, which accepts the same readings and
            # words the reason for the others.
            if earliest <= reading.ts_ms <= latest:
                kind = reading.kind
                if kind == "v":
                    rule = values.get((reading.asset, reading.signal))
                    if rule is not None:
                        value = reading.value
                        if type(value) in rule[2] or (value is None and reading.quality == "b"):
                            accepted.append(_accepted(Accepted, (reading, rule[0], rule[1])))
                            continue
                elif kind == "h":
                    accepted.append(_accepted(Accepted, (reading, GATEWAY_HEALTH, _GATEWAY)))
                    continue
                elif kind == "s":
                    asset_kind = status.get(reading.asset)
                    if asset_kind is not None and reading.signal in _STATUS_NAMES:
                        accepted.append(_accepted(Accepted, (reading, DEVICE_STATUS, asset_kind)))
                        continue
            reason = self._reason(reading, rules.assets, now)
            if reason:
                rejected.append((reading.row(), reason))
            else:
                accepted.append(self._accept(reading, rules.assets))
        return verdict

    def _station_rules(self, site: str, station: str) -> _StationRules | None:
        if self._rules_of is not self.config:  # a new site model (reload): start over
            self._rules.clear()
            self._rules_of = self.config
        key = (site, station)
        rules = self._rules.get(key)
        if rules is None:
            rules = self._build_rules(site, station)
            # Unknown gateways are not kept: their names come from topics anyone may
            # publish to, and would grow the table without bound.
            if rules is not None:
                self._rules[key] = rules
        return rules

    def _build_rules(self, site: str, station_id: str) -> _StationRules | None:
        try:
            station = self.config.site(site).station(station_id)
        except KeyError:
            return None
        assets = {a.id: a for a in station.assets}
        values: dict[tuple[str, str], tuple[str, str, frozenset[type]]] = {}
        for asset in assets.values():
            profile = self.config.profiles.get(asset.profile or "")
            if profile is None:
                continue
            kind = asset.kind
            for signal in profile.signals:
                types = frozenset(_expected_type(profile, signal.name))
                values.setdefault((asset.id, signal.name), (kind, kind, types))
        status = {a.id: a.kind for a in assets.values()}
        return _StationRules(assets, values, status)

    def _accept(self, reading: Reading, assets: dict[str, Asset]) -> Accepted:
        if reading.kind == "s":
            return Accepted(reading, DEVICE_STATUS, assets[reading.asset].kind)
        if reading.kind == "h":
            return Accepted(reading, GATEWAY_HEALTH, _GATEWAY)
        kind = assets[reading.asset].kind
        return Accepted(reading, kind, kind)

    def _reason(self, reading: Reading, assets: dict[str, Asset], now: float) -> str:
        if reading.ts_ms > now + MAX_FUTURE_MS:
            return f"timestamp {reading.ts_ms} is in the future (gateway clock wrong?)"
        if reading.ts_ms < now - MAX_PAST_MS:
            return f"timestamp {reading.ts_ms} is more than 400 days old"
        if reading.kind == "h":
            return ""  # the gateway's own health: any name it reports is fine
        asset = assets.get(reading.asset)
        if asset is None:
            return f"unknown asset {preview(reading.asset)}"
        if reading.kind == "s":
            return (
                ""
                if reading.signal in STATUS_SIGNALS
                else f"unknown status signal {preview(reading.signal)}"
            )
        return self._value_reason(reading, asset)

    def _value_reason(self, reading: Reading, asset: Asset) -> str:
        profile = self.config.profiles.get(asset.profile or "")
        if profile is None:
            return f"asset {asset.id!r} has no device profile"
        signal = next((s for s in profile.signals if s.name == reading.signal), None)
        if signal is None:
            return f"profile {profile.profile!r} has no signal {preview(reading.signal)}"
        if reading.value is None:
            return "" if reading.quality == "b" else "null value with good quality"
        expected = _expected_type(profile, reading.signal)
        if not isinstance(reading.value, expected) or (
            isinstance(reading.value, bool) and bool not in expected
        ):
            names = "/".join(t.__name__ for t in expected)
            return f"{reading.signal}: {type(reading.value).__name__} where {names} is expected"
        return ""


def _expected_type(profile: ModbusProfile | MqttProfile, name: str) -> tuple[type, ...]:
    signal = next(s for s in profile.signals if s.name == name)
    kind = str(signal.type)
    if kind in ("bool", "bit"):
        return (bool,)
    if kind == "string":
        return (str,)
    return (int, float)  # numbers; scaled integers arrive as floats
