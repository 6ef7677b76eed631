"""The reports on a simulated day of the demo site (tests/history.py): a real InfluxDB
with the demo's injected faults (night shift) plus a lot-full period and a gateway
uplink outage (day shift), and the alarm book the real pipeline kept. Reports are built
with the real alarm rules (deploy/alarms/rules.yaml), as the CLI builds them.

What must hold: the notable events are exactly the injected faults (no more, no
fewer, at their times), each shift listing its own; run hours, starts, energy, tank
min/max and gate counters agree with the simulator's own ground truth; alarm counts by
priority and the EEMUA rates agree with the alarm book's own table; shelved alarms and
assets out of service are handed over with who and why; the month adds up to its one
day; the HTML says all that, renders in Chromium with every chart loaded and no
sideways scrolling on a phone; the CLI writes the files and fails clearly.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from html.parser import HTMLParser
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
from dashboards.reports.html import per_10_min, render_operations, render_shift
from dashboards.reports.periods import (
    DEFAULT_HANDOVERS,
    Period,
    day_period,
    month_period,
    shift_period,
)
from facility.config import SiteConfig
from facility.site import AssetKind
from ingest.alarms.book import AlarmBook, AlarmEvent
from ingest.alarms.kpi import positions_for
from ingest.alarms.model import AlarmKey, Priority
from ingest.alarms.notify.escalate import Reached
from ingest.alarms.notify.store import Episode, NotifyStore
from ingest.alarms.rules import RuleSet, load_rules
from ingest.config import KpiSettings
from simulators.physics.common import Value
from simulators.physics.transformer import TransformerModel
from simulators.scenario import Fault
from tests.conftest import DEMO_SITE
from tests.history import RULES, SimulatedDay, demo_notify

CHROMIUM = Path("/usr/bin/chromium")
TZ = ZoneInfo("Asia/Shanghai")
MINUTE = 60_000
HOUR = 60 * MINUTE

pytestmark = pytest.mark.timeout(600)


def the_day(day: SimulatedDay) -> date:
    return datetime.fromtimestamp(day.result.start_ms / 1000, TZ).date()


def at_local(day: SimulatedDay, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(the_day(day), datetime.min.time(), TZ).replace(hour=hour, minute=minute)


@pytest.fixture(scope="module")
def rules(demo_config: SiteConfig) -> RuleSet:
    return load_rules(RULES, demo_config)


def build_operations(
    kind: str, day: SimulatedDay, config: SiteConfig, rules: RuleSet
) -> OperationsReport:
    d = the_day(day)
    period = day_period(d, TZ) if kind == "daily" else month_period(d.year, d.month, TZ)
    # The operator positions as the demo's ingest counts them: the notifier's crews.
    sites = [s.id for s in config.sites]
    positions = positions_for(KpiSettings(), demo_notify(), sites)
    with Influx(day.url, day.database) as influx, alarm_book_snapshot(day.alarm_book) as book:
        # Run right after the simulated day: later minutes are the future, not silence.
        end = day.result.end_ms
        return operations_report(kind, influx, book, config, period, end, rules, positions)


def shift_at(at: datetime) -> Period:
    return shift_period(at, TZ, DEFAULT_HANDOVERS)


def build_shift(day: SimulatedDay, config: SiteConfig, rules: RuleSet, at: datetime) -> ShiftReport:
    with Influx(day.url, day.database) as influx, alarm_book_snapshot(day.alarm_book) as book:
        return shift_report(influx, book, None, config, shift_at(at), day.result.end_ms, rules)


@pytest.fixture(scope="module")
def daily(simulated_day: SimulatedDay, demo_config: SiteConfig, rules: RuleSet) -> OperationsReport:
    return build_operations("daily", simulated_day, demo_config, rules)


@pytest.fixture(scope="module")
def monthly(
    simulated_day: SimulatedDay, demo_config: SiteConfig, rules: RuleSet
) -> OperationsReport:
    return build_operations("monthly", simulated_day, demo_config, rules)


@pytest.fixture(scope="module")
def night_shift(
    simulated_day: SimulatedDay, demo_config: SiteConfig, rules: RuleSet
) -> ShiftReport:
    """20:00 → 08:00 ending on the simulated morning: the demo's incidents."""
    return build_shift(simulated_day, demo_config, rules, at_local(simulated_day, 8))


@pytest.fixture(scope="module")
def day_shift(simulated_day: SimulatedDay, demo_config: SiteConfig, rules: RuleSet) -> ShiftReport:
    """08:00 → 20:00: the lot-full period and the gateway outage."""
    return build_shift(simulated_day, demo_config, rules, at_local(simulated_day, 20))


@pytest.fixture(scope="module")
def quiet_shift(
    simulated_day: SimulatedDay, demo_config: SiteConfig, rules: RuleSet
) -> ShiftReport:
    """The next night shift, as of 23:59: nothing happened in it."""
    return build_shift(simulated_day, demo_config, rules, at_local(simulated_day, 23, 59))


# -- the rendered page, read back -------------------------------------------------------


class Page(HTMLParser):
    """The tables of a rendered report, by the id of the section holding them: each a
    list of rows of cell texts (header row first)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.cards: list[str] = []  # data-kind of each incident card
        self._section = ""
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "section":
            self._section = attr.get("id") or ""
        elif tag == "table":
            self.tables.setdefault(self._section, []).append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "div" and "incident" in (attr.get("class") or "").split():
            self.cards.append(attr.get("data-kind") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._section][-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, section: str, index: int = 0) -> list[list[str]]:
        """A table's body rows (its header left out)."""
        return self.tables[section][index][1:]


# -- incidents --------------------------------------------------------------------------

IncidentKey = tuple[str, tuple[str, str, str]]  # (incident kind, asset)
# The incident kind a fault shows as in the data (else the fault kind's own name).
INCIDENT_OF = {"gateway_link_down": "gateway_outage"}
# Symptoms that are the plant's response, not the fault itself: a surge fills the lot
# within the fault's `within`, and the lot is full no longer once the first of the
# surge's visitors drive off, which may be before the surge ends.
PLANT_RESPONSE = {"lot_full"}
# How long after the last full minute the lot-full alarm clears beyond its off-delay:
# it clears below 95 % of the spaces, not at the first free space.
HYSTERESIS_MS = {"lot_full": 15 * MINUTE}


def injected(day: SimulatedDay, period: Period) -> dict[IncidentKey, Fault]:
    """(incident kind, asset) → the fault, for every fault starting in the period."""
    out = {}
    for fault in day.scenario.faults:
        start = day.result.start_ms + int(fault.at_s * 1000)
        if period.start_ms <= start < period.as_of_ms:
            kind = INCIDENT_OF.get(fault.kind.value, fault.kind.value)
            out[(kind, fault.key)] = fault
    # Two faults of one kind on one asset would collapse into one key here.
    assert len(out) == sum(
        period.start_ms <= day.result.start_ms + f.at_s * 1000 < period.as_of_ms
        for f in day.scenario.faults
    )
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


def assert_exactly_the_faults(
    views: list[IncidentView], day: SimulatedDay, period: Period, rules: RuleSet
) -> None:
    expected = injected(day, period)
    keys = [key for key, _ in found(views)]
    # Exactly the faults, each once: a fault split in two would be one incident more.
    assert len(views) == len(expected), found(views)
    assert Counter(keys) == Counter(expected.keys())
    off_delay = {b.id: b.rule.off_delay * 1000 for b in rules.bound}
    for view in views:
        fault = expected[(view.incident.kind, view.incident.path)]
        assert fault.expect is not None and fault.duration_s is not None
        start = day.result.start_ms + int(fault.at_s * 1000)
        end = start + int(fault.duration_s * 1000)
        got_start, got_end = view.incident.start_ms, view.incident.end_ms
        # Polls are 60 s apart and a gate needs 5 minutes open to count.
        assert start <= got_start <= start + max(6 * MINUTE, fault.expect.within_s * 1000), view
        if view.incident.kind in PLANT_RESPONSE:
            assert got_start < got_end <= end + 30 * MINUTE, view
        else:
            # The plant may take a while to get back (a stuck barrier is closed when
            # the next car has gone): the end agrees with the alarm's clear, below.
            assert end - 2 * MINUTE <= got_end <= end + 30 * MINUTE, view
        alarm = view.alarm
        assert alarm is not None and alarm.key.rule == fault.expect.alarm, view
        assert alarm.priority.value == fault.expect.priority, view
        assert -MINUTE <= alarm.raised_ms - got_start <= 6 * MINUTE, view
        assert alarm.cleared_ms is not None, view
        # The alarm clears its off-delay after the condition went; the incident ends
        # with the last minute the condition was seen.
        lag = alarm.cleared_ms - off_delay.get(alarm.key.rule, 0) - got_end
        slack = HYSTERESIS_MS.get(view.incident.kind, 0) + 3 * MINUTE
        assert -3 * MINUTE <= lag <= slack, (view, lag / MINUTE)


def test_daily_incidents_are_exactly_the_injected_faults(
    daily: OperationsReport, simulated_day: SimulatedDay, rules: RuleSet
) -> None:
    assert_exactly_the_faults(list(daily.incidents), simulated_day, daily.period, rules)
    kinds = {v.incident.kind for v in daily.incidents}
    assert {"lot_full", "gateway_outage", "pump_trip"} <= kinds
    for view in daily.incidents:  # each fault raised its alarm, matched to the incident
        assert view.alarm is not None and view.alarm.acked_by == "crew.simulated"
        assert view.chart.startswith("data:image/png;base64,")
    cards = Page(render_operations(daily)).cards
    assert Counter(cards) == Counter(v.incident.kind for v in daily.incidents)


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
    assert daily.alarms.kpis.ack_median_s == pytest.approx(600.0)  # the crew's 10 minutes


def book_counts(day: SimulatedDay, period: Period) -> tuple[Counter[str], list[tuple[str, int]]]:
    """From the alarm book's table: raises by priority, and (site, at_ms) of each."""
    with sqlite3.connect(f"file:{day.alarm_book}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT priority, site, at_ms FROM transition "
            "WHERE event = 'raised' AND at_ms >= ? AND at_ms < ?",
            (period.start_ms, period.end_ms),
        ).fetchall()
    return Counter(str(p) for p, _, _ in rows), [(str(s), int(t)) for _, s, t in rows]


def test_alarm_counts_by_priority_and_eemua_rates_are_the_books(
    daily: OperationsReport, simulated_day: SimulatedDay
) -> None:
    by_priority, raised = book_counts(simulated_day, daily.period)
    total = sum(by_priority.values())
    # Each fault raised its one expected alarm, and nothing else was raised.
    faults = simulated_day.scenario.faults
    assert by_priority == Counter(f.expect.priority for f in faults if f.expect)
    assert daily.alarms.by_priority == {p.value: by_priority[p.value] for p in Priority}
    page = Page(render_operations(daily))
    shown = {row[0]: row[1:3] for row in page.rows("alarms", 0)}
    assert shown == {
        p.value: [str(by_priority[p.value]), f"{100 * by_priority[p.value] / total:.0f} %"]
        for p in Priority
    }
    # EEMUA 191 per operator position (the site, without a notifier), over fixed
    # 10-minute clock intervals of the day.
    slots = daily.period.hours * 6
    rates = {row[0]: row[1:] for row in page.rows("alarms", 2)}
    sites = Counter(site for site, _ in raised)
    assert set(rates) == set(sites)
    for site, n in sites.items():
        per_slot = Counter(t // (10 * MINUTE) for s, t in raised if s == site)
        floods = sum(1 for k in per_slot.values() if k > 10)
        assert rates[site] == [
            str(n),
            per_10_min(n / slots),
            str(max(per_slot.values())),
            str(floods),
            f"{100 * floods / slots:.2f} %",
        ], site


def test_eemua_rates_per_operator_position_are_the_crews(
    daily: OperationsReport, simulated_day: SimulatedDay
) -> None:
    """Per operator position: each crew the demo's notify.yaml routes to, quiet ones
    too, with the alarms of the sites routed to it (the car-park crew answers for Wanda
    and Xingshui)."""
    _, raised = book_counts(simulated_day, daily.period)
    slots = daily.period.hours * 6
    crews = {"parking": {"wanda", "xingshui"}, "fengshou_water": {"fengshou"}}
    crews |= {"huilongba_water": {"huilongba"}, "south_water": {"lianhuatang", "chaheihai"}}
    page = Page(render_operations(daily))
    rates = {row[0]: row[1:3] for row in page.rows("alarms", 3)}
    assert set(rates) == set(crews)
    for crew, sites in crews.items():
        n = sum(1 for site, _ in raised if site in sites)
        assert rates[crew] == [str(n), per_10_min(n / slots)], crew
    assert int(rates["parking"][0]) > 0  # not 0 == 0: the stuck gate, the full lot


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
    daily: OperationsReport, simulated_day: SimulatedDay, demo_config: SiteConfig
) -> None:
    """The pumps keep no energy counter, but the station transformer's meter integrates
    exactly Σ pump power + its auxiliary load (simulators/physics/transformer.py
    `set_load`, every 10 s physics step), so Δmeter − aux·24 h is the pumps' true energy.
    Stations with an injected overload also metered the fault's extra load: left out.
    Within 1 %, except where a station ran so little that its starts and stops, each
    seen up to one 60 s poll late, weigh more: at most one poll of full power per start
    and per stop (Yancao's one pump runs a quarter of an hour at 35 kW; a minute of that
    is 6 %, and the report is 1.7 % over)."""
    truth0, truth1 = simulated_day.result.truth_start, simulated_day.result.truth_end
    hours = (simulated_day.result.end_ms - simulated_day.result.start_ms) / 3_600_000
    aux_kw = TransformerModel(kva=1.0, voltage_v=400.0, rng=random.Random(0)).aux_load_kw
    stations = {(s.site, st.station): st for s in daily.sites for st in s.stations}
    skipped = overloaded(simulated_day)
    compared, held_to_one_percent = [], 0
    for (site, station, asset), values in truth1.items():
        if "energy_kwh" not in values or (site, station) in skipped:
            continue
        metered = float(values["energy_kwh"]) - float(truth0[(site, station, asset)]["energy_kwh"])
        truth = metered - aux_kw * hours
        # An out-of-service pump reports nothing (None) and drew nothing.
        got = sum(p.energy_kwh or 0.0 for p in stations[(site, station)].pumps)
        placement = sum(
            _switchings(truth0[ref.key], truth1[ref.key])
            * simulated_day.poll_s
            / 3600
            * (ref.asset.ratings.motor_kw or 0.0)
            for ref in demo_config.assets()
            if ref.key[:2] == (site, station) and ref.asset.kind == AssetKind.PUMP
        )
        error = abs(got - truth)
        if truth >= 100:  # a day's running: 1 %, whatever the starts
            assert error <= 0.01 * truth, (site, station, got, truth)
            held_to_one_percent += 1
        bound = max(0.01 * abs(truth), placement, 1e-6)  # (a station that never ran: 0)
        assert error <= bound, (site, station, got, truth, placement)
        compared.append((site, station, round(got, 1), round(truth, 1), round(placement, 1)))
    print("pump energy, report vs physics, poll placement bound (kWh):", compared)
    assert len(compared) >= 8 and held_to_one_percent >= 4  # not 0 == 0


def _switchings(before: dict[str, Value], after: dict[str, Value]) -> int:
    """A pump's starts and stops in the day (each seen up to a poll late)."""
    starts = int(after["starts"]) - int(before["starts"])
    return 2 * starts + int(bool(before["running"])) - int(bool(after["running"]))


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


def influx_query(day: SimulatedDay, q: str) -> list[dict[str, object]]:
    series: list[dict[str, object]] = day.statement(q).get("series", [])
    return series


def test_tank_min_and_max_are_the_physics_and_the_data(
    daily: OperationsReport, simulated_day: SimulatedDay
) -> None:
    """Each tank's lowest and highest level: the report's equals InfluxDB's own min/max
    of the day's readings, value and minute, and the physics' true level at its lowest
    and highest poll within the sensor's noise (σ 2 mm); the page shows them."""
    result, day = simulated_day.result, simulated_day
    tanks = {t.path: (st, t) for s in daily.sites for st in s.stations for t in st.tanks}
    assert set(tanks) == set(result.tank_low) and len(tanks) >= 15
    page = Page(render_operations(daily))
    shown = {
        (row[0], row[1]): row[2:]
        for site in daily.sites
        if any(st.tanks for st in site.stations)
        for row in page.rows(f"site-{site.site}", 2)
    }
    between = f"time >= {result.start_ms}ms AND time < {result.end_ms}ms"
    for path, (station, tank) in tanks.items():
        assert tank.low is not None and tank.high is not None, path
        where = f"\"site\" = '{path[0]}' AND \"station\" = '{path[1]}' AND \"asset\" = '{path[2]}'"
        for agg, got, truth in (
            ("min", tank.low, result.tank_low[path]),
            ("max", tank.high, result.tank_high[path]),
        ):
            (series,) = influx_query(
                day, f'SELECT {agg}("level_m") FROM "tank" WHERE {where} AND {between}'
            )
            t_data, v_data = series["values"][0]  # type: ignore[index]
            assert got[1] == pytest.approx(v_data, abs=1e-9), (path, agg)
            assert got[0] == t_data - t_data % MINUTE, (path, agg)
            assert got[1] == pytest.approx(truth[1], abs=0.01), (path, agg, truth)
        height = tank.height_m or 0.0
        assert shown[(station.name, tank.name)] == [
            f"{tank.low[1]:,.2f}",
            datetime.fromtimestamp(tank.low[0] / 1000, TZ).strftime("%Y-%m-%d %H:%M"),
            f"{100 * tank.low[1] / height:.0f} %",
            f"{tank.high[1]:,.2f}",
            datetime.fromtimestamp(tank.high[0] / 1000, TZ).strftime("%Y-%m-%d %H:%M"),
            f"{100 * tank.high[1] / height:.0f} %",
        ], path


def test_lots_gates_and_transformer_peaks(
    daily: OperationsReport, simulated_day: SimulatedDay, rules: RuleSet
) -> None:
    """Vehicles in and out are the gate controllers' own counts; the surge filled the
    Wanda lot (its peak is every space) in one full period, which the lot-full alarm
    covers; the quiet lot was never full."""
    truth0, truth1 = simulated_day.result.truth_start, simulated_day.result.truth_end
    lots = {lot.path: lot for s in daily.sites for lot in s.lots}
    assert set(lots) == {("wanda", "wanda_lot", "lot"), ("xingshui", "xingshui_lot", "lot")}
    for path, lot in lots.items():
        gates = [k for k in truth1 if k[:2] == path[:2] and "vehicles_in_total" in truth1[k]]
        came = sum(
            int(truth1[g]["vehicles_in_total"]) - int(truth0[g]["vehicles_in_total"]) for g in gates
        )
        went = sum(
            int(truth1[g]["vehicles_out_total"]) - int(truth0[g]["vehicles_out_total"])
            for g in gates
        )
        assert (lot.vehicles_in, lot.vehicles_out) == (came, went), path
        assert lot.spaces and lot.turnover == pytest.approx(came / lot.spaces)
    wanda = lots[("wanda", "wanda_lot", "lot")]
    assert wanda.spaces == 453 and wanda.peak is not None and wanda.peak[1] == 453
    (full,) = [v for v in daily.incidents if v.incident.kind == "lot_full"]
    assert full.alarm is not None and full.alarm.key.rule == "lot_full"
    page = Page(render_operations(daily))
    row = next(r for r in page.rows("site-wanda", 0) if r[0] == wanda.name)
    assert row[1:3] == ["453", "453"] and row[4] == "100.0"
    assert row[5:7] == [str(wanda.vehicles_in), str(wanda.vehicles_out)]
    assert row[8:] == ["1", str(full.incident.minutes)]
    xingshui = next(r for r in page.rows("site-xingshui", 0))
    assert xingshui[8:] == ["0", "0"]
    stations = {st.station: st for s in daily.sites for st in s.stations}
    nongken = stations["nongken"].peak_load
    assert nongken is not None and nongken[1] > 120  # the injected overload


# -- shifts -----------------------------------------------------------------------------


def test_night_shift_lists_the_demo_incidents(
    night_shift: ShiftReport, simulated_day: SimulatedDay, rules: RuleSet
) -> None:
    assert_exactly_the_faults(list(night_shift.incidents), simulated_day, night_shift.period, rules)
    assert len(night_shift.incidents) == 4
    raised = {str(r.key) for r in night_shift.raises}
    p = night_shift.period
    assert raised == {k for k, _ in book_raises(simulated_day, p.start_ms, p.as_of_ms + 1)}
    # The trip is latched: it stands at handover, acknowledged, waiting for a reset.
    standing = {str(s.key): s for s in night_shift.standing}
    trip = standing["fengshou/xiba/pump_1/pump_trip"]
    assert trip.state.value == "latched" and trip.acked_by == "crew.simulated"
    page = Page(render_shift(night_shift))
    assert sorted(page.cards) == sorted(v.incident.kind for v in night_shift.incidents)
    register = [r for r in page.rows("hidden") if r[1].startswith("asset register")]
    assert ["fengshou/xiba/pump_3", "asset register: out of service"] in [r[:2] for r in register]


def test_day_shift_lists_the_lot_full_period_and_the_gateway_outage(
    day_shift: ShiftReport, simulated_day: SimulatedDay, rules: RuleSet
) -> None:
    views = list(day_shift.incidents)
    assert_exactly_the_faults(views, simulated_day, day_shift.period, rules)
    assert sorted(v.incident.kind for v in views) == ["gateway_outage", "lot_full"]
    outage = next(v for v in views if v.incident.kind == "gateway_outage")
    assert outage.incident.path == ("huilongba", "wuxiao", "gateway")
    assert outage.alarm is not None and outage.alarm.key.rule == "gateway_offline"
    p = day_shift.period
    raised = {str(r.key) for r in day_shift.raises}
    assert raised == {k for k, _ in book_raises(simulated_day, p.start_ms, p.as_of_ms + 1)}
    assert raised == {
        "wanda/wanda_lot/lot/lot_full",
        "huilongba/wuxiao/gateway/gateway_offline",
    }
    page = Page(render_shift(day_shift))
    assert sorted(page.cards) == ["gateway_outage", "lot_full"]
    text = render_shift(day_shift)
    for view in views:  # each with its chart
        assert view.chart in text
    # Handed over from the night: the trip still waits for its reset.
    assert [str(s.key) for s in day_shift.standing] == ["fengshou/xiba/pump_1/pump_trip"]


def test_quiet_shift_lists_no_incident(quiet_shift: ShiftReport) -> None:
    assert quiet_shift.incidents == []
    assert quiet_shift.raises == [] and quiet_shift.cleared_earlier == []
    # What is still abnormal from before is handed over: the trip waiting for a reset.
    assert [str(s.key) for s in quiet_shift.standing] == ["fengshou/xiba/pump_1/pump_trip"]
    assert Page(render_shift(quiet_shift)).cards == []


@contextmanager
def book_with_crew_actions(day: SimulatedDay) -> Iterator[AlarmBook]:
    """A private copy of the day's alarm book in which, at 18:30, the crew took the
    Nongken transformer out of service and at 19:00 shelved the Wanda main gate's
    stuck-open alarm (the session's day itself is never written to)."""
    with alarm_book_snapshot(day.alarm_book) as book:
        book.now_ms = lambda: int(at_local(day, 18, 30).timestamp() * 1000)
        book.set_out_of_service("huilongba/nongken/transformer", "zhang.min", "oil sampling")
        book.now_ms = lambda: int(at_local(day, 19).timestamp() * 1000)
        gate = AlarmKey("wanda", "wanda_lot", "main_gate", "gate_stuck_open")
        book.shelve(gate, "li.wei", "arm motor replaced, barrier tested by hand", 4 * 3600)
        yield book


def test_handover_lists_shelved_alarms_and_assets_out_of_service(
    simulated_day: SimulatedDay, demo_config: SiteConfig, rules: RuleSet
) -> None:
    day = simulated_day
    with Influx(day.url, day.database) as influx, book_with_crew_actions(day) as book:
        report = shift_report(
            influx, book, None, demo_config, shift_at(at_local(day, 20)), day.result.end_ms, rules
        )
        earlier = shift_report(
            influx, book, None, demo_config, shift_at(at_local(day, 8)), day.result.end_ms, rules
        )
    when = {h: at_local(day, h, m).strftime("%Y-%m-%d %H:%M") for h, m in ((18, 30), (19, 0))}
    rows = Page(render_shift(report)).rows("hidden")
    register = [r for r in rows if r[1].startswith("asset register")]
    assert [r for r in rows if r not in register] == [
        [
            "huilongba/nongken/transformer",
            "out of service (alarm book)",
            f"zhang.min {when[18]}",
            "oil sampling",
        ],
        [  # the alarms by priority: the overload is critical, the stuck gate medium
            "huilongba/nongken/transformer/transformer_overload",
            "alarm out of service",
            "zhang.min",
            "oil sampling",
        ],
        [
            "wanda/wanda_lot/main_gate/gate_stuck_open",
            "alarm shelved",
            f"li.wei {when[19]}",
            "arm motor replaced, barrier tested by hand",
        ],
    ]
    # the register's own entries: every asset it lists as not in service, once
    listed = {a.path for a in demo_config.assets() if a.asset.status.value != "in_service"}
    assert sorted(r[0] for r in register) == sorted(listed)
    # The night shift ended before the crew acted: it hands over none of it.
    earlier_rows = Page(render_shift(earlier)).rows("hidden")
    assert all(r[1].startswith("asset register") for r in earlier_rows)


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
    night_shift: ShiftReport,
    day_shift: ShiftReport,
    daily: OperationsReport,
    monthly: OperationsReport,
    shots: Path,
) -> None:
    pages = {
        "shift": render_shift(night_shift),
        "shift-day": render_shift(day_shift),
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
