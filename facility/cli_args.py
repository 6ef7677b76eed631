"""The arguments several `facility` commands take, read the same way by each.

Imported by command modules at load time, so it imports only typer and rich; the site
model's code comes in when a command runs (`facility gateway run --help` stays cheap).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from facility.console import err, exit_on_config_error

if TYPE_CHECKING:
    from facility.config import SiteConfig

SitePath = Annotated[
    Path, typer.Argument(help="Site folder (every *.yaml a site) or one site file.")
]


def load_site(path: Path) -> SiteConfig:
    """The site model at `path`, or every error in it on stderr and exit 1."""
    from facility.config import load_site_config
    from facility.sourcemap import ConfigError

    try:
        return load_site_config(path)
    except ConfigError as exc:
        exit_on_config_error(err, exc, path)


def host_port(text: str | None, option: str) -> tuple[str, int] | None:
    """`HOST:PORT` (an empty host is 127.0.0.1); a malformed one names `option`, exit 2."""
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        err.print(f"[red]error[/red] {option} {escape(repr(text))}: use HOST:PORT")
        raise typer.Exit(2)
    return host or "127.0.0.1", int(port)
