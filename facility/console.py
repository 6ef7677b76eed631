"""What the command-line tools share in how they speak to a person."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from facility.sourcemap import ConfigError


def exit_on_config_error(err: Console, exc: ConfigError, path: Path) -> NoReturn:
    """Every issue on its own line (file:line: field: message), a count, exit 1."""
    for issue in exc.issues:
        err.print(f"[red]error[/red] {issue}", highlight=False, soft_wrap=True)
    err.print(f"{len(exc.issues)} error(s) in {path}", highlight=False)
    raise typer.Exit(1) from None
