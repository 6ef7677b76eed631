"""`facility simulate|record`: a simulated site served over Modbus and MQTT, or its feed.

Loaded only when one of these commands runs (wiring/cli.py registers them lazily). It
needs only the core install (no central server libraries), so a test bench can run it.
The demo (wiring/demo_commands.py) shows its site with the same tables and live view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from facility.aio import cancel_and_wait, run_until_signalled
from facility.cli_args import SitePath, host_port, load_site
from facility.clock import now_ms
from facility.config import SiteConfig
from facility.console import console, err
from facility.site import Broker
from facility.sourcemap import ConfigError
from simulators.clock import SimClock, parse_duration
from simulators.display import station_rows
from simulators.engine import Advance, FeedSource, Simulation
from simulators.feed import Replay, feed_header
from simulators.feed import record as record_feed
from simulators.runner import DeviceClock, SiteRunner
from simulators.scenario import NOMINAL, Scenario, link_faults, load_scenario

DISPLAY_TZ = ZoneInfo("Asia/Shanghai")  # the demo sites' time zone; readings stay UTC


def parse_start(start: str | None) -> int:
    if start is None:
        return now_ms()
    try:
        return int(datetime.fromisoformat(start).timestamp() * 1000)
    except ValueError:
        err.print(
            f"[red]error[/red] --start {escape(repr(start))}: "
            "use ISO 8601, e.g. 2026-06-01T06:00:00+08:00"
        )
        raise typer.Exit(2) from None


def read_scenario(path: Path | None, config: SiteConfig) -> Scenario:
    if path is None:
        return NOMINAL
    try:
        return load_scenario(path, config)
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(f"[red]error[/red] {escape(str(issue))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def scenario_start(start: str | None, scen: Scenario) -> int:
    """--start wins; then the scenario's own start; then now."""
    if start is None and scen.start is not None:
        return int(scen.start.timestamp() * 1000)
    return parse_start(start)


def scenario_simulation(
    config: SiteConfig, scen: Scenario, seed: int | None, start_ms: int, step_s: float = 1.0
) -> Simulation:
    """--seed wins; then the scenario's own seed; then 1."""
    return Simulation(
        config,
        seed=seed if seed is not None else (scen.seed or 1),
        start_ms=start_ms,
        scenario=scen,
        step_s=step_s,
    )


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
    config = load_site(path)
    scen = read_scenario(scenario, config)
    if uplink is None and link_faults(scen):
        err.print(
            f"[red]error[/red] {escape(str(scenario))}: {link_faults(scen)[0].target}: "
            "gateway_link_down cuts a gateway's link to its central broker; give --uplink "
            "HOST:PORT (the broker) and point the gateway at its link's port, or it cuts nothing"
        )
        raise typer.Exit(2)
    source: FeedSource
    if replay is not None:
        source = Replay(replay)
        start_ms = int(feed_header(replay)["start_ms"])
    else:
        start_ms = scenario_start(start, scen)
        source = scenario_simulation(config, scen, seed, start_ms, step)
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
            host_port(broker, "--broker"),
            host_port(uplink, "--uplink"),
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
    console.print(endpoint_table(runner))
    runner.on_advance.append(print_faults)
    runner_task = asyncio.create_task(runner.run(duration_s))
    try:
        await run_until_signalled(show_live(lambda: live_table(runner, config), runner_task, plain))
    finally:
        await cancel_and_wait(runner_task)
        await runner.stop()


def print_faults(adv: Advance) -> None:
    for event in adv.faults:
        state = "[red]FAULT[/red]" if event.active else "[green]cleared[/green]"
        expect = (
            f" → expect {event.fault.expect.alarm}" if event.fault.expect and event.active else ""
        )
        console.print(
            f"{fmt_time(event.t_ms)} {state} {event.fault.kind.value} "
            f"{escape(str(event.fault.target))}{escape(expect)}",
            highlight=False,
        )


def fmt_time(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, DISPLAY_TZ).strftime("%Y-%m-%d %H:%M:%S %z")


async def show_live(
    view: Callable[[], RenderableType], task: asyncio.Task[None], plain: bool
) -> None:
    """Redraw `view` until the task ends or this is cancelled (a stop signal), the last
    view drawn after either: a live table on a terminal, a printed one every few seconds
    otherwise (logs, pipes)."""
    if plain or not console.is_terminal:
        try:
            while not task.done():
                console.print(view())
                await asyncio.wait({task}, timeout=5.0)
        finally:
            console.print(view())
        return
    with Live(view(), console=console, refresh_per_second=1) as live:
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                live.update(view())
        finally:
            live.update(view())


def endpoint_table(runner: SiteRunner) -> Table:
    table = Table(title="Simulated devices", title_justify="left")
    table.add_column("station")
    table.add_column("listens on")
    table.add_column("unit ids")
    for ep in runner.endpoints:
        units = ", ".join(f"{u}={k[2]}" for u, k in sorted(ep.units.items()))
        table.add_row("/".join(ep.station), ep.address, units)
    for (host, port), _ in runner.publishers.items():
        devices = runner.mqtt_devices((host, port))
        shown = ", ".join(d.split("/")[-1] for d in devices[:6])
        more = f" and {len(devices) - 6} more" if len(devices) > 6 else ""
        table.add_row("MQTT devices", f"mqtt {host}:{port}", shown + more)
    for key, proxy in runner.links.items():
        table.add_row(
            "/".join(key),
            f"uplink link 127.0.0.1:{proxy.listen_port}",
            f"→ {proxy.target_host}:{proxy.target_port}",
        )
    return table


def live_table(runner: SiteRunner, config: SiteConfig) -> Table:
    table = Table(title=f"Simulated time {fmt_time(runner.source.t_ms)}", title_justify="left")
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
    config = load_site(path)
    scen = read_scenario(scenario, config)
    sim = Simulation(
        config, seed=seed, start_ms=scenario_start(start, scen), scenario=scen, step_s=step
    )
    t0 = time.perf_counter()
    with open(out, "w", encoding="utf-8") as f:
        count = record_feed(
            sim, f, duration_s=parse_duration(duration), sample_s=parse_duration(sample)
        )
    console.print(
        f"recorded {count} records to {escape(str(out))} in {time.perf_counter() - t0:.1f} s"
    )
