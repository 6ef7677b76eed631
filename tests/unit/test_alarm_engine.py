"""The alarm engine's rules one by one, on event time, with the demo site's rules file:
deadband, on- and off-delay, late and resent data, the gateway deadman and what it
inhibits (during the outage and in the backlog after it), device status inhibiting
stale values, suppression by design, rates of change, message templates, the two
transformer overloads, restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


def one_device_engine(config: SiteConfig) -> AlarmEngine:
    """The demo rules without the device deadman, for tests that feed one device of a
    station for longer than 5 minutes (the others would be silent)."""
    rules = load_rules(RULES, config)
    rules.bound = [b for b in rules.bound if b.id != "device_silent"]
    return AlarmEngine(rules, config)


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
    assert (
        raised.message == "No.4 Xiba Songshan tank: level 4.95 m, above its high-high limit 4.9 m"
    )
    assert level(e, 35, 4.87) == []  # below the limit, inside the 0.05 deadband
    [cleared] = level(e, 40, 4.84)
    assert (cleared.key.rule, cleared.active) == ("tank_level_high_high", False)
    assert cleared.message == (
        "No.4 Xiba Songshan tank: level back to 4.84 m, below its high-high limit 4.9 m"
    )


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


WandaBatch = Callable[[float, bool], list[tuple[str, str, bool]]]


def wanda_batches(config: SiteConfig) -> tuple[AlarmEngine, WandaBatch]:
    """A fresh engine, and batches into it from Wanda's gateway at t seconds: its health,
    every gate's heartbeat and, when `lot_reports`, the lot counter; answers (asset, rule,
    active) of the changes."""
    e = engine(config)
    station = config.site("wanda").station("wanda_lot")
    gates = [a.id for a in station.assets if a.kind == AssetKind.BARRIER_GATE]

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

    return e, batch


def test_a_device_silent_while_its_gateway_delivers_raises_once_and_clears(
    demo_config: SiteConfig,
) -> None:
    _, batch = wanda_batches(demo_config)

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


# --- message templates -----------------------------------------------------------------


def test_a_trip_says_what_the_drives_fault_code_means(demo_config: SiteConfig) -> None:
    def trip(code: int | None) -> str:
        e = engine(demo_config)
        readings = [Reading("pump_1", "tripped", T0, True)]
        if code is not None:
            readings.append(Reading("pump_1", "fault_code", T0, code))
        [raised] = e.observe("fengshou", "xiba", readings, T0)
        return raised.message

    assert trip(6) == "Pump 1: tripped (fault code 6: phase loss)"  # the pump_vfd enum
    assert trip(42) == "Pump 1: tripped (fault code 42: not a known code)"
    assert trip(None) == "Pump 1: tripped"  # no code yet: the condition in words


def test_a_gate_fault_says_what_the_controllers_code_means(demo_config: SiteConfig) -> None:
    """The meanings come from an MQTT profile's `enum` (barrier_gate), as for Modbus."""
    e = engine(demo_config)
    faulted = [Reading("north_gate", "fault", T0, True), Reading("north_gate", "fault_code", T0, 3)]
    [raised] = e.observe("wanda", "wanda_lot", faulted, T0)
    assert raised.key.rule == "gate_fault"
    assert raised.message.endswith("barrier fault (code 3: arm motor failed)"), raised.message


def test_a_device_rules_message_speaks_of_the_device_status(demo_config: SiteConfig) -> None:
    e = engine(demo_config)

    def poll(t: float) -> list[ConditionChange]:
        ts = T0 + int(t * S)
        readings = [
            Reading("tank_no4", "comm_ok", ts, True, "g", "s"),
            Reading("tank_no4", "exception_code", ts, 2, "g", "s"),
        ]
        return e.observe("fengshou", "xiba", readings, ts)

    assert poll(0) == []
    [raised] = poll(30)
    assert (raised.key.rule, raised.message) == (
        "device_error",
        "No.4 Xiba Songshan tank: answers with Modbus exception 2",
    )


# --- rate of change ----------------------------------------------------------------------


def falling(
    e: AlarmEngine, rates: list[tuple[float, float]], start: float = 3.0
) -> list[tuple[float, str, bool, str]]:
    """Tank No.4's level every 5 s, falling at each (m/min, for seconds) in turn; the
    changes as (seconds, rule, active, message)."""
    out: list[tuple[float, str, bool, str]] = []
    t, value = 0, start
    for per_min, seconds in rates:
        for _ in range(int(seconds / 5)):
            out += [
                ((c.at_ms - T0) / S, c.key.rule, c.active, c.message) for c in level(e, t, value)
            ]
            t, value = t + 5, value - per_min * 5 / 60
    return out


def test_a_fast_fall_raises_after_its_on_delay_and_clears_past_the_deadband(
    demo_config: SiteConfig,
) -> None:
    """tank_level_falling_fast: over 0.03 m/min across the last minute for 2 minutes;
    clears under 0.02 m/min (deadband 0.01)."""
    e = one_device_engine(demo_config)
    changes = falling(e, [(0.0, 120), (0.05, 300), (0.025, 300), (0.012, 120)])
    # the fall starts at 120 s; the minute's rate passes 0.03 m/min 40 s later
    assert [c[:3] for c in changes] == [
        (160 + 120, "tank_level_falling_fast", True),
        # 0.025 m/min is under the limit but inside the deadband: still falling fast,
        # until the minute holds 25 s of the slower 0.012 m/min
        (720 + 25, "tank_level_falling_fast", False),
    ]
    assert changes[0][3] == (
        "No.4 Xiba Songshan tank: level_m falling 0.05 m/min (limit 0.03 m/min)"
    )


def test_a_fall_shorter_than_the_on_delay_or_one_jump_raises_nothing(
    demo_config: SiteConfig,
) -> None:
    e = one_device_engine(demo_config)
    assert falling(e, [(0.0, 120), (0.06, 100), (0.0, 300)]) == []  # 100 s < 2 min
    e = one_device_engine(demo_config)
    for t in range(0, 300, 5):  # a transmitter back from a stuck spell: one step down
        assert level(e, t, 3.0 if t < 150 else 2.4) == []


def moving_fast_engine(config: SiteConfig, folder: Path) -> AlarmEngine:
    """One rate rule on Xiba's tank No.4 with both limits and no on-delay."""
    rules = folder / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  level_moving_fast:\n"
        "    kind: rate\n"
        "    applies_to: {assets: [fengshou/xiba/tank_no4]}\n"
        "    signal: level_m\n"
        "    max_rise_per_min: 0.11\n"
        "    max_fall_per_min: 0.03\n"
        "    priority: high\n"
    )
    return AlarmEngine(load_rules(rules, config), config)


def test_a_rise_limit_and_a_fall_limit_in_one_rule(demo_config: SiteConfig, tmp_path: Path) -> None:
    e = moving_fast_engine(demo_config, tmp_path)
    changes = [(t, c.active, c.message) for t in range(0, 600, 5) for c in level(e, t, moving(t))]
    assert [(t, active) for t, active, _ in changes] == [
        (95, True),  # +0.2 m/min from 60 s: past 0.11 m/min once the minute holds 35 s
        (210, False),  # flat from 180 s
        (330, True),  # -0.07 m/min from 300 s
        (455, False),  # flat from 420 s
    ]
    assert "level_m rising 0.117 m/min (limit 0.11 m/min)" in changes[0][2]
    assert "level_m falling 0.035 m/min (limit 0.03 m/min)" in changes[2][2]


def moving(t: float) -> float:
    rise = 0.2 * min(max(t - 60, 0), 120) / 60
    fall = 0.07 * min(max(t - 300, 0), 120) / 60
    return 3.0 + rise - fall


def test_late_readings_and_other_signals_do_not_make_a_rate(
    demo_config: SiteConfig, tmp_path: Path
) -> None:
    e = moving_fast_engine(demo_config, tmp_path)
    for t in range(0, 300, 5):
        assert level(e, t, 3.0) == []
    # a late reading from long ago, far below: already superseded, not a fall
    assert level(e, 100, 1.0) == [] and level(e, 290, 1.0) == []
    for t in range(300, 600, 5):
        # the level stops reporting while the volume keeps arriving: its instants add
        # no level points, so the level of 300 s is no recent value to fall from
        ts = T0 + t * S
        batch = [Reading("tank_no4", "volume_m3", ts, 2400.0)]
        assert e.observe("fengshou", "xiba", batch, ts) == []
    for t in range(600, 700, 5):  # back 0.1 m lower: a step across a gap, not a rate
        batch = [Reading("tank_no4", "level_m", T0 + t * S, 2.9)]
        assert e.observe("fengshou", "xiba", batch, T0 + t * S) == []
        assert e.observe("fengshou", "xiba", batch, T0 + t * S) == []  # sent again


# --- transformers ------------------------------------------------------------------------


def load(e: AlarmEngine, at_s: float, pct: float, **more: float) -> list[tuple[float, str, bool]]:
    ts = T0 + int(at_s * S)
    readings = [Reading("transformer", "load_pct", ts, pct)]
    readings += [Reading("transformer", k, ts, v) for k, v in more.items()]
    return [
        ((c.at_ms - T0) / S, c.key.rule, c.active)
        for c in e.observe("huilongba", "nongken", readings, ts)
    ]


def loads(e: AlarmEngine, profile: list[tuple[float, float]]) -> list[tuple[float, str, bool]]:
    """Readings every 30 s at each (load %, for seconds) in turn."""
    out, t = [], 0.0
    for pct, seconds in profile:
        for _ in range(int(seconds / 30)):
            out += load(e, t, pct)
            t += 30
    return out


def test_110_percent_alone_raises_the_sustained_overload_at_15_minutes(
    demo_config: SiteConfig,
) -> None:
    e = one_device_engine(demo_config)
    assert loads(e, [(110, 900)]) == []
    assert load(e, 900, 110) == [(900, "transformer_overload_sustained", True)]
    # below 100 %: ends after its 5-minute off-delay
    changes = [c for t in range(930, 1300, 30) for c in load(e, t, 90)]
    assert changes == [(1230, "transformer_overload_sustained", False)]


def test_125_then_110_percent_counts_the_15_minutes_from_the_start_of_the_overload(
    demo_config: SiteConfig,
) -> None:
    """The 120 % alarm inhibits the 15-minute one only while it is active: the time above
    100 % counts from the start, so the sustained alarm follows as soon as it may."""
    e = one_device_engine(demo_config)
    # 10 minutes at 125 %, then 110 %: the 120 % alarm ends after its 1-minute
    # off-delay; the sustained one raises at 15 minutes after the start, not 15 after 10
    assert loads(e, [(125, 600), (110, 600)]) == [
        (0, "transformer_overload", True),
        (660, "transformer_overload", False),
        (900, "transformer_overload_sustained", True),
    ]
    e = one_device_engine(demo_config)
    # 20 minutes at 125 %: the sustained alarm waits behind the 120 % one and takes over
    # the instant it ends, the load still above 100 %
    assert loads(e, [(125, 1200), (110, 300)]) == [
        (0, "transformer_overload", True),
        (1260, "transformer_overload", False),
        (1260, "transformer_overload_sustained", True),
    ]


def test_hot_top_oil_raises_after_5_minutes_and_clears_5_degrees_lower(
    demo_config: SiteConfig,
) -> None:
    e = one_device_engine(demo_config)
    oil = [
        c
        for t, temp in [(t, 92.0) for t in range(0, 600, 30)]
        + [(t, 87.0) for t in range(600, 900, 30)]
        + [(900, 84.0)]
        for c in load(e, t, 80, top_oil_temp_c=temp)
    ]
    assert oil == [
        (300, "transformer_oil_temp_high", True),
        (900, "transformer_oil_temp_high", False),
    ]


# --- suppression by design ---------------------------------------------------------------


def pump(e: AlarmEngine, t: float, **values: Value) -> list[tuple[float, str, bool, str]]:
    ts = T0 + int(t * S)
    readings = [Reading("pump_1", k, ts, v) for k, v in values.items()]
    return [
        ((c.at_ms - T0) / S, c.key.rule, c.active, c.message)
        for c in e.observe("fengshou", "xiba", readings, ts)
    ]


def test_a_pump_ramping_up_is_no_dry_run_and_the_on_delay_starts_at_speed(
    demo_config: SiteConfig,
) -> None:
    """pump_dry_run: flow under 30 % of rated, suppressed while not running or <= 40 Hz."""
    e = one_device_engine(demo_config)
    for t in range(0, 300, 5):  # running, but held at 30 Hz with no flow
        assert pump(e, t, running=True, frequency_hz=30.0, flow_m3h=0.0) == []
    changes = [
        c
        for t in range(300, 360, 5)
        for c in pump(e, t, running=True, frequency_hz=50.0, flow_m3h=0.0)
    ]
    assert [c[:3] for c in changes] == [(320, "pump_dry_run", True)]  # 20 s at speed
    assert "running at 50 Hz with 0.0 m3/h, under 30 % of its rated 323 m3/h" in changes[0][3]


def test_stopping_a_dry_running_pump_returns_its_alarm_to_normal(demo_config: SiteConfig) -> None:
    e = one_device_engine(demo_config)
    for t in range(0, 30, 5):
        pump(e, t, running=True, frequency_hz=50.0, flow_m3h=2.0)
    [stopped] = pump(e, 30, running=False, frequency_hz=0.0, flow_m3h=0.0)
    assert stopped[:3] == (30, "pump_dry_run", False)
    assert (
        stopped[3] == "Pump 1: no dry run now: 0 Hz, 0.0 m3/h (no alarm in this state, by design)"
    )
    for t in range(35, 300, 5):  # stopped: no flow, and rightly so
        assert pump(e, t, running=False, frequency_hz=0.0, flow_m3h=0.0) == []


def test_a_suppression_it_cannot_tell_yet_raises_nothing(demo_config: SiteConfig) -> None:
    e = one_device_engine(demo_config)
    for t in range(0, 120, 5):  # the run state has not arrived: suppressed or not?
        assert pump(e, t, frequency_hz=50.0, flow_m3h=0.0) == []


# --- a gateway's outage ------------------------------------------------------------------


def polled(t_s: float, asset: str, signal: str, value: float, comm_ok: bool) -> list[Reading]:
    """A gateway's batch at t seconds: its health, and one device's status and value."""
    ts = T0 + int(t_s * S)
    return [
        Reading("gateway", "rss_mb", ts, 48.0, "g", "h"),
        Reading(asset, "comm_ok", ts, comm_ok, "g", "s"),
        Reading(asset, "exception_code", ts, 0, "g", "s"),
        Reading(asset, signal, ts, value),
    ]


def xiba(t_s: float, comm_ok: bool, value: float) -> list[Reading]:
    return polled(t_s, "tank_no4", "level_m", value, comm_ok)


def test_an_outage_backlog_raises_nothing_for_conditions_over_before_the_gateway_returned(
    demo_config: SiteConfig,
) -> None:
    e = one_device_engine(demo_config)
    assert e.observe("fengshou", "xiba", xiba(0, True, 3.0), T0) == []
    [offline] = e.tick(T0 + 61 * S)
    assert offline.key.rule == "gateway_offline"
    # back after 10 minutes with its outbox: inside it the tank's transmitter stopped
    # answering for 3 minutes, and the level stood above HH for 2 (values, device rules)
    backlog = [
        r
        for t in range(5, 600, 5)
        for r in xiba(t, not 60 <= t < 240, 4.95 if 300 <= t < 420 else 3.0)
    ]
    changes = e.observe("fengshou", "xiba", backlog, T0 + 600 * S)
    assert [(c.key.rule, c.active, c.at_ms) for c in changes if not c.late] == [
        ("gateway_offline", False, T0 + 600 * S)
    ]
    # what happened meanwhile is history: late conditions, each from its start to its
    # end (on- and off-delays applied), one per cause (HH holds H back)
    assert [
        (c.key.rule, ((c.late_since_ms or 0) - T0) // S, (c.at_ms - T0) // S)
        for c in changes
        if c.late
    ] == [("device_not_responding", 90, 270), ("tank_level_high_high", 330, 420)]
    late = {c.key.rule: c.message for c in changes if c.late}
    assert late["tank_level_high_high"] == (
        "No.4 Xiba Songshan tank: level 4.95 m, above its high-high limit 4.9 m "
        "(for 90 s, over before its data arrived)"
    )
    for t in range(600, 900, 5):  # live again, all normal: nothing left to raise
        assert e.observe("fengshou", "xiba", xiba(t, True, 3.0), T0 + t * S) == []


def test_a_condition_still_true_when_the_gateway_returns_raises_with_live_data(
    demo_config: SiteConfig,
) -> None:
    e = one_device_engine(demo_config)
    e.observe("fengshou", "xiba", xiba(0, True, 3.0), T0)
    e.tick(T0 + 61 * S)
    backlog = [r for t in range(5, 600, 5) for r in xiba(t, t < 500, 3.0)]
    changes = e.observe("fengshou", "xiba", backlog, T0 + 600 * S)
    assert [c.key.rule for c in changes] == ["gateway_offline"]
    [raised] = e.observe("fengshou", "xiba", xiba(600, False, 3.0), T0 + 600 * S)
    assert (raised.key.rule, raised.active, raised.at_ms) == (
        "device_not_responding",
        True,
        T0 + 600 * S,
    )


def test_devices_whose_backlog_was_lost_are_silent_only_counting_from_the_return(
    demo_config: SiteConfig,
) -> None:
    e, batch = wanda_batches(demo_config)

    assert batch(0, True) == []
    assert [c.key.rule for c in e.tick(T0 + 61 * S)] == ["gateway_offline"]
    # back 20 minutes later without its outbox (the lot's messages were lost)
    assert batch(1200, False) == [("gateway", "gateway_offline", False)]
    assert batch(1200 + 299, False) == []
    assert batch(1200 + 301, False) == [("lot", "device_silent", True)]


# --- live data first, the backlog after (the gateway's live lane) --------------------------


def nongken(t_s: float, pct: float) -> list[Reading]:
    return polled(t_s, "transformer", "load_pct", pct, comm_ok=True)


def overloaded_then_offline(e: AlarmEngine) -> None:
    """Nongken's transformer at 125 % (the 120 % alarm raised), then its gateway silent."""
    for t in range(0, 60, 10):
        changes = e.observe("huilongba", "nongken", nongken(t, 125), T0 + t * S)
        assert [c.key.rule for c in changes] == (["transformer_overload"] if t == 0 else [])
    [offline] = e.tick(T0 + 130 * S)
    assert offline.key.rule == "gateway_offline"


def test_a_backlog_after_the_live_data_ends_an_alarm_at_its_own_event_time(
    demo_config: SiteConfig,
) -> None:
    """The overload ended inside a 5-minute outage (at 110 s, off-delay 1 min): the live
    data comes first, then the backlog; the alarm clears at 170 s, not after live data
    plus the off-delay."""
    e = one_device_engine(demo_config)
    overloaded_then_offline(e)
    back = T0 + 360 * S
    live = e.observe("huilongba", "nongken", nongken(360, 80), back)
    assert [(c.key.rule, c.active) for c in live] == [("gateway_offline", False)]
    backlog = [r for t in range(60, 360, 10) for r in nongken(t, 125 if t < 110 else 80)]
    [cleared] = e.observe("huilongba", "nongken", backlog, back + 1 * S)
    assert (cleared.key.rule, cleared.active, cleared.at_ms) == (
        "transformer_overload",
        False,
        T0 + 170 * S,
    )
    assert cleared.message == "100 kVA transformer: load back to 80 % of its rating"
    assert e.observe("huilongba", "nongken", backlog, back + 2 * S) == []  # sent again
    for t in range(370, 600, 10):  # live data goes on: nothing more to say
        assert e.observe("huilongba", "nongken", nongken(t, 80), T0 + t * S) == []


def test_a_backlog_still_over_the_limit_at_its_end_ends_nothing(demo_config: SiteConfig) -> None:
    e = one_device_engine(demo_config)
    overloaded_then_offline(e)
    e.observe("huilongba", "nongken", nongken(360, 125), T0 + 360 * S)
    backlog = [r for t in range(60, 360, 10) for r in nongken(t, 80 if t < 200 else 125)]
    # below 120 % for 140 s inside the outage, then above again, and above live: the
    # alarm stands (the dip is history: it was over, then back, before anyone could look)
    assert e.observe("huilongba", "nongken", backlog, T0 + 361 * S) == []
    assert e.observe("huilongba", "nongken", nongken(370, 125), T0 + 370 * S) == []


def test_a_condition_inside_the_backlog_after_live_data_is_a_late_condition(
    demo_config: SiteConfig,
) -> None:
    e = one_device_engine(demo_config)
    for t in range(0, 60, 10):
        assert e.observe("huilongba", "nongken", nongken(t, 80), T0 + t * S) == []
    e.tick(T0 + 130 * S)
    e.observe("huilongba", "nongken", nongken(360, 80), T0 + 360 * S)
    backlog = [r for t in range(60, 360, 10) for r in nongken(t, 130 if 100 <= t < 200 else 80)]
    [late] = e.observe("huilongba", "nongken", backlog, T0 + 361 * S)
    assert (late.key.rule, late.active, late.late_since_ms, late.at_ms) == (
        "transformer_overload",
        False,
        T0 + 100 * S,
        T0 + 260 * S,  # below 120 % from 200 s, for its 1-minute off-delay
    )
    assert late.message == (
        "100 kVA transformer: load 130 % of its rating "
        "(for 2 min 40 s, over before its data arrived)"
    )
    assert e.observe("huilongba", "nongken", backlog, T0 + 362 * S) == []  # sent again


def test_a_backlog_showing_an_earlier_start_lets_the_on_delay_count_from_it(
    demo_config: SiteConfig,
) -> None:
    """110 % from 100 s, inside the outage: the 15-minute alarm raises at the first live
    reading past 1000 s, not 15 minutes after the live data began."""
    e = one_device_engine(demo_config)
    for t in range(0, 60, 10):
        e.observe("huilongba", "nongken", nongken(t, 80), T0 + t * S)
    e.tick(T0 + 130 * S)
    assert [
        c.key.rule for c in e.observe("huilongba", "nongken", nongken(360, 110), T0 + 360 * S)
    ] == ["gateway_offline"]
    backlog = [r for t in range(60, 360, 10) for r in nongken(t, 110 if t >= 100 else 80)]
    assert e.observe("huilongba", "nongken", backlog, T0 + 361 * S) == []
    raised = [
        ((c.at_ms - T0) // S, c.key.rule)
        for t in range(370, 1300, 30)
        for c in e.observe("huilongba", "nongken", nongken(t, 110), T0 + t * S)
    ]
    assert raised == [(1000, "transformer_overload_sustained")]


def test_late_readings_without_a_reconnection_change_nothing(demo_config: SiteConfig) -> None:
    """A batch sent again (an ack lost, no outage): older than what the engine holds and
    no reconnection before it, so no past to evaluate it on."""
    e = one_device_engine(demo_config)
    for t in range(0, 120, 10):
        e.observe("huilongba", "nongken", nongken(t, 125), T0 + t * S)
    assert e.observe("huilongba", "nongken", nongken(130, 80), T0 + 130 * S) == []
    assert e.observe("huilongba", "nongken", nongken(60, 80), T0 + 131 * S) == []


# --- one alarm per cause -------------------------------------------------------------------


def test_a_device_that_stops_answering_is_one_alarm_not_also_silent(
    demo_config: SiteConfig,
) -> None:
    """Xiba's tank transmitter stops answering for 10 minutes; the gateway backs off and
    reports its status only every 6 minutes meanwhile, while the rest of the station keeps
    delivering: device_not_responding, and no device_silent beside it."""
    e = engine(demo_config)
    station = demo_config.site("fengshou").station("xiba")
    others = [a.id for a in station.assets if a.profile and a.id != "tank_no4"]

    def batch(t: float, tank: bool | None) -> list[tuple[str, bool]]:
        ts = T0 + int(t * S)
        readings = [Reading("gateway", "rss_mb", ts, 48.0, "g", "h")]
        for asset in others:
            readings += [
                Reading(asset, "comm_ok", ts, True, "g", "s"),
                Reading(asset, "exception_code", ts, 0, "g", "s"),
            ]
        if tank is not None:
            readings += [
                Reading("tank_no4", "comm_ok", ts, tank, "g", "s"),
                Reading("tank_no4", "exception_code", ts, 0, "g", "s"),
            ]
            if tank:
                readings.append(Reading("tank_no4", "level_m", ts, 3.0))
        return [(c.key.rule, c.active) for c in e.observe("fengshou", "xiba", readings, ts)]

    changes = [c for t in range(0, 60, 5) for c in batch(t, True)]
    changes += [
        c for t in range(60, 700, 5) for c in batch(t, False if t in (60, 95, 460) else None)
    ]
    changes += [c for t in range(700, 800, 5) for c in batch(t, True)]
    assert changes == [("device_not_responding", True), ("device_not_responding", False)]


def test_nothing_is_raised_and_cleared_within_one_evaluation(demo_config: SiteConfig) -> None:
    """A batch holding a whole short overload (no on-delay, its off-delay passed inside
    the batch) tells it as a late condition, not a raise and a clear at once."""
    e = one_device_engine(demo_config)
    e.observe("huilongba", "nongken", nongken(0, 80), T0)
    batch = [r for t in range(10, 200, 10) for r in nongken(t, 130 if t < 60 else 80)]
    [late] = e.observe("huilongba", "nongken", batch, T0 + 200 * S)
    assert (late.key.rule, late.active, late.late_since_ms, late.at_ms) == (
        "transformer_overload",
        False,
        T0 + 10 * S,
        T0 + 120 * S,
    )


def test_a_clear_without_an_off_delay_waits_for_the_backlog_after_a_reconnection(
    demo_config: SiteConfig,
) -> None:
    """Tank HH (no off-delay) stood before the outage; the live data says normal, the
    backlog that follows says since 100 s: the alarm clears at 100 s. Without a backlog,
    the live data clears it once the gateway's live window has passed."""
    for backlog_follows in (True, False):
        e = one_device_engine(demo_config)
        for t in range(0, 60, 5):
            e.observe("fengshou", "xiba", xiba(t, True, 4.95), T0 + t * S)
        assert [c.key.rule for c in e.tick(T0 + 130 * S)] == ["gateway_offline"]
        live = e.observe("fengshou", "xiba", xiba(360, True, 3.0), T0 + 360 * S)
        assert [c.key.rule for c in live] == ["gateway_offline"]  # the HH clear waits
        if backlog_follows:
            backlog = [
                r for t in range(60, 360, 5) for r in xiba(t, True, 4.95 if t < 100 else 3.0)
            ]
            [cleared] = e.observe("fengshou", "xiba", backlog, T0 + 361 * S)
            assert (cleared.key.rule, cleared.active, cleared.at_ms) == (
                "tank_level_high_high",
                False,
                T0 + 100 * S,
            )
            assert e.observe("fengshou", "xiba", xiba(370, True, 3.0), T0 + 370 * S) == []
        else:
            assert e.observe("fengshou", "xiba", xiba(365, True, 3.0), T0 + 365 * S) == []
            [cleared] = e.observe("fengshou", "xiba", xiba(370, True, 3.0), T0 + 370 * S)
            assert (cleared.key.rule, cleared.at_ms) == ("tank_level_high_high", T0 + 370 * S)
