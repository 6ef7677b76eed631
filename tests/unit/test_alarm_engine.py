"""The alarm engine's rules one by one, on event time, with the demo site's rules file:
deadband, on- and off-delay, late and resent data, the gateway deadman and what it
inhibits, device status inhibiting stale values, suppression by design, rates, restart."""

from __future__ import annotations

from facility.config import SiteConfig
from facility.site import AssetKind
from facility.wire import Reading, Value
from ingest.alarms.engine import AlarmEngine
from ingest.alarms.model import AlarmKey, ConditionChange, Priority
from ingest.alarms.rules import load_rules
from tests.conftest import ROOT

RULES = ROOT / "deploy" / "alarms" / "rules.yaml"
T0 = 1_780_264_800_000
S = 1000


def engine(config: SiteConfig) -> AlarmEngine:
    return AlarmEngine(load_rules(RULES, config), config)


def level(e: AlarmEngine, at_s: float, value: float) -> list[ConditionChange]:
    return e.observe(
        "fengshou", "xiba", [Reading("tank_no4", "level_m", T0 + int(at_s * S), value)], T0
    )


def rules_of(changes: list[ConditionChange]) -> list[tuple[str, bool]]:
    return [(c.key.rule, c.active) for c in changes]


def test_threshold_waits_its_on_delay_and_clears_only_past_the_deadband(
    demo_config: SiteConfig,
) -> None:
    e = engine(demo_config)  # tank_no4: high 4.75 (1 min on-delay), high-high 4.9 (30 s)
    assert level(e, 0, 4.95) == []
    assert level(e, 25, 4.95) == []
    [raised] = level(e, 30, 4.95)
    assert raised.key == AlarmKey("fengshou", "xiba", "tank_no4", "tank_level_high_high")
    assert raised.active and raised.at_ms == T0 + 30 * S and raised.priority is Priority.HIGH
    assert "4.95 m above 4.9 m" in raised.message
    assert level(e, 35, 4.87) == []  # below the limit, inside the 0.05 deadband
    assert rules_of(level(e, 40, 4.84)) == [("tank_level_high_high", False)]


def test_a_spike_shorter_than_the_on_delay_raises_nothing(demo_config: SiteConfig) -> None:
    e = engine(demo_config)
    assert level(e, 0, 4.95) == [] and level(e, 20, 4.95) == []
    assert level(e, 25, 4.5) == []
    assert level(e, 50, 4.95) == []  # the on-delay starts again
    assert rules_of(level(e, 80, 4.95)) == [("tank_level_high_high", True)]


def test_high_high_inhibits_high_and_low_levels_do_not_chatter(demo_config: SiteConfig) -> None:
    e = engine(demo_config)
    for t in range(0, 120, 5):
        level(e, t, 4.95)
    changes = [c for t in range(120, 300, 5) for c in level(e, t, 4.95)]
    assert changes == []  # HH raised in the first minute; H (1 min) stays inhibited


def test_late_and_resent_readings_change_nothing(demo_config: SiteConfig) -> None:
    e = engine(demo_config)
    level(e, 100, 3.0)
    assert level(e, 40, 4.95) == [] and level(e, 80, 4.95) == []  # older than t=100
    batch = [Reading("tank_no4", "level_m", T0 + 130 * S, 4.95)]
    e.observe("fengshou", "xiba", batch, T0)
    raised = e.observe("fengshou", "xiba", [Reading("tank_no4", "level_m", T0 + 160 * S, 4.95)], T0)
    assert rules_of(raised) == [("tank_level_high_high", True)]
    assert e.observe("fengshou", "xiba", batch, T0) == []  # the same batch sent again


def test_gateway_silence_raises_offline_once_and_hearing_from_it_clears(
    demo_config: SiteConfig,
) -> None:
    e = engine(demo_config)
    assert e.tick(T0 + 3600 * S) == []  # never heard of yet: not started, not silent
    e.observe("fengshou", "xiba", [Reading("gateway", "rss_mb", T0, 48.0, "g", "h")], T0)
    assert e.tick(T0 + 59 * S) == []
    [offline] = e.tick(T0 + 61 * S)
    assert offline.key == AlarmKey("fengshou", "xiba", "gateway", "gateway_offline")
    assert offline.active and offline.at_ms == T0 + 61 * S
    assert e.tick(T0 + 120 * S) == []  # raised once
    back = [Reading("gateway", "rss_mb", T0 + 200 * S, 48.0, "g", "h")]
    assert rules_of(e.observe("fengshou", "xiba", back, T0 + 200 * S)) == [
        ("gateway_offline", False)
    ]


def test_a_device_not_answering_raises_once_and_inhibits_its_values(
    demo_config: SiteConfig,
) -> None:
    e = engine(demo_config)

    def poll(t: float, ok: bool, value: Value) -> list[ConditionChange]:
        ts = T0 + int(t * S)
        readings = [
            Reading("tank_no4", "comm_ok", ts, ok, "g", "s"),
            Reading("tank_no4", "exception_code", ts, 0, "g", "s"),
            Reading("tank_no4", "level_m", ts, value),
        ]
        return e.observe("fengshou", "xiba", readings, ts)

    assert poll(0, False, 4.95) == []
    assert rules_of(poll(30, False, 4.95)) == [("device_not_responding", True)]
    assert poll(60, False, 4.95) == []  # stale 4.95 m raises no level alarm meanwhile
    assert poll(90, True, 3.0) == []
    assert rules_of(poll(120, True, 3.0)) == [("device_not_responding", False)]


def test_a_stopped_pump_raises_no_dry_run_and_a_trip_is_latched(demo_config: SiteConfig) -> None:
    e = engine(demo_config)

    def pump(t: float, **values: Value) -> list[ConditionChange]:
        ts = T0 + int(t * S)
        readings = [Reading("pump_1", k, ts, v) for k, v in values.items()]
        return e.observe("fengshou", "xiba", readings, ts)

    for t in (0, 30, 60):
        assert pump(t, running=False, frequency_hz=0.0, flow_m3h=0.0, tripped=False) == []
    assert pump(65, running=True, frequency_hz=50.0, flow_m3h=5.0, tripped=False) == []
    [dry] = pump(90, running=True, frequency_hz=50.0, flow_m3h=5.0, tripped=False)
    assert dry.key.rule == "pump_dry_run" and dry.priority is Priority.CRITICAL
    [trip, dry_over] = pump(95, running=False, frequency_hz=0.0, flow_m3h=0.0, tripped=True)
    assert (trip.key.rule, trip.active, trip.latched) == ("pump_trip", True, True)
    assert (dry_over.key.rule, dry_over.active) == ("pump_dry_run", False)


def test_a_rule_active_in_the_book_before_a_restart_can_clear(demo_config: SiteConfig) -> None:
    e = engine(demo_config)
    key = AlarmKey("fengshou", "xiba", "tank_no4", "tank_level_high_high")
    e.restore([key])
    assert rules_of(level(e, 0, 3.0)) == [("tank_level_high_high", False)]
    assert level(e, 5, 3.0) == []


def test_a_device_silent_while_its_gateway_delivers_raises_once_and_clears(
    demo_config: SiteConfig,
) -> None:
    e = engine(demo_config)
    station = demo_config.site("wanda").station("wanda_lot")
    gates = [a.id for a in station.assets if a.kind is AssetKind.BARRIER_GATE]

    def batch(t_s: float, lot_reports: bool) -> list[tuple[str, str, bool]]:
        ts = T0 + int(t_s * S)
        readings = [Reading("gateway", "rss_mb", ts, 48.0, "g", "h")]
        readings += [Reading(gate, "uptime_s", ts, int(t_s)) for gate in gates]
        if lot_reports:
            readings.append(Reading("lot", "occupied", ts, 200))
        return [
            (c.key.asset, c.key.rule, c.active)
            for c in e.observe("wanda", "wanda_lot", readings, ts)
        ]

    assert batch(0, True) == []
    assert batch(60, False) == [] and batch(299, False) == []
    assert batch(301, False) == [("lot", "device_silent", True)]
    assert batch(420, False) == []  # once
    assert batch(480, True) == [("lot", "device_silent", False)]


def test_a_backlog_after_an_outage_raises_no_device_silence(demo_config: SiteConfig) -> None:
    e = engine(demo_config)
    station = demo_config.site("wanda").station("wanda_lot")
    assets = [a.id for a in station.assets if a.profile]
    # an hour of backlog arriving at once: every device reported every minute meanwhile
    readings = [
        Reading(asset, "uptime_s" if asset != "lot" else "occupied", T0 + m * 60 * S, m)
        for m in range(60)
        for asset in assets
    ]
    changes = e.observe("wanda", "wanda_lot", readings, T0 + 3 * 3600 * S)
    assert [c for c in changes if c.key.rule == "device_silent"] == []
