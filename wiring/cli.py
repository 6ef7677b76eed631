"""`facility`: the one command-line entry point of the platform.

Start-up matters (a gateway box, `--help`), so this module imports only typer and rich;
every command's own imports happen when that command runs (facility/lazycli.py).

Each package owns its commands (`gateway/commands.py`, `simulators/commands.py`,
`ingest/commands.py`, `dashboards/commands.py`); this file only mounts them, and the
commands that cross packages (check, demo, history, broker) live beside it in wiring/.
To add a command, write it in its package's commands module (or a module of its own)
and add one line to COMMANDS below:
    Lazy("probe", "gateway.probe_commands:probe", "Read one device and print what it answers."),
the target being a function (one command) or a typer.Typer (a group, `facility x y`), the
summary being the first paragraph of its help (tests/unit/test_cli.py compares them);
add extra="central" when it needs libraries a site gateway's install lacks.
A subcommand of `facility gateway` goes on `gateway_app` in gateway/commands.py. Keep
a command module's heavy imports inside the command's body when its `--help` is
reachable from a group (`facility gateway run --help` must not load the daemon).
A daemon's command runs until signalled with facility.aio.run_until_signalled.
"""

from __future__ import annotations

import sys

import typer

from facility.lazycli import Lazy, lazy_group

COMMANDS = [
    Lazy(
        "check",
        "wiring.check:check",
        "Validate a site configuration and its device profiles, and the alarm rules and\n"
        "notifier config when given; list every error found in all of them.",
    ),
    Lazy(
        "simulate",
        "simulators.commands:simulate",
        "Serve a simulated site over Modbus and MQTT and show its live readings.",
    ),
    Lazy(
        "record",
        "simulators.commands:record",
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
        "gateway.probe_commands:probe",
        "Read one device once with its profile and show what it answers.",
    ),
    Lazy("gateway", "gateway.commands:gateway_app", "The site gateway daemon."),
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    # `python -m wiring.cli` runs this file as __main__: hand over to the imported
    # module, so there is one `app` (with its loaded commands) however it was started.
    from wiring.cli import main as imported_main

    imported_main()
