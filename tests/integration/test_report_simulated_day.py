"""The reports on a simulated day of the demo site (tests/history.py): a real InfluxDB
with the demo's injected faults and the alarm book the real pipeline kept.

What must hold: the notable events are exactly the injected faults (no more, no
fewer, at their times); run hours, starts and energy agree with the simulator's own
ground truth; a shift with the incidents lists them and a quiet shift lists none; the
month adds up to its one day; the HTML renders in Chromium with every chart loaded and
no sideways scrolling on a phone; the CLI writes the files and fails clearly.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import sync_playwright
from typer.testing import CliRunner

from dashboards.reports.build import (
    IncidentView,
    OperationsReport,
    ShiftReport,
    operations_report,
    shift_report,
)
from dashboards.reports.commands import report_app
from dashboards.reports.data import Influx, Window, alarm_book_snapshot
from dashboards.reports.figures import PumpFigures, SiteFigures
from dashboards.reports.html import render_operations, render_shift
from dashboards.reports.periods import DEFAULT_HANDOVERS, day_period, month_period, shift_period
from facility.config import SiteConfig
from ingest.alarms.book import AlarmEvent
from ingest.alarms.model import AlarmKey, Priority
from ingest.alarms.notify.escalate import Reached
from ingest.alarms.notify.store import Episode, NotifyStore
from simulators.physics.transformer import TransformerModel
from tests.conftest import DEMO_SITE
from tests.history import SimulatedDay

CHROMIUM = Path("/usr/bin/chromium")
TZ = ZoneInfo("Asia/Shanghai")
MINUTE = 60_000

pytestmark = pytest.mark.timeout(600)


def the_day(day: SimulatedDay) -> date:
    return datetime.fromtimestamp(day.result.start_ms / 1000, TZ).date()


def build_operations(kind: str, day: SimulatedDay, config: SiteConfig) -> OperationsReport:
    d = the_day(day)
    period = day_period(d, TZ) if kind == "daily" else month_period(d.year, d.month, TZ)
    with Influx(day.url, day.database) as influx, alarm_book_snapshot(day.alarm_book) as book:
        # Run right after the simulated day: later minutes are the future, not silence.
        return operations_report(kind, influx, book, config, period, day.result.end_ms)


def build_shift(day: SimulatedDay, config: SiteConfig, at: datetime) -> ShiftReport:
    period = shift_period(at, TZ, DEFAULT_HANDOVERS)
    with Influx(day.url, day.database) as influx, alarm_book_snapshot(day.alarm_book) as book:
        return shift_report(influx, book, None, config, period, day.result.end_ms)


@pytest.fixture(scope="module")
def daily(simulated_day: SimulatedDay, demo_config: SiteConfig) -> OperationsReport:
    return build_operations("daily", simulated_day, demo_config)


@pytest.fixture(scope="module")
def monthly(simulated_day: SimulatedDay, demo_config: SiteConfig) -> OperationsReport:
    return build_operations("monthly", simulated_day, demo_config)


@pytest.fixture(scope="module")
def incident_shift(simulated_day: SimulatedDay, demo_config: SiteConfig) -> ShiftReport:
    """The night shift 20:00 → 08:00 ending on the simulated morning: the incidents."""
    at = datetime.combine(the_day(simulated_day), datetime.min.time(), TZ).replace(hour=8)
    return build_shift(simulated_day, demo_config, at)


@pytest.fixture(scope="module")
def quiet_shift(simulated_day: SimulatedDay, demo_config: SiteConfig) -> ShiftReport:
    """The next night shift, as of 23:59: nothing happened in it."""
    at = datetime.combine(the_day(simulated_day), datetime.min.time(), TZ).replace(
        hour=23, minute=59
    )
    return build_shift(simulated_day, demo_config, at)


IncidentKey = tuple[str, tuple[str, str, str]]  # (incident kind, asset)


def injected(day: SimulatedDay) -> dict[IncidentKey, tuple[int, int]]:
    """(incident kind, asset) → (start, end) of every fault of the scenario."""
    out = {}
    for fault in day.scenario.faults:
        site, station, asset = fault.target.split("/")
        start = day.result.start_ms + int(fault.at_s * 1000)
        out[(fault.kind.value, (site, station, asset))] = (
            start,
            start + int((fault.duration_s or 0) * 1000),
        )
    # Two faults of one kind on one asset would collapse into one key here.
    assert len(out) == len(day.scenario.faults)
    return out


def found(views: list[IncidentView]) -> list[tuple[IncidentKey, tuple[int, int]]]:
    """Every incident, in order: a list, so one fault found as two incidents shows."""
    return sorted(
        ((v.incident.kind, v.incident.path), (v.incident.start_ms, v.incident.end_ms))
        for v in views
    )


def book_raises(day: SimulatedDay, start_ms: int, end_ms: int) -> set[tuple[str, int]]:
    """The raises as the alarm book's own table has them (not through the report code)."""
    with sqlite3.connect(f"file:{day.alarm_book}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT site, station, asset, rule, at_ms FROM transition "
            "WHERE event = 'raised' AND at_ms >= ? AND at_ms < ?",
            (start_ms, end_ms),
        ).fetchall()
    return {(f"{a}/{b}/{c}/{d}", int(t)) for a, b, c, d, t in rows}


# -- incidents --------------------------------------------------------------------------


def assert_exactly_the_faults(views: list[IncidentView], day: SimulatedDay) -> None:
    expected = injected(day)
    keys = [key for key, _ in found(views)]
    # Exactly the faults, each once: a fault split in two would be a fifth incident.
    assert len(views) == len(expected), found(views)
    assert Counter(keys) == Counter(expected.keys())
    for view in views:
        start, end = expected[(view.incident.kind, view.incident.path)]
        got_start, got_end = view.incident.start_ms, view.incident.end_ms
        # Polls are 60 s apart and a gate needs 5 minutes open to count.
        assert start <= got_start <= start + 6 * MINUTE, view
        # The plant may take a while to get back (a stuck barrier is closed when the
        # next car has gone): the end agrees with the alarm engine's clear instead.
        assert end - 2 * MINUTE <= got_end <= end + 30 * MINUTE, view
        assert view.alarm is not None and view.alarm.cleared_ms is not None, view
        assert abs(got_end - view.alarm.cleared_ms) <= 3 * MINUTE, view


def test_daily_incidents_are_exactly_the_injected_faults(
    daily: OperationsReport, simulated_day: SimulatedDay
) -> None:
    assert_exactly_the_faults(list(daily.incidents), simulated_day)
    for view in daily.incidents:  # each fault raised its alarm, matched to the incident
        assert view.alarm is not None and view.alarm.acked_by == "crew.simulated"


def test_daily_alarms_are_the_alarm_books(
    daily: OperationsReport, simulated_day: SimulatedDay
) -> None:
    period = daily.period
    reported = {(str(r.key), r.raised_ms) for r in daily.alarms.raises}
    assert reported == book_raises(simulated_day, period.start_ms, period.end_ms)
    for fault in simulated_day.scenario.faults:
        assert fault.expect is not None
        key = f"{fault.target}/{fault.expect.alarm}"
        assert key in {k for k, _ in reported}
    assert sum(daily.alarms.by_priority.values()) == len(reported)
    assert daily.alarms.kpis.ack_median_s == pytest.approx(600.0)  # the crew's 10 minutes


# -- totals against the ground truth ----------------------------------------------------


def pumps_of(sites: list[SiteFigures]) -> dict[tuple[str, str, str], PumpFigures]:
    return {p.path: p for s in sites for st in s.stations for p in st.pumps}


def test_run_hours_and_starts_match_the_ground_truth(
    daily: OperationsReport, simulated_day: SimulatedDay
) -> None:
    truth0, truth1 = simulated_day.result.truth_start, simulated_day.result.truth_end
    pumps = pumps_of(daily.sites)
    checked = 0
    for path, pump in pumps.items():
        hours = float(truth1[path]["run_hours"]) - float(truth0[path]["run_hours"])
        starts = int(truth1[path]["starts"]) - int(truth0[path]["starts"])
        assert pump.run_hours == pytest.approx(hours, rel=0.01, abs=1e-6), path
        assert pump.starts == starts, path
        checked += hours > 0
    assert checked >= 8  # pumps that ran: the comparison is not 0 == 0 throughout


def test_energy_matches_the_transformer_meters_ground_truth(
    daily: OperationsReport, simulated_day: SimulatedDay
) -> None:
    truth0, truth1 = simulated_day.result.truth_start, simulated_day.result.truth_end
    stations = {(s.site, st.station): st for s in daily.sites for st in s.stations}
    compared = 0
    for (site, station, asset), values in truth1.items():
        if "energy_kwh" not in values:
            continue
        kwh = float(values["energy_kwh"]) - float(truth0[(site, station, asset)]["energy_kwh"])
        got = stations[(site, station)]
        assert got.energy_source == "transformer meter"
        assert got.energy_kwh == pytest.approx(kwh, rel=0.01), (site, station)
        compared += 1
    assert compared == 10


def overloaded(day: SimulatedDay) -> set[tuple[str, str]]:
    """Stations whose transformer carried an injected extra load (a scenario fault)."""
    out = set()
    for fault in day.scenario.faults:
        if fault.kind.value == "transformer_overload":
            site, station, _ = fault.target.split("/")
            out.add((site, station))
    return out


def test_pump_energy_matches_the_physics(
    daily: OperationsReport, simulated_day: SimulatedDay
) -> None:
    """The pumps keep no energy counter, but the station transformer's meter integrates
    exactly Σ pump power + its auxiliary load (simulators/physics/transformer.py
    `set_load`, every 10 s physics step), so Δmeter − aux·24 h is the pumps' true energy.
    Stations with an injected overload also metered the fault's extra load: left out.
    The report integrates 1-minute means of readings polled every 60 s, so each start
    and stop is placed to within a poll: 2 % of the day's pump energy covers that."""
    truth0, truth1 = simulated_day.result.truth_start, simulated_day.result.truth_end
    hours = (simulated_day.result.end_ms - simulated_day.result.start_ms) / 3_600_000
    aux_kw = TransformerModel(kva=1.0, voltage_v=400.0, rng=random.Random(0)).aux_load_kw
    stations = {(s.site, st.station): st for s in daily.sites for st in s.stations}
    skipped = overloaded(simulated_day)
    compared = []
    for (site, station, asset), values in truth1.items():
        if "energy_kwh" not in values or (site, station) in skipped:
            continue
        metered = float(values["energy_kwh"]) - float(truth0[(site, station, asset)]["energy_kwh"])
        truth = metered - aux_kw * hours
        # An out-of-service pump reports nothing (None) and drew nothing.
        got = sum(p.energy_kwh or 0.0 for p in stations[(site, station)].pumps)
        assert got == pytest.approx(truth, rel=0.02, abs=1.0), (site, station, got, truth)
        compared.append((site, station, round(got, 1), round(truth, 1)))
    print("pump energy, report vs physics (kWh):", compared)
    assert len(compared) >= 8 and sum(t for *_, t in compared) > 100  # not 0 == 0


def test_water_delivered_is_flow_over_run_time(daily: OperationsReport) -> None:
    """No ground truth for water (the simulator keeps it per station, not per device);
    a running pump delivers between 0.3 and 1.2 times its rated flow per run hour."""
    for pump in pumps_of(daily.sites).values():
        assert pump.water_m3 is not None and pump.coverage_pct > 99
        if not pump.run_hours:
            assert pump.water_m3 == pytest.approx(0.0, abs=1.0)
    xiba = pumps_of(daily.sites)[("fengshou", "xiba", "pump_1")]
    assert xiba.run_hours and xiba.water_m3
    assert 0.3 * 323 <= xiba.water_m3 / xiba.run_hours <= 1.2 * 323


def test_lots_and_transformer_peaks(daily: OperationsReport) -> None:
    lots = {lot.path: lot for s in daily.sites for lot in s.lots}
    wanda = lots[("wanda", "wanda_lot", "lot")]
    assert wanda.spaces == 453 and wanda.peak is not None
    assert 0 < wanda.peak[1] <= 453
    assert wanda.vehicles_in and wanda.vehicles_in > 100 and wanda.turnover
    stations = {st.station: st for s in daily.sites for st in s.stations}
    nongken = stations["nongken"].peak_load
    assert nongken is not None and nongken[1] > 120  # the injected overload


# -- shifts -----------------------------------------------------------------------------


def test_shift_with_the_incidents_lists_them(
    incident_shift: ShiftReport, simulated_day: SimulatedDay
) -> None:
    assert_exactly_the_faults(list(incident_shift.incidents), simulated_day)
    raised = {str(r.key) for r in incident_shift.raises}
    for fault in simulated_day.scenario.faults:
        assert fault.expect is not None and f"{fault.target}/{fault.expect.alarm}" in raised
    p = incident_shift.period
    assert raised == {k for k, _ in book_raises(simulated_day, p.start_ms, p.as_of_ms + 1)}
    # The trip is latched: it stands at handover, acknowledged, waiting for a reset.
    standing = {str(s.key): s for s in incident_shift.standing}
    trip = standing["fengshou/xiba/pump_1/pump_trip"]
    assert trip.state.value == "latched" and trip.acked_by == "crew.simulated"
    page = render_shift(incident_shift)
    assert page.count('class="card incident"') == 4
    assert "fengshou/xiba/pump_3" in page  # broken pump from the asset register


def test_quiet_shift_lists_no_incident(quiet_shift: ShiftReport) -> None:
    assert quiet_shift.incidents == []
    assert quiet_shift.raises == [] and quiet_shift.cleared_earlier == []
    # What is still abnormal from before is handed over: the trip waiting for a reset.
    assert [str(s.key) for s in quiet_shift.standing] == ["fengshou/xiba/pump_1/pump_trip"]
    assert 'class="card incident"' not in render_shift(quiet_shift)


# -- the month --------------------------------------------------------------------------


def test_month_adds_up_to_its_one_day(daily: OperationsReport, monthly: OperationsReport) -> None:
    days_with_data = [d for d in monthly.days if d.run_hours > 0]
    assert len(days_with_data) == 1
    the_day = days_with_data[0]
    day_pumps, month_pumps = pumps_of(daily.sites), pumps_of(monthly.sites)
    for path, pump in day_pumps.items():
        assert month_pumps[path].run_hours == pytest.approx(pump.run_hours, abs=1e-6)
        assert month_pumps[path].starts == pump.starts
    day_energy = sum(s.energy_kwh for s in daily.sites)
    month_energy = sum(s.energy_kwh for s in monthly.sites)
    assert month_energy == pytest.approx(day_energy, rel=1e-6)
    assert the_day.energy_kwh == pytest.approx(day_energy, rel=1e-6)
    day_water = sum(s.water_m3 for s in daily.sites)
    # Hourly means instead of minute means: the same water within half a percent.
    assert sum(s.water_m3 for s in monthly.sites) == pytest.approx(day_water, rel=0.005)
    assert the_day.alarms == len(daily.alarms.raises) == len(monthly.alarms.raises)
    assert found(list(monthly.incidents)) == found(list(daily.incidents))


def test_hourly_buckets_follow_a_half_hour_zone(simulated_day: SimulatedDay) -> None:
    """InfluxDB aligns the buckets to the zone given in tz(): at +5:30 an hour starts at
    :30 UTC, so a local day is whole hours (without tz() they start at :00 UTC)."""
    hour = 3_600_000
    window = Window(simulated_day.result.start_ms, simulated_day.result.end_ms)
    with Influx(simulated_day.url, simulated_day.database) as influx:
        local = influx.per_asset("pump", 'mean("power_kw")', window, hour, tz="Asia/Kolkata")
        utc = influx.per_asset("pump", 'mean("power_kw")', window, hour)
    starts = {t for samples in local.values() for t, _ in samples}
    assert starts and {t % hour for t in starts} == {hour // 2}
    assert {t % hour for samples in utc.values() for t, _ in samples} == {0}


# -- in a browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("REPORT_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("report-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium package")
def test_pages_render_on_desktop_and_phone(
    incident_shift: ShiftReport, daily: OperationsReport, monthly: OperationsReport, shots: Path
) -> None:
    pages = {
        "shift": render_shift(incident_shift),
        "daily": render_operations(daily),
        "monthly": render_operations(monthly),
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            for name, text in pages.items():
                file = shots / f"{name}.html"
                file.write_text(text, encoding="utf-8")
                for label, width in (("desktop", 1280), ("phone", 390)):
                    page = browser.new_page(viewport={"width": width, "height": 844})
                    page.goto(file.as_uri())
                    images = page.evaluate(
                        "[...document.images].map(i => i.complete && i.naturalWidth > 0)"
                    )
                    assert images and all(images), (name, label)
                    overflow = page.evaluate(
                        "document.documentElement.scrollWidth"
                        " - document.documentElement.clientWidth"
                    )
                    assert overflow <= 0, (name, label, overflow)
                    page.screenshot(path=str(shots / f"{name}-{label}.png"), full_page=True)
                    page.close()
        finally:
            browser.close()


# -- the command line -------------------------------------------------------------------


def cli(day: SimulatedDay, *args: str) -> list[str]:
    return [
        "--site",
        str(DEMO_SITE),
        "--influx-url",
        day.url,
        "--database",
        day.database,
        "--alarm-book",
        str(day.alarm_book),
        *args,
    ]


def test_cli_writes_each_report(simulated_day: SimulatedDay, tmp_path: Path) -> None:
    runner = CliRunner()
    d = the_day(simulated_day)
    runs = {
        "shift-*.html": ["shift", "--at", f"{d}T08:00"],
        f"daily-{d.isoformat()}.html": ["daily", "--date", d.isoformat(), "--pdf"],
        f"monthly-{d:%Y-%m}.html": ["monthly", "--month", f"{d:%Y-%m}"],
    }
    for name, args in runs.items():
        result = runner.invoke(
            report_app, [args[0], *cli(simulated_day, *args[1:]), "--out", str(tmp_path)]
        )
        assert result.exit_code == 0, result.output
        (page,) = tmp_path.glob(name)
        text = page.read_text(encoding="utf-8")
        assert text.startswith("<!doctype html>") and "data:image/png;base64," in text
    if CHROMIUM.exists():
        assert (tmp_path / f"daily-{d.isoformat()}.pdf").read_bytes().startswith(b"%PDF")


def test_cli_fails_clearly(simulated_day: SimulatedDay, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(
        report_app,
        [
            "daily",
            *cli(simulated_day),
            "--alarm-book",
            str(tmp_path / "nope.sqlite"),
            "--out",
            str(tmp_path),
        ],
    )
    assert missing.exit_code == 1 and "no alarm book at" in missing.output
    assert missing.exception is None or isinstance(missing.exception, SystemExit)
    down = runner.invoke(
        report_app,
        [
            "daily",
            *cli(simulated_day),
            "--influx-url",
            "http://127.0.0.1:9",
            "--out",
            str(tmp_path),
        ],
    )
    assert down.exit_code == 1 and "cannot reach InfluxDB at http://127.0.0.1:9" in down.output
    wrong_db = runner.invoke(report_app, ["daily", *cli(simulated_day), "--database", "nosuch"])
    assert wrong_db.exit_code == 1 and "no database 'nosuch'" in wrong_db.output
    no_rules = runner.invoke(
        report_app, ["daily", *cli(simulated_day), "--rules", str(tmp_path / "nope.yaml")]
    )
    assert no_rules.exit_code == 1 and "no alarm rules at" in no_rules.output
    bad_date = runner.invoke(report_app, ["daily", *cli(simulated_day), "--date", "yesterday"])
    assert bad_date.exit_code == 1 and "yesterday" in bad_date.output
    assert not list(tmp_path.glob("*.html"))


def test_notified_people_come_from_the_notify_store(
    simulated_day: SimulatedDay, tmp_path: Path
) -> None:
    """The simulated day has no notifier; a store holding one episode for the trip's
    raise (as the notifier writes it) makes the report name who was told."""
    key = AlarmKey("fengshou", "xiba", "pump_1", "pump_trip")
    with alarm_book_snapshot(simulated_day.alarm_book) as book:
        raise_id = next(t.id for t in book.history(key=key) if t.event is AlarmEvent.RAISED)
    store = NotifyStore(tmp_path / "notify.sqlite")
    told = {0: Reached(0, 0, 0, ("li.wei", "zhang.min"))}
    episode = Episode(raise_id, key, Priority.HIGH, "pumps", 0, 0, reached=told)
    store.commit_group("pumps", [], 0, [episode], [])
    store.close()
    d = the_day(simulated_day)
    args = cli(
        simulated_day, "--at", f"{d}T08:00", "--notify-store", str(tmp_path / "notify.sqlite")
    )
    result = CliRunner().invoke(report_app, ["shift", *args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (page,) = tmp_path.glob("shift-*.html")
    assert page.read_text(encoding="utf-8").count("li.wei, zhang.min") == 2  # open, and raised
