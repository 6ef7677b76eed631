"""What the command-line tools share in how they speak to a person.

Anything that comes from data or config (a file name, a profile name, a dead letter, a
reason quoting a pattern like `^[a-z]...$`) goes through rich.markup.escape or is printed
with markup off: rich would read `[/oops]` as a closing tag (MarkupError, a traceback
instead of the message) and swallow `[a-z]` as a style.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:  # the `--help` of a command must not pay for pydantic and yaml
    from facility.sourcemap import ConfigError, ConfigIssue

# Piped output (CI logs, `| tee`) gets a wide console so a live table stays readable.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def exit_on_config_error(err: Console, exc: ConfigError, path: Path) -> NoReturn:
    """Every issue on its own line (file:line: field: message), a count, exit 1."""
    for issue in exc.issues:
        err.print(f"[red]error[/red] {escape(str(issue))}", highlight=False, soft_wrap=True)
    err.print(f"{len(exc.issues)} error(s) in {escape(str(path))}", highlight=False)
    raise typer.Exit(1) from None


def print_warnings(err: Console, warnings: list[ConfigIssue]) -> None:
    for issue in warnings:
        err.print(f"[yellow]warning[/yellow] {escape(str(issue))}", highlight=False, soft_wrap=True)
