"""`facility report shift|daily|monthly`: write a report as one HTML file (and a PDF)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.console import Console
from rich.markup import escape

from dashboards.reports.build import operations_report, shift_report
from dashboards.reports.data import Influx, ReportError, alarm_book_snapshot, notify_store_snapshot
from dashboards.reports.html import render_operations, render_shift
from dashboards.reports.pdf import print_pdf
from dashboards.reports.periods import (
    DEFAULT_HANDOVERS,
    Period,
    day_period,
    month_period,
    parse_handover,
    shift_period,
)
from facility.clock import now_ms
from facility.config import SiteConfig, load_site_config
from facility.console import exit_on_config_error
from facility.sourcemap import ConfigError
from ingest.alarms.readout import AlarmBook, NotifyStore, RuleSet, load_rules

report_app = typer.Typer(
    help="Reports for supervisors: shift handover, daily, monthly.", no_args_is_help=True
)
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

SiteOpt = Annotated[Path, typer.Option("--site", help="The site folder (or one site file).")]
InfluxOpt = Annotated[str, typer.Option("--influx-url", help="InfluxDB 1.x URL.")]
DatabaseOpt = Annotated[str, typer.Option("--database", help="InfluxDB database.")]
BookOpt = Annotated[Path, typer.Option("--alarm-book", help="The ingest's alarms.sqlite.")]
TzOpt = Annotated[
    str | None, typer.Option("--timezone", help="Time zone (default: the sites' own).")
]
OutOpt = Annotated[Path, typer.Option("--out", help="Folder to write the report into.")]
PdfOpt = Annotated[bool, typer.Option("--pdf", help="Also print a PDF (needs Chromium).")]
# As `facility dashboards` has it: the checkout's rules, when there are some.
DEFAULT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "alarms" / "rules.yaml"
RulesOpt = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        help="Alarm rules: the incidents' limits come from them "
        "(default: deploy/alarms/rules.yaml of this checkout, if there).",
    ),
]


def _sites(path: Path) -> SiteConfig:
    try:
        return load_site_config(path)
    except ConfigError as exc:
        exit_on_config_error(err, exc, path)


def _rules(path: Path | None, config: SiteConfig) -> RuleSet | None:
    """The alarm rules for the incidents' limits. A file asked for must be there; the
    default may be absent (an installed package): the built-in limits then hold."""
    if path is None:
        if not DEFAULT_RULES.is_file():
            return None
        path = DEFAULT_RULES
    elif not path.is_file():
        raise ReportError(f"no alarm rules at {path}")
    try:
        return load_rules(path, config)
    except ConfigError as exc:
        exit_on_config_error(err, exc, path)


def _timezone(config: SiteConfig, name: str | None) -> ZoneInfo:
    """The sites' time zone; sites in different zones need --timezone (a report has one
    clock, and the shift times are local)."""
    zones = sorted({s.timezone for s in config.sites})
    if name is None and len(zones) > 1:
        raise ReportError(
            f"the sites are in several time zones ({', '.join(zones)}): pass --timezone"
        )
    try:
        return ZoneInfo(name or zones[0])
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"unknown time zone {name or zones[0]!r}") from None


@contextmanager
def _report_command(site: Path, timezone: str | None) -> Iterator[tuple[SiteConfig, ZoneInfo]]:
    """The sites and the report's time zone; a ReportError or ValueError inside ends the
    command with its message (exit 1)."""
    config = _sites(site)
    try:
        yield config, _timezone(config, timezone)
    except (ReportError, ValueError) as exc:
        _fail(exc if isinstance(exc, ReportError) else ReportError(str(exc)))


def _fail(exc: ReportError) -> None:
    err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _write(page: str, folder: Path, stem: str, pdf: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.html"
    target.write_text(page, encoding="utf-8")
    out.print(f"wrote {escape(str(target))}", highlight=False)
    if pdf:
        try:
            out.print(
                f"wrote {escape(str(print_pdf(target, folder / f'{stem}.pdf')))}", highlight=False
            )
        except ReportError as exc:
            err.print(
                f"[yellow]warning[/yellow] {escape(str(exc))}", highlight=False, soft_wrap=True
            )


def _local(text: str, tz: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"not a date and time (YYYY-MM-DDTHH:MM): {text!r}") from None
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


@report_app.command("shift")
def shift(
    site: SiteOpt,
    alarm_book: BookOpt,
    influx_url: InfluxOpt = "http://127.0.0.1:8086",
    database: DatabaseOpt = "facility",
    notify_store: Annotated[
        Path | None,
        typer.Option("--notify-store", help="The notifier's notify.sqlite: who was told."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Local time in the shift (default now); a handover time ends its shift."
        ),
    ] = None,
    handover: Annotated[
        list[str] | None,
        typer.Option(
            "--handover", help="Handover times, repeat the option (default 08:00 and 20:00)."
        ),
    ] = None,
    timezone: TzOpt = None,
    out_dir: OutOpt = Path("reports"),
    pdf: PdfOpt = False,
    rules: RulesOpt = None,
) -> None:
    """The shift handover: open and unacknowledged alarms, what was raised and cleared,
    what is out of service or shelved, notable events with a chart each."""
    with _report_command(site, timezone) as (config, tz):
        handovers = tuple(parse_handover(h) for h in handover) if handover else DEFAULT_HANDOVERS
        moment = _local(at, tz) if at else datetime.now(tz)
        sources = ReportSources(
            influx_url, database, alarm_book, notify_store, _rules(rules, config)
        )
        page, stem = shift_handover(config, sources, shift_period(moment, tz, handovers))
        _write(page, out_dir, stem, pdf)


@dataclass(frozen=True)
class ReportSources:
    influx_url: str
    database: str
    alarm_book: Path
    notify_store: Path | None = None
    rules: RuleSet | None = None  # for the incidents' limits; None: the built-in ones


def shift_handover(config: SiteConfig, sources: ReportSources, period: Period) -> tuple[str, str]:
    """The shift handover page for `period` and its file stem; ReportError if a source
    cannot be read. The demo calls this too."""
    with _opened(sources) as (influx, book, store):
        report = shift_report(influx, book, store, config, period, now_ms(), sources.rules)
    stem = "shift-" + period.local(period.start_ms).strftime("%Y-%m-%d-%H%M")
    return render_shift(report), stem


@contextmanager
def _opened(sources: ReportSources) -> Iterator[tuple[Influx, AlarmBook, NotifyStore | None]]:
    with ExitStack() as stack:
        influx = stack.enter_context(Influx(sources.influx_url, sources.database))
        influx.check()
        book = stack.enter_context(alarm_book_snapshot(sources.alarm_book))
        store = stack.enter_context(notify_store_snapshot(sources.notify_store))
        yield influx, book, store


def _operations(
    kind: str, period: Period, config: SiteConfig, sources: ReportSources, out: Output
) -> None:
    with _opened(sources) as (influx, book, _):
        report = operations_report(kind, influx, book, config, period, now_ms(), sources.rules)
    _write(render_operations(report), out.folder, out.stem, out.pdf)


@dataclass(frozen=True)
class Output:
    folder: Path
    stem: str
    pdf: bool


@report_app.command("daily")
def daily(
    site: SiteOpt,
    alarm_book: BookOpt,
    influx_url: InfluxOpt = "http://127.0.0.1:8086",
    database: DatabaseOpt = "facility",
    day: Annotated[
        str | None, typer.Option("--date", help="The day, YYYY-MM-DD (default yesterday).")
    ] = None,
    timezone: TzOpt = None,
    out_dir: OutOpt = Path("reports"),
    pdf: PdfOpt = False,
    rules: RulesOpt = None,
) -> None:
    """The daily operations report: every result in numbers."""
    with _report_command(site, timezone) as (config, tz):
        chosen = date.fromisoformat(day) if day else datetime.now(tz).date() - timedelta(days=1)
        period = day_period(chosen, tz)
        sources = ReportSources(influx_url, database, alarm_book, None, _rules(rules, config))
        _operations("daily", period, config, sources, Output(out_dir, f"daily-{chosen}", pdf))


@report_app.command("monthly")
def monthly(
    site: SiteOpt,
    alarm_book: BookOpt,
    influx_url: InfluxOpt = "http://127.0.0.1:8086",
    database: DatabaseOpt = "facility",
    month: Annotated[
        str | None, typer.Option("--month", help="The month, YYYY-MM (default last month).")
    ] = None,
    timezone: TzOpt = None,
    out_dir: OutOpt = Path("reports"),
    pdf: PdfOpt = False,
    rules: RulesOpt = None,
) -> None:
    """The monthly operations report: the month's totals and each day's."""
    with _report_command(site, timezone) as (config, tz):
        year, number = _month(month, tz)
        period = month_period(year, number, tz)
        sources = ReportSources(influx_url, database, alarm_book, None, _rules(rules, config))
        stem = f"monthly-{year:04d}-{number:02d}"
        _operations("monthly", period, config, sources, Output(out_dir, stem, pdf))


def _month(text: str | None, tz: ZoneInfo) -> tuple[int, int]:
    if text is None:
        first = datetime.now(tz).date().replace(day=1) - timedelta(days=1)
        return first.year, first.month
    try:
        year, number = (int(x) for x in text.split("-"))
        date(year, number, 1)
    except ValueError:
        raise ReportError(f"not a month (YYYY-MM): {text!r}") from None
    return year, number
