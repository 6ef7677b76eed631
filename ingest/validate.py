"""Check each reading of a batch against the site model before it is written.

A reading is refused, with a reason, when its gateway, asset or signal is unknown,
when its value has the wrong type for its signal, or when its timestamp is absurdly far
from now. The rest of the batch is still written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from facility.config import SiteConfig
from facility.profile import ModbusProfile, MqttProfile
from facility.site import Asset, AssetKind
from facility.wire import STATUS_SIGNALS, BadRow, Batch, Reading

MAX_FUTURE_MS = 5 * 60_000  # a gateway clock a few minutes fast is tolerated
MAX_PAST_MS = 400 * 86_400_000  # a backlog may be old, but not older than the outbox allows


@dataclass(frozen=True)
class Accepted:
    reading: Reading
    measurement: str
    asset_kind: str


@dataclass
class Verdict:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[tuple[Any, str]] = field(default_factory=list)  # (wire row, reason)


@dataclass
class Validator:
    config: SiteConfig
    now_ms: float = 0.0  # 0: the wall clock

    def check(self, batch: Batch, bad_rows: Sequence[BadRow] = ()) -> Verdict:
        verdict = Verdict(rejected=[(b.raw, f"row {b.position}: {b.reason}") for b in bad_rows])
        try:
            station = self.config.site(batch.site).station(batch.station)
        except KeyError:
            verdict.rejected += [
                (r.row(), f"unknown gateway {batch.site}/{batch.station}") for r in batch.readings
            ]
            return verdict
        assets = {a.id: a for a in station.assets}
        now = self.now_ms or time.time() * 1000
        for reading in batch.readings:
            reason = self._reason(reading, assets, now)
            if reason:
                verdict.rejected.append((reading.row(), reason))
            else:
                verdict.accepted.append(self._accept(reading, assets))
        return verdict

    def _accept(self, reading: Reading, assets: dict[str, Asset]) -> Accepted:
        if reading.kind == "s":
            return Accepted(reading, "device_status", assets[reading.asset].kind.value)
        if reading.kind == "h":
            return Accepted(reading, "gateway_health", AssetKind.GATEWAY.value)
        kind = assets[reading.asset].kind.value
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
            return f"unknown asset {reading.asset!r}"
        if reading.kind == "s":
            return (
                ""
                if reading.signal in STATUS_SIGNALS
                else f"unknown status signal {reading.signal!r}"
            )
        return self._value_reason(reading, asset)

    def _value_reason(self, reading: Reading, asset: Asset) -> str:
        profile = self.config.profiles.get(asset.profile or "")
        if profile is None:
            return f"asset {asset.id!r} has no device profile"
        signal = next((s for s in profile.signals if s.name == reading.signal), None)
        if signal is None:
            return f"profile {profile.profile!r} has no signal {reading.signal!r}"
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
