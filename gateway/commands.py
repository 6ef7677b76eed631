"""`facility gateway …`: run the site gateway daemon, read its health from disk.

Loaded when the command line names `facility gateway`, often only for `--help`: so this
module imports only typer and rich, and each command imports the daemon when it runs.
A new subcommand goes on `gateway_app` below, or in its own module listed in
GATEWAY_COMMANDS when its imports are heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from facility.cli_args import host_port, load_site
from facility.console import err
from facility.lazycli import Lazy, lazy_group

if TYPE_CHECKING:
    from gateway.daemon import Gateway

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
def run(
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
    config = load_site(site)
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
            uplink_address=host_port(uplink, "--uplink"),
            devices_address=host_port(devices_broker, "--devices-broker"),
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
    import logging

    from facility.aio import run_until_signalled
    from facility.config import load_site_config
    from facility.sourcemap import ConfigError

    log = logging.getLogger("facility.gateway")

    async def start() -> None:
        await daemon.serve_metrics()
        daemon.start()

    async def reload() -> None:
        try:
            await daemon.reload(load_site_config(site))
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration:\n%s", exc)

    await run_until_signalled(start=start, reload=reload)
    log.info("stopping")
    await daemon.stop()
