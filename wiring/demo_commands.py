"""`facility history|demo`: simulated history into InfluxDB, and the live demo.

Loaded only when one of these commands runs (wiring/cli.py registers them lazily): they
pull in the whole central stack, and the demo its mail catcher and scripted crew.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dashboards.reports.data import ReportError
from facility.aio import cancel_and_wait, run_until_signalled
from facility.cli_args import SitePath, load_site
from facility.clock import now_ms
from facility.config import SiteConfig
from facility.console import console, err
from facility.logs import setup_logging
from simulators.clock import SimClock, parse_duration
from simulators.commands import (
    endpoint_table,
    fmt_time,
    live_table,
    parse_start,
    print_faults,
    read_scenario,
    scenario_simulation,
    scenario_start,
    show_live,
)
from wiring.alarm_desk import OPERATOR_USER
from wiring.demo import Demo, Outage
from wiring.history import InfluxTarget, SimulatedHistory, fill_influx, history_start

DEMO_RULES = Path(__file__).resolve().parents[1] / "deploy" / "alarms" / "rules.yaml"
DEMO_NOTIFY = DEMO_RULES.with_name("notify.yaml")


def history(
    path: SitePath,
    influx_url: Annotated[str, typer.Option(help="InfluxDB 1.x URL.")] = "http://127.0.0.1:8086",
    database: Annotated[str, typer.Option(help="Database to fill.")] = "facility",
    duration: Annotated[str, typer.Option(help="Simulated time (e.g. 1d).")] = "1d",
    scenario: Annotated[Path | None, typer.Option(help="Scenario file (faults).")] = None,
    start: Annotated[
        str | None,
        typer.Option(help="Start, ISO 8601; default: the scenario's, else that long before now."),
    ] = None,
    poll: Annotated[str, typer.Option(help="Poll interval of the simulated gateways.")] = "60s",
    rules: Annotated[Path | None, typer.Option(help="Alarm rules (alarm events, KPIs).")] = None,
    data_dir: Annotated[Path, typer.Option(help="Alarm book and dead letters.")] = Path(
        "var/history"
    ),
) -> None:
    """Fill InfluxDB with simulated history, as the gateways would have delivered it:
    readings, alarm events (a simulated crew acknowledges), KPIs and rollups."""
    config = load_site(path)
    scen = read_scenario(scenario, config)
    seconds = parse_duration(duration)
    found = history_start(parse_start(start) if start else None, scen, seconds, now_ms())
    if found.note:
        console.print(escape(found.note), highlight=False)
    begin = found.start_ms
    past = SimulatedHistory(config, scen, begin, poll_s=parse_duration(poll))
    t0 = time.perf_counter()
    result = asyncio.run(
        fill_influx(past, InfluxTarget(influx_url, database), data_dir, rules, seconds)
    )
    console.print(
        f"{result.readings} readings in {result.batches} batches from {fmt_time(begin)}: "
        f"{result.stored} stored, {result.refused} refused, {result.transitions} alarm "
        f"transitions, in {time.perf_counter() - t0:.1f} s"
    )


def demo(
    path: SitePath,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 60.0,
    scenario: Annotated[Path | None, typer.Option(help="Scenario file (faults).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    start: Annotated[str | None, typer.Option(help="Simulated start time, ISO 8601.")] = None,
    duration: Annotated[str | None, typer.Option(help="Stop after this simulated time.")] = None,
    broker_port: Annotated[int, typer.Option(help="Port of the demo's private broker.")] = 18830,
    run_dir: Annotated[Path, typer.Option(help="Broker data and outboxes.")] = Path("run/demo"),
    outage_at: Annotated[str, typer.Option(help="Stop the broker after this real time.")] = "60s",
    outage_for: Annotated[str, typer.Option(help="Keep it stopped this long (0: never).")] = "30s",
    plain: Annotated[bool, typer.Option(help="Print lines instead of a live table.")] = False,
    rules: Annotated[Path | None, typer.Option(help="Alarm rules file.")] = DEMO_RULES,
    notify: Annotated[
        Path | None, typer.Option(help="Notifier config (its local addresses are redirected).")
    ] = DEMO_NOTIFY,
    api_port: Annotated[int, typer.Option(help="Alarm API and console port (0: any).")] = 18088,
    crew_ack_after: Annotated[
        str, typer.Option(help="The scripted crew acknowledges after this real time.")
    ] = "20s",
) -> None:
    """Simulated site + one gateway per station + broker + ingest with alarms, live."""
    setup_logging("warning")
    config = load_site(path)
    scen = read_scenario(scenario, config)
    start_ms = scenario_start(start, scen)
    source = scenario_simulation(config, scen, seed, start_ms)
    seconds = parse_duration(duration) if duration else None
    outage = (
        Outage(parse_duration(outage_at), parse_duration(outage_for))
        if parse_duration(outage_for) > 0
        else None
    )
    show = Demo(
        config,
        source,
        SimClock(start_ms, speed),
        run_dir,
        broker_port,
        outage,
        rules,
        notify,
        api_port,
        parse_duration(crew_ack_after),
    )
    asyncio.run(_run_demo(show, config, seconds, plain))


async def _run_demo(show: Demo, config: SiteConfig, duration_s: float | None, plain: bool) -> None:
    try:
        await show.start()
    except (OSError, RuntimeError) as exc:
        err.print(f"[red]error[/red] cannot start the demo: {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print(endpoint_table(show.runner))
    console.print(
        f"broker mqtt://127.0.0.1:{show.broker_port}; {len(show.gateways)} gateways, "
        f"outboxes in {show.run_dir / 'gateways'}"
    )
    if show.desk is not None:
        desk = show.desk
        console.print(
            f"alarm console {desk.api_url}/ (sign in with token [bold]{desk.operator_token}"
            f"[/bold], user {OPERATOR_USER}); API docs {desk.api_url}/docs; mail catcher "
            f"smtp://127.0.0.1:{desk.mail.port}; the scripted crew acknowledges each alarm "
            f"{desk.crew_ack_after_s:.0f} s after it is raised, {show.crew_works}",
            highlight=False,
        )
    show.runner.on_advance.append(print_faults)
    task = asyncio.create_task(show.run(duration_s))
    try:
        await run_until_signalled(show_live(lambda: _demo_view(show, config), task, plain))
    finally:
        await cancel_and_wait(task)
        console.print("what happened:", *show.events, sep="\n  ", highlight=False, markup=False)
        await _print_queries(show)
        _print_notifications(show)
        await _write_handover(show)
        await show.stop()
        console.print(
            f"delivered {show.receiver.readings} readings in "
            f"{show.receiver.batches} batches; stopped"
        )


async def _print_queries(show: Demo) -> None:
    console.print(
        f"InfluxDB {show.influxdb.url}, database facility: "
        f"{show.store.points_written} points written, "
        f"{show.store.dead_letters.count()} readings in the dead-letter store"
    )
    for title, rows in await show.query_results():
        text = ", ".join(
            f"{tags} {value:.2f}" if isinstance(value, float) else f"{tags} {value}"
            for tags, value in rows[:8]
        )
        console.print(f"  {title}: {text or '(none yet)'}", highlight=False, markup=False)


async def _write_handover(show: Demo) -> None:
    try:
        report = await asyncio.to_thread(show.shift_handover)
    except ReportError as exc:
        err.print(f"[yellow]warning[/yellow] no shift handover report: {escape(str(exc))}")
        return
    if report is not None:
        console.print(f"shift handover report: file://{report}", highlight=False)


def _print_notifications(show: Demo) -> None:
    desk, notifier = show.desk, show.ingest.notifier
    if desk is None or notifier is None:
        return
    stats = notifier.stats()
    console.print(
        f"notifications: {len(desk.mail.mails)} mails at the mail catcher, "
        f"{len(desk.webhook.posts)} webhook posts; deliveries {stats.sent} sent, "
        f"{stats.pending} pending, {stats.abandoned} abandoned; the crew acknowledged "
        f"{desk.acks} and reset {desk.resets} alarms {show.crew_works}",
        highlight=False,
    )


def _demo_view(show: Demo, config: SiteConfig) -> Group:
    gateways = Table(title="Gateways → broker → ingest", title_justify="left")
    for col in ("gateway", "devices", "polled/s", "outbox", "in flight", "uplink", "delivered"):
        gateways.add_column(col, justify="left" if col in ("gateway", "devices") else "right")
    for row in show.rows():
        uplink = row.uplink if row.uplink == "up" else f"[red]{row.uplink}[/red]"
        gateways.add_row(
            row.gateway,
            row.devices,
            f"{row.polled_per_s:.0f}",
            str(row.outbox),
            str(row.in_flight),
            uplink,
            str(row.delivered),
        )
    stored = (
        f"ingest: {show.store.points_written} points in InfluxDB, "
        f"{show.store.refused} refused (dead letters)"
    )
    events = Text("\n".join([stored, *show.events[-8:]]))  # data: never markup
    return Group(live_table(show.runner, config), gateways, events)
