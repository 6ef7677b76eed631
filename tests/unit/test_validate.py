"""The ingest refuses what does not fit the site model, with a reason, and keeps it."""

from __future__ import annotations

import dataclasses
import enum
import json
import zlib
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from facility.config import SiteConfig
from facility.wire import BadRow, Batch, Reading, WireError, decode_batch, encode_rows, read_row
from ingest.deadletters import DeadLetters
from ingest.validate import Accepted, Validator

NOW = 1_780_264_800_000


def batch(*readings: Reading, site: str = "fengshou", station: str = "xiba") -> Batch:
    return Batch(site, station, boot=1, seq=1, lane="live", sent_ms=NOW, readings=readings)


def test_good_readings_get_their_measurement(demo_config: SiteConfig) -> None:
    verdict = Validator(demo_config, now_ms=NOW).check(
        batch(
            Reading("pump_1", "flow_m3h", NOW, 301.5),
            Reading("pump_1", "running", NOW, True),
            Reading("tank_no4", "level_m", NOW, 3.2),
            Reading("pump_2", "comm_ok", NOW, False, "g", "s"),
            Reading("gateway", "rss_mb", NOW, 48.0, "g", "h"),
            Reading("pump_3", "flow_m3h", NOW, None, "b"),
        ),
        [],
    )
    assert verdict.rejected == []
    assert [a.measurement for a in verdict.accepted] == [
        "pump",
        "pump",
        "tank",
        "device_status",
        "gateway_health",
        "pump",
    ]


def test_each_refusal_says_why(demo_config: SiteConfig) -> None:
    bad = [
        (Reading("pump_9", "flow_m3h", NOW, 1.0), "unknown asset 'pump_9'"),
        (Reading("pump_1", "flow_gpm", NOW, 1.0), "no signal 'flow_gpm'"),
        (Reading("pump_1", "running", NOW, 1.0), "float where bool is expected"),
        (Reading("pump_1", "flow_m3h", NOW, "lots"), "str where int/float is expected"),
        (Reading("pump_1", "flow_m3h", NOW, True), "bool where int/float is expected"),
        (Reading("pump_1", "flow_m3h", NOW + 3_600_000, 1.0), "in the future"),
        (Reading("pump_1", "flow_m3h", 0, 1.0), "more than 400 days old"),
        (Reading("pump_1", "flow_m3h", NOW, None), "null value with good quality"),
        (Reading("pump_1", "voltage", NOW, 1, "g", "s"), "unknown status signal"),
    ]
    verdict = Validator(demo_config, now_ms=NOW).check(
        batch(*(r for r, _ in bad)), [BadRow(7, "row is not a list of 6 items", "junk")]
    )
    assert not verdict.accepted
    reasons = [why for _, why in verdict.rejected]
    assert reasons[0] == "row 7: row is not a list of 6 items"
    for (reading, expected), (refused, why) in zip(bad, verdict.rejected[1:], strict=True):
        assert refused == reading.row() and expected in why


def test_an_unknown_gateway_refuses_the_whole_batch(demo_config: SiteConfig) -> None:
    verdict = Validator(demo_config, now_ms=NOW).check(
        batch(Reading("pump_1", "flow_m3h", NOW, 1.0), station="atlantis"), []
    )
    assert verdict.rejected[0][1] == "unknown gateway fengshou/atlantis"


def test_dead_letters_keep_the_row_the_line_the_batch_and_the_reason(tmp_path: Path) -> None:
    store = DeadLetters(tmp_path / "dead.sqlite")
    store.add_rows(
        "fengshou",
        "xiba",
        [(Reading("pump_9", "x", NOW, 1.5).row(), "unknown asset"), ("junk", "row 3: not a list")],
    )
    store.add_lines("fengshou", "xiba", [("pump,asset=p x=1i 5", "field type conflict")])
    store.add_batch("wanda", "gate_east", b"\x00not zlib", "not zlib-compressed JSON")
    store.close()
    reopened = DeadLetters(tmp_path / "dead.sqlite")
    assert reopened.count() == 4
    batch_letter, line, junk, row = reopened.latest()
    assert row.row() == ["v", "pump_9", "x", NOW, 1.5, "g"] and row.reason == "unknown asset"
    assert junk.row() == "junk" and junk.site == "fengshou"
    assert line.body == "pump,asset=p x=1i 5" and line.kind == "line"
    assert batch_letter.payload() == b"\x00not zlib" and batch_letter.site == "wanda"
    assert [d.id for d in reopened.latest(site="wanda")] == [batch_letter.id]
    reopened.mark_replayed([row.id, line.id])
    assert reopened.count() == 2 and reopened.count(pending_only=False) == 4
    assert {d.id for d in reopened.latest(pending_only=True)} == {junk.id, batch_letter.id}


# --- the fast path: table lookups and exact types, decided as the full path decides


class Level(enum.IntEnum):  # an int subclass: not an exact type, takes the full path
    HIGH = 3


KINDS = st.sampled_from(["v", "v", "v", "s", "h", "x"])
ASSETS = st.sampled_from(["pump_1", "pump_2", "tank_no4", "transformer", "gateway", "pump_9"])
SIGNALS = st.sampled_from(
    ["flow_m3h", "running", "drive_model", "starts", "level_m", "comm_ok", "rtt_ms", "nope"]
)
VALUES = st.sampled_from([None, True, False, 0, 7, 2.5, -1e300, "", "VFD-7", Level.HIGH])
TIMES = st.sampled_from([NOW, NOW - 1, NOW + 299_999, NOW + 300_001, NOW - 400 * 86_400_000 - 1])
READINGS = st.builds(Reading, ASSETS, SIGNALS, TIMES, VALUES, st.sampled_from("gub"), KINDS)


@settings(max_examples=300)
@given(readings=st.lists(READINGS, max_size=30))
def test_every_reading_is_decided_as_the_full_checks_decide(
    demo_config: SiteConfig, readings: list[Reading]
) -> None:
    validator = Validator(demo_config, now_ms=NOW)
    verdict = validator.check(batch(*readings))
    assets = {a.id: a for a in demo_config.site("fengshou").station("xiba").assets}
    expected_accepted: list[Accepted] = []
    expected_rejected: list[tuple[Any, str]] = []
    for reading in readings:
        reason = validator._reason(reading, assets, NOW)
        if reason:
            expected_rejected.append((reading.row(), reason))
        else:
            expected_accepted.append(validator._accept(reading, assets))
    assert verdict.accepted == expected_accepted
    assert verdict.rejected == expected_rejected


def test_a_new_site_model_is_followed_from_the_next_batch(demo_config: SiteConfig) -> None:
    validator = Validator(demo_config, now_ms=NOW)
    flow = Reading("pump_1", "flow_m3h", NOW, 1.5)
    assert validator.check(batch(flow)).accepted
    site = demo_config.site("fengshou")
    without_xiba = site.model_copy(
        update={"stations": [s for s in site.stations if s.id != "xiba"]}
    )
    validator.config = dataclasses.replace(demo_config, sites=[without_xiba])
    assert validator.check(batch(flow)).rejected == [(flow.row(), "unknown gateway fengshou/xiba")]


# --- decoding: the inline checks accept exactly the rows read_row accepts

JSON_ITEMS = st.sampled_from(
    [None, True, 0, 1, -5, 2**70, 1.5, float("inf"), float("nan"), "", "v", "s", "h", "g", "b",
     "u", "x", "pump_1", [], ["v"], {}, {"k": 1}]
)  # fmt: skip


@given(rows=st.lists(st.lists(JSON_ITEMS, min_size=5, max_size=7) | JSON_ITEMS, max_size=12))
def test_decoding_keeps_the_rows_read_row_keeps_and_refuses_the_others(rows: list[Any]) -> None:
    header = {"site": "s", "station": "t", "boot": 1, "seq": 1, "lane": "live", "sent_ms": 1}
    body = encode_rows(header, [json.dumps(r) for r in rows])
    decoded, bad = decode_batch(body)
    expected: list[Reading] = []
    refused: list[BadRow] = []
    for i, row in enumerate(json.loads(zlib.decompress(body))["r"]):
        try:
            expected.append(read_row(row))
        except WireError as exc:
            refused.append(BadRow(i, str(exc), row))
    assert list(decoded.readings) == expected
    assert [(b.position, b.reason) for b in bad] == [(b.position, b.reason) for b in refused]


def test_well_formed_rows_decode_to_the_same_readings() -> None:
    rows = [
        ["v", "pump_1", "flow_m3h", NOW, 301.25, "g"],
        ["v", "pump_1", "running", NOW, True, "g"],
        ["v", "pump_1", "starts", NOW, 12, "u"],
        ["v", "pump_1", "drive_model", NOW, "VFD-7", "g"],
        ["v", "tank_no4", "level_m", NOW, None, "b"],
        ["s", "pump_1", "comm_ok", NOW, False, "g"],
        ["h", "gateway", "rss_mb", NOW, 48.5, "g"],
    ]
    header = {"site": "s", "station": "t", "boot": 1, "seq": 1, "lane": "live", "sent_ms": 1}
    decoded, bad = decode_batch(encode_rows(header, [json.dumps(r) for r in rows]))
    assert not bad
    assert [r.row() for r in decoded.readings] == rows
