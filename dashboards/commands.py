"""`facility dashboards …`: build the Grafana boards from the site model, push them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from dashboards import build as boards
from dashboards import provisioning, push
from dashboards.model import Facts
from dashboards.validate import BoardInvalid
from facility.config import load_site_config
from facility.console import exit_on_config_error
from facility.sourcemap import ConfigError
from ingest.alarms.readout import RuleSet, load_rules

dashboards_app = typer.Typer(help="Grafana boards from the site model.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

DEFAULT_RULES = Path(__file__).resolve().parents[1] / "deploy" / "alarms" / "rules.yaml"
SitePath = Annotated[Path, typer.Argument(help="Site folder (every *.yaml a site) or one file.")]
RulesPath = Annotated[
    Path | None,
    typer.Option(
        help="Alarm rules: threshold lines come from them. Default: deploy/alarms/rules.yaml "
        "when it exists (else no rule lines); a file named here must exist.",
        show_default=False,
    ),
]


def _rules_path(given: Path | None) -> Path | None:
    """The rules file to read: the one named (which must exist), else the default if
    the checkout has it. A mistyped --rules must not quietly drop every rule line."""
    if given is None:
        return DEFAULT_RULES if DEFAULT_RULES.exists() else None
    if not given.is_file():
        err.print(
            f"[red]error[/red] rules file {escape(str(given))} does not exist", highlight=False
        )
        raise typer.Exit(1)
    return given


def _facts(site_path: Path, given_rules: Path | None) -> Facts:
    rules_path = _rules_path(given_rules)
    try:
        config = load_site_config(site_path)
    except ConfigError as exc:
        exit_on_config_error(err, exc, site_path)
    rules: RuleSet | None = None
    if rules_path is not None:
        try:
            rules = load_rules(rules_path, config)
        except ConfigError as exc:
            exit_on_config_error(err, exc, rules_path)
    return Facts(config, rules)


def _built(site_path: Path, rules_path: Path | None) -> dict[str, dict[str, Any]]:
    try:
        return boards.build_all(_facts(site_path, rules_path))
    except BoardInvalid as exc:  # a builder bug: nothing is written or pushed
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


@dashboards_app.command("build")
def build(
    site: SitePath,
    out: Annotated[Path, typer.Option(help="Folder for dashboards/ and provisioning/.")],
    rules: RulesPath = None,
    influx_url: Annotated[str, typer.Option(help="InfluxDB URL as Grafana reaches it.")] = (
        "http://influxdb:8086"
    ),
    database: Annotated[str, typer.Option(help="InfluxDB database.")] = "facility",
    dashboards_path: Annotated[
        str, typer.Option(help="Where Grafana finds the JSON (the provider's path).")
    ] = provisioning.DASHBOARDS_PATH,
) -> None:
    """Write the boards' JSON and Grafana provisioning files (data source, provider)."""
    built = _built(site, rules)
    written = boards.write(built, out / "dashboards")
    written += provisioning.write(out, influx_url, database, dashboards_path)
    for path in written:
        console.print(f"wrote {escape(str(path))}", highlight=False)


@dashboards_app.command("push")
def push_boards(
    site: SitePath,
    url: Annotated[str, typer.Option(help="Grafana URL, e.g. http://grafana:3000.")],
    token: Annotated[str, typer.Option(help="Service account token.", envvar="GRAFANA_TOKEN")],
    rules: RulesPath = None,
    folder: Annotated[str, typer.Option(help="Folder title (uid `facility`).")] = (
        provisioning.FOLDER
    ),
) -> None:
    """Upload the boards through Grafana's HTTP API, overwriting by uid."""
    built = _built(site, rules)
    api = push.connect(url, token)
    try:
        push.check_datasource(api)
        folder_uid = push.ensure_folder(api, folder)
        for done in push.push(api, built, folder_uid):
            console.print(
                f"pushed {escape(str(done.uid))} version {done.version} {escape(str(done.url))}",
                highlight=False,
            )
    except push.GrafanaError as exc:
        err.print(f"[red]error[/red] Grafana at {escape(url)}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
