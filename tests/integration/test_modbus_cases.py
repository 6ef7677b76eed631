"""Modbus regression cases as data: tests/testcases/modbus/<case>/ (format: the README
there). Each case's registers are served by the simulator's real pymodbus server over
Modbus TCP, exactly as listed (a strict device refuses any read touching a register
the list lacks, with exception 2); the gateway's real bus worker plans, reads, splits
and decodes them through the case's profile, and its readings must equal the case's
expected values: word orders, scale and offset, signs, counters, bits, strings, gaps.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from facility.codec import DataType
from facility.config import check_profile
from facility.profile import ModbusProfile, ModbusSignal, Table
from facility.registers import RegisterImage, Value
from facility.site import Bus, Transport
from facility.sourcemap import load_yaml, validate
from facility.wire import Reading
from gateway.modbus.poller import BusWorker, build_device
from simulators.modbus_server import BusServer

CASES_DIR = Path(__file__).resolve().parents[1] / "testcases" / "modbus"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())
UNIT_ID = 1
TABLE_KEYS = {"holding": Table.HOLDING, "input": Table.INPUT,
              "coil": Table.COIL, "discrete": Table.DISCRETE}  # fmt: skip


@dataclass(frozen=True)
class Served:
    """What the device holds: protocol address -> word (or 0/1) per table."""

    words: dict[Table, dict[int, int]]
    strict: bool
    max_gap: int

    def image(self) -> RegisterImage:
        """The words as a register image: one uint16 (or bool) signal a served address,
        so a strict server refuses exactly the addresses the case leaves out."""
        signals = [
            ModbusSignal(
                name=f"{table.value}_{address}",
                table=table,
                address=address,
                type=DataType.BOOL if table.is_bit_table else DataType.UINT16,
            )
            for table, words in self.words.items()
            for address in words
        ]
        image = RegisterImage(ModbusProfile(profile="served", protocol="modbus", signals=signals))
        for table, words in self.words.items():
            start = image.spans[table].start
            for address, word in words.items():
                image.tables[table][address - start] = word
        return image


def load_profile(case: Path) -> ModbusProfile:
    doc = load_yaml(case / "profile.yaml")
    profile = validate(ModbusProfile, doc)
    issues = check_profile(profile, doc)
    assert not issues, f"{case.name}/profile.yaml: " + "; ".join(map(str, issues))
    return profile


def load_served(case: Path) -> Served:
    doc: dict[str, Any] = yaml.safe_load((case / "registers.yaml").read_text(encoding="utf-8"))
    unknown = set(doc) - {*TABLE_KEYS, "strict", "max_gap"}
    assert not unknown, f"{case.name}/registers.yaml: unknown keys {sorted(unknown)}"
    words: dict[Table, dict[int, int]] = {}
    for key, table in TABLE_KEYS.items():
        runs: dict[int, list[int] | int] = doc.get(key) or {}
        for start, run in runs.items():
            values = run if isinstance(run, list) else [run]
            for i, word in enumerate(values):
                limit = 1 if table.is_bit_table else 0xFFFF
                assert isinstance(word, int) and 0 <= word <= limit, (case.name, key, start, i)
                words.setdefault(table, {})[start + i] = word
    return Served(words, bool(doc.get("strict", False)), int(doc.get("max_gap", 8)))


def as_served(signal: ModbusSignal, expected: Value) -> Value:
    """A float32's expected value as the device can hold it: rounded to float32."""
    if signal.type is DataType.FLOAT32 and signal.scale == 1.0 and signal.offset == 0.0:
        return float(struct.unpack(">f", struct.pack(">f", float(expected)))[0])
    return expected


def same(signal: ModbusSignal, got: Value | None, expected: Value) -> bool:
    if type(got) is not type(expected) and not (
        isinstance(got, float) and type(expected) is int and signal.type is not DataType.BIT
    ):
        return False  # True is not 1, a string is not a number
    if isinstance(got, float) and (signal.scale != 1.0 or signal.offset != 0.0):
        # raw × scale + offset in binary floating point: 144974 × 0.1 is 14497.400000000001
        return math.isclose(got, float(expected), rel_tol=1e-12, abs_tol=1e-12)
    return got == as_served(signal, expected)


async def poll_case(profile: ModbusProfile, served: Served) -> tuple[list[Reading], Any, int]:
    """Serve the registers over real Modbus TCP, poll twice with the gateway's worker
    (the first poll may learn a plan); the second poll's readings, the device, and the
    requests the second poll took."""
    bus = Bus(id="case", transport=Transport.TCP, port=0, timeout_s=2.0, max_gap=served.max_gap)
    server = BusServer(bus, {UNIT_ID: served.image()}, strict={UNIT_ID} if served.strict else set())
    await server.start()
    await server.push(UNIT_ID)
    try:
        device = build_device("device", UNIT_ID, profile, 1.0, served.max_gap)
        got: list[Reading] = []
        worker = BusWorker(bus.model_copy(update={"port": server.port}), [device], got.extend)
        try:
            await worker.poll(device)
            first, before = len(got), worker.requests
            await worker.poll(device)
            requests = worker.requests - before
        finally:
            worker.close()
    finally:
        await server.stop()
    return got[first:], device, requests


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_modbus_case(case: Path) -> None:
    profile = load_profile(case)
    served = load_served(case)
    expected: dict[str, Any] = yaml.safe_load((case / "expected.yaml").read_text("utf-8"))
    unknown = set(expected) - {"readings", "refused", "bad", "requests"}
    assert not unknown, f"{case.name}/expected.yaml: unknown keys {sorted(unknown)}"
    wanted: dict[str, Value] = expected.get("readings") or {}
    refused, bad = set(expected.get("refused") or []), set(expected.get("bad") or [])
    names = {s.name for s in profile.signals}
    assert names == set(wanted) | refused | bad, f"{case.name}: expect every signal once"

    readings, device, requests = await poll_case(profile, served)

    assert device.status.ok, f"{case.name}: {device.status.error}"
    assert device.refused == refused, case.name
    values = {r.signal: r for r in readings if r.kind == "v"}
    assert set(values) == set(wanted) | bad, f"{case.name}: read {sorted(values)}"
    wrong = [
        f"{name}: got {values[name].value!r}, expected {as_served(profile.signal(name), value)!r}"
        for name, value in wanted.items()
        if values[name].quality != "g" or not same(profile.signal(name), values[name].value, value)
    ]
    assert not wrong, f"case {case.name}:\n" + "\n".join(wrong)
    for name in bad:
        assert (values[name].value, values[name].quality) == (None, "b"), (case.name, name)
    if "requests" in expected:  # the plan the device answers, learned or as planned
        assert requests == len(device.plan) == expected["requests"], case.name


def test_there_are_modbus_cases_of_each_kind() -> None:
    """The cases pin the problems the issue names; a folder lacking a file fails here
    rather than being skipped."""
    for case in CASES:
        for name in ("profile.yaml", "registers.yaml", "expected.yaml"):
            assert (case / name).is_file(), f"{case.name}: no {name}"
    assert len(CASES) >= 6
