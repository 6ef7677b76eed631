"""`facility`: the one command-line entry point of the platform.

Start-up matters (a gateway box, `--help`), so this module imports only typer and rich;
every command's own imports happen when that command runs (facility/lazycli.py).

To add a command, write it in its own module and add one line to COMMANDS below:
    Lazy("probe", "wiring.probe:probe", "Read one device and print what it answers."),
the target being a function (one command) or a typer.Typer (a group, `facility x y`), the
summary being the first paragraph of its help (tests/unit/test_cli.py compares them);
add extra="central" when it needs libraries a site gateway's install lacks.
A subcommand of `facility gateway` goes on `gateway_app` below; keep its heavy imports
inside the function body.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from facility.lazycli import Lazy, lazy_group

if TYPE_CHECKING:
    from facility.config import SiteConfig
    from gateway.daemon import Gateway

COMMANDS = [
    Lazy(
        "check",
        "wiring.cli:check",
        "Validate a site configuration and its device profiles, and the alarm rules and\n"
        "notifier config when given; list every error found in all of them.",
    ),
    Lazy(
        "simulate",
        "wiring.sim_commands:simulate",
        "Serve a simulated site over Modbus and MQTT and show its live readings.",
    ),
    Lazy(
        "record",
        "wiring.sim_commands:record",
        "Run the physics as fast as possible and record the feed to a file.",
    ),
    Lazy(
        "history",
        "wiring.demo_commands:history",
        "Fill InfluxDB with simulated history, as the gateways would have delivered it:\n"
        "readings, alarm events (a simulated crew acknowledges), KPIs and rollups.",
        extra="central",
    ),
    Lazy(
        "demo",
        "wiring.demo_commands:demo",
        "Simulated site + one gateway per station + broker + ingest with alarms, live.",
        extra="dev",
    ),
    Lazy(
        "probe",
        "wiring.probe:probe",
        "Read one device once with its profile and show what it answers.",
    ),
    Lazy("gateway", "wiring.cli:gateway_app", "The site gateway daemon."),
    Lazy(
        "broker",
        "wiring.broker_commands:broker_app",
        "The central MQTT broker: its configuration from the site model.",
    ),
    Lazy("ingest", "ingest.commands:ingest_app", "The ingest service.", extra="central"),
    Lazy(
        "dashboards",
        "dashboards.commands:dashboards_app",
        "Grafana boards from the site model.",
        extra="central",
    ),
    Lazy(
        "report",
        "dashboards.reports.commands:report_app",
        "Reports for supervisors: shift handover, daily, monthly.",
        extra="central",
    ),
]

app = typer.Typer(
    cls=lazy_group(COMMANDS),
    help="Facility telemetry: site model, simulators, gateways, ingest and alarms.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root() -> None:
    # A callback makes typer build a group even though every command is lazy.
    pass


# Piped output (CI logs, `| tee`) gets a wide console so the live table stays readable.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

SitePath = Annotated[
    Path, typer.Argument(help="Site folder (every *.yaml a site) or one site file.")
]


def _load(path: Path) -> SiteConfig:
    from facility.config import load_site_config
    from facility.console import exit_on_config_error
    from facility.sourcemap import ConfigError

    try:
        return load_site_config(path)
    except ConfigError as exc:
        exit_on_config_error(err, exc, path)


def check(
    path: SitePath,
    rules: Annotated[Path | None, typer.Option(help="Alarm rules to check against it.")] = None,
    notify: Annotated[
        Path | None, typer.Option(help="Notifier config to check (no secrets needed).")
    ] = None,
) -> None:
    """Validate a site configuration and its device profiles, and the alarm rules and
    notifier config when given; list every error found in all of them."""
    from facility.config import config_warnings
    from facility.console import exit_on_config_error, print_warnings
    from facility.sourcemap import ConfigError
    from wiring.check import check_configs

    report = check_configs(path, rules, notify)
    if report.site is not None:
        print_warnings(err, config_warnings(report.site))
    if report.issues:
        exit_on_config_error(err, ConfigError(report.issues), path)
    for line in report.checked:
        console.print(f"[green]ok[/green] {escape(line)}", highlight=False)


def _host_port(text: str | None, option: str) -> tuple[str, int] | None:
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        err.print(f"[red]error[/red] {option} {escape(repr(text))}: use HOST:PORT")
        raise typer.Exit(2)
    return host or "127.0.0.1", int(port)


GATEWAY_COMMANDS = [
    Lazy(
        "status",
        "gateway.status:status_command",
        "The gateway's health from its outbox and status file: no network needed.",
    ),
]
gateway_app = typer.Typer(
    cls=lazy_group(GATEWAY_COMMANDS), help="The site gateway daemon.", no_args_is_help=True
)


@gateway_app.command("run")
def gateway_run(
    site: Annotated[Path, typer.Option(help="Site folder or file.")],
    gateway: Annotated[
        str,
        typer.Option(
            help="Which gateway: SITE/STATION, e.g. fengshou/xiba (or fengshou-xiba, as "
            "systemd names the instance)."
        ),
    ],
    data_dir: Annotated[Path, typer.Option(help="Where the outbox lives.")] = Path("run/gateway"),
    uplink: Annotated[str | None, typer.Option(help="Central broker HOST:PORT (override).")] = None,
    devices_broker: Annotated[
        str | None, typer.Option(help="Broker of the MQTT devices HOST:PORT (override).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this local port.")
    ] = None,
    log_json: Annotated[bool, typer.Option(help="Log JSON lines.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Poll a station's devices, buffer every reading durably, deliver it upstream."""
    import asyncio
    import sqlite3

    from facility.logs import setup_logging
    from gateway.daemon import Gateway

    setup_logging(log_level, log_json)
    config = _load(site)
    # ids never hold "-" (IDENT_PATTERN), so SITE-STATION is as unambiguous as SITE/STATION
    site_id, _, station_id = gateway.replace("-", "/", 1).partition("/")
    try:
        config.site(site_id).station(station_id)
    except KeyError:
        err.print(
            f"[red]error[/red] --gateway {escape(repr(gateway))}: no such SITE/STATION in "
            f"{escape(str(site))}"
        )
        raise typer.Exit(2) from None
    try:
        daemon = Gateway(
            config,
            site_id,
            station_id,
            data_dir,
            uplink_address=_host_port(uplink, "--uplink"),
            devices_address=_host_port(devices_broker, "--devices-broker"),
            metrics_port=metrics_port,
        )
    except (OSError, sqlite3.DatabaseError) as exc:  # disk full, unreadable or corrupt outbox
        err.print(
            f"[red]error[/red] cannot open the outbox in {escape(str(data_dir))}: "
            f"{escape(str(exc))}"
        )
        raise typer.Exit(1) from None
    asyncio.run(_run_gateway(daemon, site))


async def _run_gateway(daemon: Gateway, site: Path) -> None:
    import asyncio
    import logging
    import signal

    from facility.aio import stop_on_signals
    from facility.config import load_site_config
    from facility.sourcemap import ConfigError

    log = logging.getLogger("facility.gateway")
    stop = stop_on_signals()
    reloads: asyncio.Queue[None] = asyncio.Queue()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloads.put_nowait, None)
    await daemon.serve_metrics()
    daemon.start()
    while not stop.is_set():
        waiter = asyncio.create_task(reloads.get())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if stop.is_set():
            break
        try:
            await daemon.reload(load_site_config(site))
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration:\n%s", exc)
    log.info("stopping")
    await daemon.stop()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    # `python -m wiring.cli` runs this file as __main__: hand over to the imported
    # module, so lazily loaded commands that import wiring.cli share its objects.
    from wiring.cli import main as imported_main

    imported_main()
