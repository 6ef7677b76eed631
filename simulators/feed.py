"""Record a feed to a file and replay it: how a tester reproduces a field incident.

Format (documented in docs/simulators.md): JSON Lines, UTF-8, one record per line.
The first line is a header; then records in time order:

    {"format": "facility-feed", "version": 1, "start_ms": ..., "seed": ..., ...}
    {"t": 1780243200000, "k": "s", "a": "fengshou/xiba/pump_1", "v": {"flow_m3h": 301.2, ...}}
    {"t": 1780243200417, "k": "m", "a": "wanda/wanda_lot/main_gate", "topic": "event", "p": {...}}
    {"t": 1780243260000, "k": "f", "a": "fengshou/xiba/pump_1", "fault": "pump_trip", "on": true,
     "params": {...}}

k = "s": a snapshot of a polled device's signals; "m": a message an MQTT device
published; "f": a fault starting or ending (with its expected alarm, if any).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from simulators.engine import Advance, Simulation, StationKey
from simulators.faults import COMMS_FAULTS, FaultEvent, comms_fault
from simulators.modbus_server import UnitFault
from simulators.physics.common import Value
from simulators.physics.parking import DeviceMessage
from simulators.scenario import Fault, FaultKind
from simulators.world import AssetKey

FORMAT = "facility-feed"
VERSION = 1


class FeedError(ValueError):
    """A feed file that cannot be replayed, with the line that is wrong."""


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


@dataclass
class FeedWriter:
    out: IO[str]

    def header(self, **fields: Any) -> None:
        self.out.write(_dumps({"format": FORMAT, "version": VERSION, **fields}) + "\n")

    def snapshot(self, t_ms: int, key: AssetKey, values: dict[str, Value]) -> None:
        self.out.write(_dumps({"t": t_ms, "k": "s", "a": "/".join(key), "v": values}) + "\n")

    def message(self, station: StationKey, msg: DeviceMessage) -> None:
        path = "/".join((*station, msg.asset))
        self.out.write(
            _dumps({"t": msg.t_ms, "k": "m", "a": path, "topic": msg.topic, "p": msg.payload})
            + "\n"
        )

    def fault(self, event: FaultEvent) -> None:
        f = event.fault
        record: dict[str, Any] = {
            "t": event.t_ms,
            "k": "f",
            "a": f.target,
            "fault": f.kind.value,
            "on": event.active,
            "params": f.params,
        }
        if f.expect is not None:
            record["expect"] = f.expect.model_dump(by_alias=False)
        self.out.write(_dumps(record) + "\n")


def record(sim: Simulation, out: IO[str], *, duration_s: float, sample_s: float = 10.0) -> int:
    """Run the simulation for duration_s, writing a feed; return the number of records."""
    writer = FeedWriter(out)
    writer.header(
        start_ms=sim.start_ms,
        seed=sim.world.seed,
        scenario=sim.scenario.scenario,
        step_s=sim.step_s,
        sample_s=sample_s,
    )
    polled = [ref.key for ref in sim.config.assets() if ref.asset.modbus is not None]
    end = sim.start_ms + int(duration_s * 1000)
    sample_ms = int(sample_s * 1000)
    count = 0
    t = sim.start_ms
    while t <= end:
        step = sim.advance_to(t)
        timeline: list[tuple[int, int, FaultEvent | tuple[StationKey, DeviceMessage]]] = [
            (e.t_ms, 0, e) for e in step.faults
        ]
        timeline += [(m.t_ms, 1, (station, m)) for station, m in step.messages]
        for _, _, item in sorted(timeline, key=lambda x: (x[0], x[1])):
            if isinstance(item, FaultEvent):
                writer.fault(item)
            else:
                writer.message(*item)
        for key in polled:
            writer.snapshot(sim.t_ms, key, sim.values(key))
        count += len(step.faults) + len(step.messages) + len(polled)
        t += sample_ms
    return count


def read_feed(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every record; the header is checked and skipped."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FeedError(f"{path}:{n}: not JSON: {exc.msg}") from exc
            if n == 1:
                if rec.get("format") != FORMAT or rec.get("version") != VERSION:
                    raise FeedError(f"{path}:1: not a {FORMAT} v{VERSION} file")
                continue
            if rec.get("k") not in ("s", "m", "f") or not isinstance(rec.get("t"), int):
                raise FeedError(f"{path}:{n}: record needs k in s/m/f and an integer t")
            yield n, rec


def feed_header(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        header: dict[str, Any] = json.loads(f.readline())
    return header


@dataclass
class Replay:
    """Plays a recorded feed back as a source: the same interface as a Simulation."""

    path: Path
    t_ms: int = 0
    comms: dict[AssetKey, UnitFault] = field(default_factory=dict)
    links_down: set[AssetKey] = field(default_factory=set)
    _latest: dict[AssetKey, dict[str, Value]] = field(default_factory=dict)
    _records: Iterator[tuple[int, dict[str, Any]]] | None = None
    _pending: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.t_ms = int(feed_header(self.path)["start_ms"])
        self._records = read_feed(self.path)

    @property
    def finished(self) -> bool:
        return self._records is None and self._pending is None

    def _next(self) -> dict[str, Any] | None:
        if self._pending is None and self._records is not None:
            item = next(self._records, None)
            if item is None:
                self._records = None
            else:
                self._pending = item[1]
        return self._pending

    def advance_to(self, t_ms: int) -> Advance:
        out = Advance()
        while (rec := self._next()) is not None and rec["t"] <= t_ms:
            self._pending = None
            key = _key(rec["a"])
            if rec["k"] == "s":
                self._latest[key] = rec["v"]
            elif rec["k"] == "m":
                msg = DeviceMessage(rec["t"], key[2], rec["topic"], rec["p"])
                out.messages.append((key[:2], msg))
            else:
                out.faults.append(self._fault(rec, key))
        self.t_ms = max(self.t_ms, t_ms)
        return out

    def _fault(self, rec: dict[str, Any], key: AssetKey) -> FaultEvent:
        fault = Fault.model_validate(
            {"kind": rec["fault"], "target": rec["a"], "at": 0, "params": rec.get("params", {})}
        )
        on = bool(rec["on"])
        if fault.kind is FaultKind.GATEWAY_LINK_DOWN:
            (self.links_down.add if on else self.links_down.discard)(key)
        elif fault.kind in COMMS_FAULTS:
            if on:
                self.comms[key] = comms_fault(fault)
            else:
                self.comms.pop(key, None)
        return FaultEvent(rec["t"], fault, on)

    def values(self, key: AssetKey) -> dict[str, Value]:
        return dict(self._latest.get(key, {}))


def _key(path: str) -> AssetKey:
    site, station, asset = path.split("/")
    return site, station, asset
