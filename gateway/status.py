"""`facility gateway status`: the gateway's health from its own disk, no network needed.

It reads what the gateway keeps next to its outbox: the outbox SQLite file itself
(read-only: what waits, how old, what was dropped) and the status file the gateway
rewrites every health interval (gateway/metrics.py: the same samples as /metrics).
When the uplink is down, which is when this matters, both are still there.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from facility.clock import now_ms
from gateway.metrics import PREFIX

OUTBOX_SUFFIX = ".outbox.sqlite"
STALE_FACTOR_S = 60.0  # a status file older than this says the gateway is not writing it

console = Console()
err = Console(stderr=True)


@dataclass(frozen=True)
class OutboxNow:
    chunks: int
    readings: int
    bytes: int
    oldest_ts_ms: int | None
    counters: dict[str, int]


def read_outbox(path: Path) -> OutboxNow:
    """Read-only, beside a running gateway (WAL lets a reader in while it writes)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        chunks, readings, size, oldest = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(count), 0), COALESCE(SUM(bytes), 0), MIN(oldest_ts)"
            " FROM chunk"
        ).fetchone()
        counters = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    return OutboxNow(int(chunks), int(readings), int(size), oldest, counters)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def status_command(
    data_dir: Annotated[Path, typer.Option(help="The gateway's data folder.")] = Path(
        "run/gateway"
    ),
    gateway: Annotated[
        str | None, typer.Option(help="Only this gateway: SITE/STATION (default: every one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, every sample.")] = False,
) -> None:
    """The gateway's health from its outbox and status file: no network needed."""
    outboxes = sorted(data_dir.glob(f"*{OUTBOX_SUFFIX}"))
    if gateway is not None:
        outboxes = [p for p in outboxes if p.name == f"{gateway.replace('/', '-')}{OUTBOX_SUFFIX}"]
    if not outboxes:
        what = f"gateway {gateway}" if gateway else "gateway"
        err.print(f"[red]error[/red] no {escape(what)} outbox in {escape(str(data_dir))}")
        raise typer.Exit(1)
    reports = [_report(p) for p in outboxes]
    if as_json:
        console.print_json(json.dumps(reports, ensure_ascii=False))
        return
    for report in reports:
        console.print(_table(report))


def _report(outbox_path: Path) -> dict[str, Any]:
    name = outbox_path.name.removesuffix(OUTBOX_SUFFIX)
    status = read_status(outbox_path.with_name(f"{name}.status.json"))
    now = now_ms()
    report: dict[str, Any] = {"gateway": name, "outbox_file": str(outbox_path)}
    try:
        box = read_outbox(outbox_path)
    except sqlite3.Error as exc:
        report["outbox_error"] = str(exc)
    else:
        report["outbox"] = {
            "readings": box.readings,
            "chunks": box.chunks,
            "bytes": box.bytes,
            "oldest_age_s": round((now - box.oldest_ts_ms) / 1000, 1) if box.oldest_ts_ms else 0.0,
            **box.counters,
        }
    if status is None:
        report["status"] = "no status file (gateway never ran, or an older version)"
        return report
    age_s = (now - int(status.get("written_ms", 0))) / 1000
    running = bool(status.get("running")) and _alive(status.get("pid"))
    report["status"] = "running" if running and age_s < STALE_FACTOR_S else "not running"
    report["status_age_s"] = round(age_s, 1)
    report["pid"] = status.get("pid")
    report["uplink_error"] = status.get("uplink_error", "")
    samples = status.get("samples", [])
    report["samples"] = samples if isinstance(samples, list) else []
    return report


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


# What the table shows, in order: sample name (without the prefix) -> label.
_SHOWN = {
    "uplink_connected": "uplink connected",
    "last_ack_age_seconds": "last ack (s ago)",
    "readings_in_total": "readings acquired",
    "readings_out_total": "readings delivered",
    "readings_dropped_total": "readings dropped",
    "in_flight_readings": "in flight",
    "devices_answering": "devices answering",
    "devices": "devices polled",
    "batch_round_trip_seconds": "batch round trip (mean s)",
    "batches_expired_total": "batches resent",
    "batches_not_stored_total": "batches not stored (resent)",
    "mqtt_rejected_total": "device messages refused",
    "task_restarts_total": "task restarts",
}


def _table(report: dict[str, Any]) -> Table:
    table = Table("", "", title=escape(report["gateway"]), show_header=False)
    table.add_row("status", escape(_status_line(report)))
    box = report.get("outbox")
    if box is None:
        table.add_row("outbox", escape(f"unreadable: {report.get('outbox_error')}"))
    else:
        table.add_row("outbox readings", str(box["readings"]))
        table.add_row("outbox oldest (s)", str(box["oldest_age_s"]))
        table.add_row("outbox bytes", str(box["bytes"]))
    values = _values(report.get("samples", []))
    for name, label in _SHOWN.items():
        if name in values:
            table.add_row(label, escape(values[name]))
    if report.get("uplink_error"):
        table.add_row("uplink error", escape(str(report["uplink_error"])))
    return table


def _status_line(report: dict[str, Any]) -> str:
    if "status_age_s" not in report:
        return str(report["status"])
    return (
        f"{report['status']} (pid {report['pid']}, status written {report['status_age_s']} s ago)"
    )


def _values(samples: list[dict[str, Any]]) -> dict[str, str]:
    """Each sample name's value as text; samples with a `reason` label summed."""
    out: dict[str, float] = {}
    text: dict[str, str] = {}
    for sample in samples:
        if not isinstance(sample, dict):
            continue  # a file from another version, or damaged: show what can be read
        name = str(sample.get("name", "")).removeprefix(PREFIX)
        value = sample.get("value")
        if isinstance(value, dict):  # a histogram
            count = value.get("count", 0)
            text[name] = f"{value.get('sum', 0) / count:.3f} ({count})" if count else "none yet"
        elif isinstance(value, int | float):
            out[name] = out.get(name, 0.0) + float(value)
    for name, number in out.items():
        text[name] = f"{number:g}"
    if out.get("last_ack_age_seconds", 0.0) < 0:
        text["last_ack_age_seconds"] = "never"
    return text
