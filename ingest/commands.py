"""`facility ingest …`: run the service, prepare the database, look after dead letters."""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from facility.aio import run_until_signalled
from facility.clock import now_ms
from facility.console import exit_on_config_error
from facility.logs import setup_logging
from facility.sourcemap import ConfigError
from ingest.config import IngestConfig, load_ingest_config
from ingest.deadletters import DeadLetters
from ingest.influx import InfluxError, InfluxV1Writer
from ingest.replay import replay
from ingest.schema import init_database, measurements, rollup_range
from ingest.service import IngestService, make_writer
from ingest.store import InfluxStore
from ingest.validate import Validator

ingest_app = typer.Typer(help="The ingest service.", no_args_is_help=True)
letters_app = typer.Typer(help="Readings the ingest refused.", no_args_is_help=True)
ingest_app.add_typer(letters_app, name="dead-letters")
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

ConfigPath = Annotated[Path, typer.Option("--config", help="The ingest's config file.")]


def _config(path: Path) -> IngestConfig:
    try:
        return load_ingest_config(path)
    except ConfigError as exc:
        exit_on_config_error(err, exc, path)


def _v1_writer(config: IngestConfig) -> InfluxV1Writer:
    writer = make_writer(config)
    if not isinstance(writer, InfluxV1Writer):
        err.print(
            "[red]error[/red] this needs InfluxQL administration (influxdb.api: v1); on "
            "InfluxDB 2.x/3.x set up buckets and downsampling as docs/ingest.md says"
        )
        raise typer.Exit(2)
    return writer


@ingest_app.command("run")
def run(
    config_path: ConfigPath,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this local port.")
    ] = None,
    http_log: Annotated[
        bool, typer.Option(help="Log every HTTP request the ingest makes (InfluxDB, webhooks).")
    ] = False,
    log_json: Annotated[bool, typer.Option(help="Log JSON lines.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Receive gateway batches, validate, write to InfluxDB, acknowledge."""
    setup_logging(log_level, log_json)
    if not http_log:
        # httpx logs every request at INFO: one line per InfluxDB write drowns the log.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    config = _config(config_path)
    try:
        service = IngestService(config, metrics_port=metrics_port)
    except (OSError, sqlite3.DatabaseError) as exc:
        err.print(f"[red]error[/red] cannot open the dead-letter store: {escape(str(exc))}")
        raise typer.Exit(1) from None
    asyncio.run(_serve(service))


def tune_gc() -> None:
    """A batch makes ~16,000 short-lived objects: with the default thresholds the
    collector runs far too often (bench/bench_ingest.py: 255k -> 287k readings/s).
    Freezing moves everything loaded at start out of its way."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])


async def _serve(service: IngestService) -> None:
    log = logging.getLogger("facility.ingest")
    tune_gc()

    async def start() -> None:
        try:
            await service.start()
        except OSError as exc:  # the API's or the metrics' port is taken
            log.critical("cannot start: %s", exc)
            await service.stop()
            raise SystemExit(1) from None

    async def reload() -> None:
        try:
            found = load_ingest_config(service.config.file)
            for note in service.reload(found.site, found.settings):
                log.warning("%s", note)
            log.info("site model reloaded")
        except ConfigError as exc:
            log.error("reload refused, keeping the running site model:\n%s", exc)

    await run_until_signalled(start=start, reload=reload)
    log.info("stopping")
    await service.stop()


@ingest_app.command("init")
def init(config_path: ConfigPath) -> None:
    """Create the database, retention policies and rollup continuous queries (1.x)."""
    config = _config(config_path)
    done = asyncio.run(_init(config))
    for statement in done:
        console.print(statement, highlight=False, soft_wrap=True, markup=False)
    console.print(f"{len(done)} statement(s); database ready", highlight=False)


async def _init(config: IngestConfig) -> list[str]:
    writer = _v1_writer(config)
    try:
        return await init_database(writer, writer.database, config.settings.retention)
    except InfluxError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    finally:
        await writer.close()


@ingest_app.command("rollup")
def rollup(
    config_path: ConfigPath,
    since: Annotated[str, typer.Option(help="Start, ISO 8601 (UTC if no zone).")],
    until: Annotated[str | None, typer.Option(help="End, ISO 8601; default now.")] = None,
) -> None:
    """Recompute the 1-minute and 1-hour rollups over a range (after a long outage)."""
    config = _config(config_path)
    since_ms, until_ms = _instant(since), _instant(until) if until else now_ms()
    points = asyncio.run(_rollup(config, since_ms, until_ms))
    console.print(f"{points} rollup points written", highlight=False)


async def _rollup(config: IngestConfig, since_ms: int, until_ms: int) -> int:
    writer = _v1_writer(config)
    try:
        names = await measurements(writer, writer.database)  # half influxd's CPU of /.*/
        return await rollup_range(writer, writer.database, since_ms, until_ms, measurements=names)
    finally:
        await writer.close()


def _instant(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        err.print(
            f"[red]error[/red] {escape(repr(text))} is not an ISO 8601 time (2026-11-22T06:00)"
        )
        raise typer.Exit(2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@letters_app.command("list")
def letters_list(
    config_path: ConfigPath,
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    all_: Annotated[bool, typer.Option("--all", help="Replayed ones too.")] = False,
) -> None:
    """List refused readings, lines and batches with their reasons."""
    config = _config(config_path)
    store = DeadLetters(config.dead_letters_path)
    letters = store.latest(limit, site=site, pending_only=not all_)
    table = Table("id", "received (UTC)", "gateway", "kind", "reason", "content", "replayed")
    for d in letters:
        body = d.body if len(d.body) <= 80 else d.body[:77] + "..."
        # Text, not str: a table cell given a str is read as markup, and letters are
        # whatever a gateway (or anyone) sent.
        table.add_row(
            str(d.id),
            _utc(d.received_ms),
            Text(f"{d.site}/{d.station}"),
            d.kind.value,
            Text(d.reason),
            Text(body),
            _utc(d.replayed_ms) if d.replayed_ms else "",
        )
    console.print(table)
    console.print(
        f"{store.count()} pending, {store.count(pending_only=False)} in all", highlight=False
    )
    store.close()


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@letters_app.command("replay")
def letters_replay(
    config_path: ConfigPath,
    ids: Annotated[list[int] | None, typer.Option("--id", help="These letters only.")] = None,
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100_000,
) -> None:
    """Send pending dead letters through validation and InfluxDB again."""
    config = _config(config_path)
    replayed, refused = asyncio.run(_replay(config, ids or [], site, limit))
    console.print(f"{replayed} replayed, {refused} refused again (see `list`)", highlight=False)
    if refused:
        raise typer.Exit(1)


async def _replay(
    config: IngestConfig, ids: list[int], site: str | None, limit: int
) -> tuple[int, int]:
    dead = DeadLetters(config.dead_letters_path)
    writer = make_writer(config)
    try:
        letters = dead.latest(limit, site=site, pending_only=True, ids=ids)
        store = InfluxStore(Validator(config.site), writer, dead)
        outcome = await replay(list(reversed(letters)), dead, store)
    except InfluxError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}; nothing marked replayed")
        raise typer.Exit(1) from None
    finally:
        await writer.close()
        dead.close()
    return len(outcome.replayed), len(outcome.refused)
