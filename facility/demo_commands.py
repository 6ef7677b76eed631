"""`facility simulate|record|history|demo`: the simulated site, its history and the demo.

Loaded only when one of these commands runs (facility/cli.py registers them lazily): they
pull in the physics, the whole central stack and matplotlib.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dashboards.reports.data import ReportError
from facility.aio import cancel_and_wait, stop_on_signals
from facility.alarm_desk import OPERATOR_USER
from facility.cli import SitePath, _host_port, _load, console, err
from facility.config import SiteConfig
from facility.demo import Demo, Outage
from facility.history import InfluxTarget, SimulatedHistory, fill_influx
from facility.logs import setup_logging
from facility.site import Broker
from facility.sourcemap import ConfigError
from simulators.clock import SimClock, parse_duration
from simulators.display import station_rows
from simulators.engine import Advance, FeedSource, Simulation
from simulators.feed import Replay, feed_header
from simulators.feed import record as record_feed
from simulators.runner import DeviceClock, SiteRunner
from simulators.scenario import NOMINAL, Scenario, load_scenario

DISPLAY_TZ = ZoneInfo("Asia/Shanghai")  # the demo sites' time zone; readings stay UTC
DEMO_RULES = Path(__file__).resolve().parents[1] / "deploy" / "alarms" / "rules.yaml"
DEMO_NOTIFY = DEMO_RULES.with_name("notify.yaml")


def _start_ms(start: str | None) -> int:
    if start is None:
        return int(time.time() * 1000)
    try:
        return int(datetime.fromisoformat(start).timestamp() * 1000)
    except ValueError:
        err.print(
            f"[red]error[/red] --start {escape(repr(start))}: "
            "use ISO 8601, e.g. 2026-06-01T06:00:00+08:00"
        )
        raise typer.Exit(2) from None


def _scenario(path: Path | None, config: SiteConfig) -> Scenario:
    if path is None:
        return NOMINAL
    try:
        return load_scenario(path, config)
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(f"[red]error[/red] {escape(str(issue))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _scenario_start(start: str | None, scen: Scenario) -> int:
    """--start wins; then the scenario's own start; then now."""
    if start is None and scen.start is not None:
        return int(scen.start.timestamp() * 1000)
    return _start_ms(start)


def simulate(
    path: SitePath,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    scenario: Annotated[Path | None, typer.Option(help="Scenario file (faults to inject).")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: scenario's or 1).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="Simulated start time, ISO 8601.")] = None,
    duration: Annotated[
        str | None, typer.Option(help="Stop after this simulated time (6h).")
    ] = None,
    replay: Annotated[
        Path | None, typer.Option(help="Serve a recorded feed instead of physics.")
    ] = None,
    broker: Annotated[
        str | None, typer.Option(help="MQTT broker HOST:PORT for MQTT devices.")
    ] = None,
    uplink: Annotated[
        str | None,
        typer.Option(help="Central broker HOST:PORT: open a cuttable link per gateway to it."),
    ] = None,
    any_port: Annotated[bool, typer.Option(help="Bind TCP buses to free ports.")] = False,
    plain: Annotated[bool, typer.Option(help="Print lines instead of a live table.")] = False,
    step: Annotated[float, typer.Option(help="Physics step, simulated seconds.")] = 1.0,
    device_clock: Annotated[
        DeviceClock,
        typer.Option(help="MQTT devices' `ts`: simulated time, or the real time it maps to."),
    ] = DeviceClock.SIMULATED,
) -> None:
    """Serve a simulated site over Modbus and MQTT and show its live readings."""
    config = _load(path)
    scen = _scenario(scenario, config)
    source: FeedSource
    if replay is not None:
        source = Replay(replay)
        start_ms = int(feed_header(replay)["start_ms"])
    else:
        start_ms = _scenario_start(start, scen)
        source = Simulation(
            config,
            seed=seed if seed is not None else (scen.seed or 1),
            start_ms=start_ms,
            scenario=scen,
            step_s=step,
        )
    seconds = (
        parse_duration(duration)
        if duration
        else (scen.duration_s if scenario is not None else None)
    )
    asyncio.run(
        _serve(
            config,
            source,
            start_ms,
            speed,
            seconds,
            any_port,
            _host_port(broker, "--broker"),
            _host_port(uplink, "--uplink"),
            plain,
            device_clock,
        )
    )


async def _serve(
    config: SiteConfig,
    source: FeedSource,
    start_ms: int,
    speed: float,
    duration_s: float | None,
    any_port: bool,
    broker: tuple[str, int] | None,
    uplink: tuple[str, int] | None,
    plain: bool,
    device_clock: DeviceClock = DeviceClock.SIMULATED,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    runner = SiteRunner(
        config,
        source,
        SimClock(start_ms, speed),
        any_port=any_port,
        broker=Broker(host=broker[0], port=broker[1]) if broker else None,
        uplink_target=uplink,
        device_clock=device_clock,
    )
    try:
        await runner.start()
    except (OSError, RuntimeError) as exc:
        err.print(f"[red]error[/red] cannot start the simulated devices: {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print(_endpoint_table(runner))
    runner.on_advance.append(_print_faults)
    stop = stop_on_signals()
    runner_task = asyncio.create_task(runner.run(duration_s))
    try:
        await _show_live(lambda: _live_table(runner, config), stop, runner_task, plain)
    finally:
        await cancel_and_wait(runner_task)
        await runner.stop()


def _print_faults(adv: Advance) -> None:
    for event in adv.faults:
        state = "[red]FAULT[/red]" if event.active else "[green]cleared[/green]"
        expect = (
            f" → expect {event.fault.expect.alarm}" if event.fault.expect and event.active else ""
        )
        console.print(
            f"{_fmt_time(event.t_ms)} {state} {event.fault.kind.value} "
            f"{escape(str(event.fault.target))}{escape(expect)}",
            highlight=False,
        )


def _fmt_time(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, DISPLAY_TZ).strftime("%Y-%m-%d %H:%M:%S %z")


async def _show_live(
    view: Callable[[], RenderableType],
    stop: asyncio.Event,
    task: asyncio.Task[None],
    plain: bool,
) -> None:
    """Redraw `view` until stopped or the task ends: a live table on a terminal, a printed
    one every few seconds otherwise (logs, pipes)."""
    if plain or not console.is_terminal:
        while not stop.is_set() and not task.done():
            console.print(view())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.shield(task)
        console.print(view())
        return
    with Live(view(), console=console, refresh_per_second=1) as live:
        while not stop.is_set() and not task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await stop.wait()
            live.update(view())


def _endpoint_table(runner: SiteRunner) -> Table:
    table = Table(title="Simulated devices", title_justify="left")
    table.add_column("station")
    table.add_column("listens on")
    table.add_column("unit ids")
    for ep in runner.endpoints:
        units = ", ".join(f"{u}={k[2]}" for u, k in sorted(ep.units.items()))
        table.add_row("/".join(ep.station), ep.address, units)
    for (host, port), _ in runner.publishers.items():
        table.add_row("MQTT devices", f"mqtt {host}:{port}", "barrier gates, lot counters")
    for key, proxy in runner.links.items():
        table.add_row(
            "/".join(key),
            f"uplink link 127.0.0.1:{proxy.listen_port}",
            f"→ {proxy.target_host}:{proxy.target_port}",
        )
    return table


def _live_table(runner: SiteRunner, config: SiteConfig) -> Table:
    table = Table(title=f"Simulated time {_fmt_time(runner.source.t_ms)}", title_justify="left")
    for col, justify in (
        ("station", "left"),
        ("pumps", "left"),
        ("flow m³/h", "right"),
        ("tank levels", "left"),
        ("transformer", "right"),
        ("other", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in station_rows(config, runner.source, runner.mqtt_latest):
        table.add_row(row.station, row.pumps, row.flow, row.tanks, row.power, row.other)
    return table


def record(
    path: SitePath,
    out: Annotated[Path, typer.Option(help="Feed file to write (JSON Lines).")],
    duration: Annotated[str, typer.Option(help="Simulated time to record (e.g. 1d).")] = "1h",
    scenario: Annotated[Path | None, typer.Option(help="Scenario file.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    start: Annotated[str | None, typer.Option(help="Simulated start, ISO 8601.")] = None,
    sample: Annotated[str, typer.Option(help="Snapshot interval of polled devices.")] = "10s",
    step: Annotated[float, typer.Option(help="Physics step, simulated seconds.")] = 1.0,
) -> None:
    """Run the physics as fast as possible and record the feed to a file."""
    config = _load(path)
    scen = _scenario(scenario, config)
    sim = Simulation(
        config, seed=seed, start_ms=_scenario_start(start, scen), scenario=scen, step_s=step
    )
    t0 = time.perf_counter()
    with open(out, "w", encoding="utf-8") as f:
        count = record_feed(
            sim, f, duration_s=parse_duration(duration), sample_s=parse_duration(sample)
        )
    console.print(
        f"recorded {count} records to {escape(str(out))} in {time.perf_counter() - t0:.1f} s"
    )


def history(
    path: SitePath,
    influx_url: Annotated[str, typer.Option(help="InfluxDB 1.x URL.")] = "http://127.0.0.1:8086",
    database: Annotated[str, typer.Option(help="Database to fill.")] = "facility",
    duration: Annotated[str, typer.Option(help="Simulated time (e.g. 1d).")] = "1d",
    scenario: Annotated[Path | None, typer.Option(help="Scenario file (faults).")] = None,
    start: Annotated[
        str | None, typer.Option(help="Start, ISO 8601; default: that long before now.")
    ] = None,
    poll: Annotated[str, typer.Option(help="Poll interval of the simulated gateways.")] = "60s",
    rules: Annotated[Path | None, typer.Option(help="Alarm rules (alarm events, KPIs).")] = None,
    data_dir: Annotated[Path, typer.Option(help="Alarm book and dead letters.")] = Path(
        "var/history"
    ),
) -> None:
    """Fill InfluxDB with simulated history, as the gateways would have delivered it:
    readings, alarm events (a simulated crew acknowledges), KPIs and rollups."""
    config = _load(path)
    scen = _scenario(scenario, config)
    seconds = parse_duration(duration)
    begin = _start_ms(start) if start else int(time.time() * 1000 - seconds * 1000)
    past = SimulatedHistory(config, scen, begin, poll_s=parse_duration(poll))
    t0 = time.perf_counter()
    result = asyncio.run(
        fill_influx(past, InfluxTarget(influx_url, database), data_dir, rules, seconds)
    )
    console.print(
        f"{result.readings} readings in {result.batches} batches from {_fmt_time(begin)}: "
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
    config = _load(path)
    scen = _scenario(scenario, config)
    start_ms = _scenario_start(start, scen)
    source = Simulation(
        config,
        seed=seed if seed is not None else (scen.seed or 1),
        start_ms=start_ms,
        scenario=scen,
    )
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
    console.print(_endpoint_table(show.runner))
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
    show.runner.on_advance.append(_print_faults)
    stop = stop_on_signals()
    task = asyncio.create_task(show.run(duration_s))
    try:
        await _show_live(lambda: _demo_view(show, config), stop, task, plain)
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
    return Group(_live_table(show.runner, config), gateways, events)
