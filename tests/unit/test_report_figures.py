"""The report's arithmetic on hand-made series: counters with resets and glitches,
integrals with gaps, incident stretches (and the gaps bridged), shift boundaries,
escaping, the cells' labels for the phone layout, small alarm rates."""

from __future__ import annotations

from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dashboards.reports.commands import DEFAULT_RULES as DEMO_RULES
from dashboards.reports.data import Window, bucket_query
from dashboards.reports.figures import MAX_BRIDGED_GAP_MS, counter_increase, integrate
from dashboards.reports.html import Html, esc, per_10_min, table
from dashboards.reports.incidents import (
    INCIDENT_KINDS,
    MINUTE_MS,
    _merged,
    incident_kinds,
    runs,
)
from dashboards.reports.periods import day_period, days_of, month_period, shift_period
from facility.config import load_site_config
from ingest.alarms.rules import load_rules
from tests.conftest import DEMO_SITE

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR = 3_600_000
HANDOVERS = (time(8), time(20))


def test_counter_increase_from_the_reading_before_the_period() -> None:
    samples = [(-60_000, 100.0), (0, 100.5), (60_000, 101.0), (120_000, 102.0)]
    assert counter_increase(samples, 0, 120_000) == pytest.approx(2.0)


def test_counter_increase_without_earlier_reading_starts_at_the_first() -> None:
    assert counter_increase([(10, 5.0), (20, 7.0)], 0, 100) == pytest.approx(2.0)
    assert counter_increase([], 0, 100) is None
    assert counter_increase([(50, 5.0)], 0, 100) == 0.0


def test_counter_reset_counts_up_from_zero() -> None:
    # A replaced drive: 900 → 0, then counts to 3.
    samples = [(0, 898.0), (1, 900.0), (2, 1.0), (3, 3.0)]
    assert counter_increase(samples, 0, 3) == pytest.approx(2.0 + 1.0 + 2.0)


def test_counter_glitch_is_skipped() -> None:
    samples = [(0, 500.0), (1, 501.0), (2, 0.0), (3, 502.0)]
    assert counter_increase(samples, 0, 3) == pytest.approx(2.0)


def test_counter_reading_after_the_period_is_left_out() -> None:
    assert counter_increase([(0, 1.0), (10, 2.0), (11, 9.0)], 0, 10) == pytest.approx(1.0)


def test_integrate_holds_each_bucket_and_bridges_short_gaps() -> None:
    minute = 60_000
    # 60 m³/h for 30 minutes, one bucket a minute: 30 m³.
    flow = [(i * minute, 60.0) for i in range(30)]
    whole = integrate(flow, 0, 30 * minute, minute)
    assert whole.total == pytest.approx(30.0)
    assert whole.coverage_pct(30 * minute) == pytest.approx(100.0)
    # Five minutes missing in the middle are bridged with the last value.
    gappy = [s for s in flow if not 10 * minute <= s[0] < 15 * minute]
    bridged = integrate(gappy, 0, 30 * minute, minute)
    assert bridged.total == pytest.approx(30.0)
    assert bridged.bridged_ms == 5 * minute
    assert bridged.coverage_pct(30 * minute) == pytest.approx(100 * 25 / 30)


def test_integrate_does_not_bridge_long_gaps() -> None:
    minute = 60_000
    flow = [(0, 60.0), (MAX_BRIDGED_GAP_MS + 2 * minute, 60.0)]
    result = integrate(flow, 0, MAX_BRIDGED_GAP_MS + 3 * minute, minute)
    assert result.total == pytest.approx(2.0)  # two buckets of one minute at 60 m³/h
    assert result.bridged_ms == 0


def test_runs_merge_consecutive_minutes() -> None:
    m = MINUTE_MS
    assert runs([0, m, 2 * m, 5 * m, 6 * m]) == [(0, 3 * m), (5 * m, 7 * m)]
    assert runs([]) == []


def test_shift_contains_at_and_a_handover_ends_its_shift() -> None:
    at = datetime(2026, 6, 2, 8, 0, tzinfo=SHANGHAI)
    night = shift_period(at, SHANGHAI, HANDOVERS)
    assert night.local(night.start_ms) == datetime(2026, 6, 1, 20, 0, tzinfo=SHANGHAI)
    assert night.local(night.end_ms) == at
    early = shift_period(datetime(2026, 6, 2, 7, 50, tzinfo=SHANGHAI), SHANGHAI, HANDOVERS)
    assert (early.start_ms, early.end_ms) == (night.start_ms, night.end_ms)
    assert early.as_of_ms == night.end_ms - 10 * 60_000
    day = shift_period(datetime(2026, 6, 2, 8, 1, tzinfo=SHANGHAI), SHANGHAI, HANDOVERS)
    assert day.start_ms == night.end_ms and day.hours == 12


def test_month_has_its_days() -> None:
    month = month_period(2026, 2, SHANGHAI)
    days = days_of(month)
    assert len(days) == 28
    assert days[0] == day_period(days[0].local(days[0].start_ms).date(), SHANGHAI)
    assert days[-1].end_ms == month.end_ms
    assert month_period(2026, 12, SHANGHAI).hours == 31 * 24


def test_html_escapes_data_but_not_markup() -> None:
    assert esc("<script>") == "&lt;script&gt;"
    assert esc(Html("<b>x</b>")) == "<b>x</b>"
    assert esc(None) == "–"
    page = table(["a"], [["<img src=x onerror=alert(1)>"]])
    assert "<img" not in page and "&lt;img" in page


def test_buckets_follow_the_local_clock() -> None:
    """Hourly buckets aligned to UTC straddle local midnight at +5:30: tz() fixes that."""
    window = Window(0, HOUR)
    q = bucket_query("pump", 'mean("power_kw")', window, HOUR, tz="Asia/Kolkata")
    assert q.endswith("fill(none) tz('Asia/Kolkata')")
    assert f"GROUP BY time({HOUR}ms)" in q
    assert "tz(" not in bucket_query("pump", 'mean("power_kw")', window, HOUR)


def test_incident_limits_come_from_the_alarm_rules(tmp_path: Path) -> None:
    config = load_site_config(DEMO_SITE)
    text = DEMO_RULES.read_text(encoding="utf-8")
    # a site whose crew wants overloads at 110 % and stuck gates after 3 minutes
    text = text.replace("when: load_pct > 120", "when: load_pct > 110")
    text = text.replace(
        "when: barrier_open\n    on_delay: 5m", "when: barrier_open\n    on_delay: 3m"
    )
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    kinds = incident_kinds(load_rules(tmp_path / "rules.yaml", config))
    bound = {(k.rule, k.condition, k.min_minutes) for k in kinds if k.only}
    assert ("transformer_overload", '"load_pct" > 110.0', 1) in bound
    assert ("transformer_overload_sustained", '"load_pct" > 100.0', 15) in bound
    assert ("gate_stuck_open", '"barrier_open" = true', 3) in bound
    nongken = ("huilongba", "nongken", "transformer")
    overload = [k for k in kinds if k.rule == "transformer_overload" and k.covers(nongken)]
    assert [k.condition for k in overload] == ['"load_pct" > 110.0']  # not also the fallback
    # without rules (or for assets no rule is bound to) the built-in limits hold
    assert incident_kinds(None) == INCIDENT_KINDS
    fallback = [k for k in kinds if k.rule == "transformer_overload" and not k.only]
    assert fallback[0].condition == '"load_pct" > 120' and not fallback[0].covers(nongken)


def test_stretches_closer_than_the_off_delay_are_one_incident(tmp_path: Path) -> None:
    """A lot full, a car out, full again: one period while the gap is shorter than the
    lot_full rule's off-delay (10 min in the demo rules, 20 min here)."""
    m = MINUTE_MS
    assert _merged([(0, 5 * m), (15 * m, 20 * m)], 10 * m) == [(0, 5 * m), (15 * m, 20 * m)]
    assert _merged([(0, 5 * m), (15 * m, 20 * m)], 10 * m + 1) == [(0, 20 * m)]
    assert _merged([(0, 5 * m), (5 * m, 6 * m)]) == [(0, 6 * m)]  # touching: one
    config = load_site_config(DEMO_SITE)
    text = DEMO_RULES.read_text(encoding="utf-8").replace("off_delay: 10m", "off_delay: 20m")
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    lots = [k for k in incident_kinds(load_rules(tmp_path / "rules.yaml", config)) if k.only]
    gaps = {k.gap_minutes for k in lots if k.kind == "lot_full"}
    assert gaps == {20}
    assert next(k for k in INCIDENT_KINDS if k.kind == "lot_full").gap_minutes == 10


def test_tables_carry_their_headers_for_the_phone_layout() -> None:
    page = table(["asset", "message"], [["pump_1", "tripped <now>"]], wrap={1})
    assert '<td data-label="asset">pump_1</td>' in page
    assert '<td data-label="message" class="wrap">tripped &lt;now&gt;</td>' in page


def test_alarm_rates_keep_their_digits_when_small() -> None:
    assert per_10_min(2 / 144) == "0.014"  # a day
    assert per_10_min(2 / 4464) == "0.00045"  # a month: not 0.000
    assert per_10_min(0.0) == "0.000"
