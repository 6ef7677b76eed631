"""`facility check`: a site model, and the alarm rules and notifier config that run on it,
checked together before anything runs, every error of every file in one report.

The notifier's config is checked without its secrets (an engineer's machine has none
of the crew's mail passwords): a variable that is not set is no error here, only where
the notifier starts. Rules are bound to the site model; if the site has errors they
are checked for their shape only, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from facility.cli_args import SitePath
from facility.config import SiteConfig, config_warnings, load_site_config
from facility.console import console, err, exit_on_config_error, print_warnings
from facility.salvage import validate_salvaging
from facility.sourcemap import ConfigError, ConfigIssue, load_yaml

# The rules and notifier modules need the central extra (simpleeval, Apprise); a site
# gateway's install checks its site model without them, so they load only when asked.
CENTRAL_NEEDED = "checking --rules or --notify needs the central install: " + (
    "pip install 'facility-telemetry[central]'"
)


@dataclass
class CheckReport:
    issues: list[ConfigIssue] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # one line per file: what it holds
    site: SiteConfig | None = None  # the site model, if it loaded


def check_configs(site: Path, rules: Path | None = None, notify: Path | None = None) -> CheckReport:
    report = CheckReport()
    config = report.site = _check_site(site, report)
    if rules is not None:
        _check_rules(rules, config, report)
    if notify is not None:
        _check_notify(notify, report)
    report.issues.sort()
    return report


def _check_site(path: Path, report: CheckReport) -> SiteConfig | None:
    try:
        config = load_site_config(path)
    except ConfigError as exc:
        report.issues += exc.issues
        return None
    stations = sum(len(s.stations) for s in config.sites)
    report.checked.append(
        f"{path}: {len(config.sites)} sites, {stations} stations, "
        f"{len(list(config.assets()))} assets, {len(config.profiles)} device profiles"
    )
    return config


def _check_rules(path: Path, config: SiteConfig | None, report: CheckReport) -> None:
    try:
        from ingest.alarms.rules import RulesFile, load_rules
    except ModuleNotFoundError as exc:
        raise SystemExit(f"{CENTRAL_NEEDED} ({exc.name} is missing)") from exc
    try:
        if config is None:
            _, issues, _ = validate_salvaging(RulesFile, load_yaml(path))
            report.issues += issues
            report.checked.append(f"{path}: shape only (the site model has errors)")
            return
        rules = load_rules(path, config)
    except ConfigError as exc:
        report.issues += exc.issues
        return
    report.checked.append(
        f"{path}: {len(rules.rules)} alarm rules, {len(rules.bound)} on the site's assets"
    )


def _check_notify(path: Path, report: CheckReport) -> None:
    try:
        from ingest.alarms.notify.config import load_notify_config
    except ModuleNotFoundError as exc:
        raise SystemExit(f"{CENTRAL_NEEDED} ({exc.name} is missing)") from exc
    try:
        notify = load_notify_config(path, secrets=False)
    except ConfigError as exc:
        report.issues += exc.issues
        return
    report.checked.append(
        f"{path}: {len(notify.people)} people, {len(notify.crews)} crews, "
        f"{len(notify.routes)} routes (secrets not checked)"
    )


def check(
    path: SitePath,
    rules: Annotated[Path | None, typer.Option(help="Alarm rules to check against it.")] = None,
    notify: Annotated[
        Path | None, typer.Option(help="Notifier config to check (no secrets needed).")
    ] = None,
) -> None:
    """Validate a site configuration and its device profiles, and the alarm rules and
    notifier config when given; list every error found in all of them."""
    report = check_configs(path, rules, notify)
    if report.site is not None:
        print_warnings(err, config_warnings(report.site))
    if report.issues:
        exit_on_config_error(err, ConfigError(report.issues), path)
    for line in report.checked:
        console.print(f"[green]ok[/green] {escape(line)}", highlight=False)
