"""The ingest refuses what does not fit the site model, with a reason, and keeps it."""

from __future__ import annotations

from pathlib import Path

from facility.config import SiteConfig
from facility.wire import BadRow, Batch, Reading
from ingest.deadletters import DeadLetters
from ingest.validate import Validator

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
