"""Commands whose code is imported only when they run.

`facility --help` must answer in well under a second on a site gateway, yet the central
commands pull in FastAPI, matplotlib and the Grafana libraries, and a gateway box does not
even have those installed. So the top-level group lists every command from a placeholder
that knows only its name and one-line help, and swaps in the real command (importing its
module) when the command line names it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer import _click as click  # typer 0.29 carries its own click; its classes must match
from typer.core import TyperCommand, TyperGroup

OUR_PACKAGES = frozenset(("facility", "gateway", "ingest", "dashboards", "simulators"))


@dataclass(frozen=True)
class Lazy:
    """A command registered by where its code lives.

    target: "package.module:attribute", either a `typer.Typer` (a command group, e.g.
    `facility ingest …`) or a plain function (one command, named `name`, its options
    declared with typer annotations as usual).
    summary: what `facility --help` shows; tests/unit/test_cli.py checks it against the
    loaded command's own help, so a stale summary fails the suite.
    extra: the package extra the command needs beyond the core install (a site gateway
    has only the core): named when its libraries are missing.
    """

    name: str
    target: str
    summary: str
    extra: str | None = None

    def load(self) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if self.extra is None or (exc.name or "").partition(".")[0] in OUR_PACKAGES:
                raise
            typer.echo(
                f"error: `facility {self.name}` needs the library {exc.name!r}, which this "
                f"install lacks: pip install 'facility-telemetry[{self.extra}]'",
                err=True,
            )
            raise typer.Exit(1) from None
        obj = getattr(module, attribute)
        command: click.Command
        if isinstance(obj, typer.Typer):
            command = typer.main.get_group(obj)  # a group even with one command, as add_typer
        else:
            single = typer.Typer(add_completion=False)
            single.command(self.name)(obj)
            command = typer.main.get_command(single)
        command.name = self.name
        return command


class Placeholder(TyperCommand):
    """Stands in a command list for a command not yet imported."""

    def __init__(self, entry: Lazy) -> None:
        super().__init__(entry.name, help=entry.summary)
        self.entry = entry


def lazy_group(commands: list[Lazy]) -> type[TyperGroup]:
    """A group class (`typer.Typer(cls=...)`) that lists `commands` after the group's own."""

    class LazyGroup(TyperGroup):
        def __init__(self, **attrs: Any) -> None:
            super().__init__(**attrs)
            for entry in commands:
                self.commands.setdefault(entry.name, Placeholder(entry))

        def resolve_command(
            self, ctx: click.Context, args: list[str]
        ) -> tuple[str | None, click.Command | None, list[str]]:
            if args:
                found = self.commands.get(args[0])
                if isinstance(found, Placeholder):
                    self.commands[args[0]] = found.entry.load()
            return super().resolve_command(ctx, args)

    return LazyGroup
