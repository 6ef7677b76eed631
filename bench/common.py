"""What every bench needs around its measurements: the machine line docs/benchmarks.md
records, a process's CPU time and memory from /proc, helper processes with a JSON status
file, private services (wiring/services.py) stopped even when they hang, the demo site
on free ports, and the closing table of figures.

Only the standard library is imported here at start: bench_simulator measures its own
process's RSS, and the services' module is imported by the functions that start them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from wiring.services import InfluxDB, Mosquitto

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "deploy" / "sites" / "demo"
DEMO_RULES = ROOT / "deploy" / "alarms" / "rules.yaml"  # what `facility demo` loads
FACILITY = Path(sys.executable).parent / "facility"
CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")

# The arguments that make a tool print its version on its first line.
VERSION_ARGS = {"mosquitto": ["-h"], "influxd": ["version"]}


# --- the machine and the moment ----------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def tool_version(name: str) -> str:
    """The first line a tool prints about itself, `name ?` when it cannot be run."""
    if name == "sqlite":
        import sqlite3  # here: a bench that measures its own RSS may not load it

        return f"SQLite {sqlite3.sqlite_version}"
    binary = shutil.which(name) or f"/usr/sbin/{name}"
    try:
        done = subprocess.run(
            [binary, *VERSION_ARGS.get(name, ["--version"])],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return f"{name} ?"
    out = done.stdout or done.stderr
    return out.splitlines()[0].strip() if out else f"{name} ?"


def machine(*tools: str) -> str:
    """Host, CPU, cores, RAM, Python and the named tools' versions (`sqlite`,
    `mosquitto`, `influxd`)."""
    parts = [
        f"{platform.node()} {cpu_model()}",
        f"{os.cpu_count()} cores",
        f"{memory_gib():.1f} GiB",
        f"{platform.machine()}, Python {platform.python_version()}",
        *(tool_version(tool) for tool in tools),
    ]
    return ", ".join(parts)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def git_commit() -> str:
    """The checkout's commit, `+changes` when the working tree differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{head or '?'}{' +changes' if changed else ''}"


def print_header(*tools: str) -> None:
    """The lines a docs/benchmarks.md entry is written from: machine, date, load, commit
    and the command as typed. The machine is shared: the load says how much."""
    print(f"machine: {machine(*tools)}")
    print(
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load_average()}, "
        f"commit {git_commit()}"
    )
    print(f"command: python -m {command_line()}")


def command_line() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = spec.name if spec is not None else Path(sys.argv[0]).name
    return " ".join([name, *sys.argv[1:]])


# --- what a process uses -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int | str = "self", key: str = "VmRSS") -> float:
    """A memory figure of /proc/PID/status in MB: VmRSS now, VmHWM the peak."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, all processes)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK  # less idle and iowait


def import_rss_mb(module: str) -> float:
    """RSS of a fresh interpreter that only imported `module` ("" for none)."""
    code = (
        f"import {module}\n" if module else ""
    ) + "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
        ).stdout
        return int(out.split()[0]) / 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return float("nan")


# --- helper processes --------------------------------------------------------------------


def helper_command(module: str, role: str, *args: str) -> list[str]:
    """Command line of a bench module's own helper process: `python -m MODULE _ROLE`."""
    return [sys.executable, "-m", module, f"_{role}", *args]


def main_or_helper(main: Callable[[list[str]], None], helper: Callable[[list[str]], None]) -> None:
    """A bench module's entry point: its helper processes are called with `_role`."""
    argv = sys.argv[1:]
    (helper if argv and argv[0].startswith("_") else main)(argv)


def write_status(path: Path, body: dict[str, Any]) -> None:
    """A helper's status, replaced whole so a reader never sees half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


async def until_stopped(tick_s: float, each: Callable[[], None]) -> None:
    """Call `each` every tick until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        each()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(tick_s):
                await stop.wait()


class Child:
    """A helper process with its log file and, for our own helpers, a JSON status file."""

    def __init__(self, name: str, args: list[str], workdir: Path, status: bool = True) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.status_path: Path | None = workdir / f"{name}.json" if status else None
        if self.status_path is not None:
            args = [*args, "--status", str(self.status_path)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_s(self) -> float:
        return cpu_seconds(self.proc.pid)

    def status(self) -> dict[str, Any]:
        if self.status_path is None:
            return {}
        try:
            body = json.loads(self.status_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return body if isinstance(body, dict) else {}

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(self, key: str, timeout_s: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status()
            if key in status:
                return status
            if not self.alive():
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not report {key!r}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> dict[str, Any]:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.status()


def pinned(args: list[str], core: int) -> list[str]:
    """A command line run on one core (`taskset -c`), as is where taskset is missing."""
    return ["taskset", "-c", str(core), *args] if shutil.which("taskset") else args


# --- services ----------------------------------------------------------------------------


def start_broker(workdir: Path) -> Mosquitto:
    """A private Mosquitto: free port, own folder, own log."""
    from wiring.services import Mosquitto

    workdir.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(workdir)
    broker.start()
    return broker


def stop_service(server: Mosquitto | InfluxDB | None) -> None:
    """Stop a private service; kill it if it does not stop in time."""
    if server is None:
        return
    try:
        server.stop()
    except subprocess.TimeoutExpired:
        server.kill()


def service_pid(server: Mosquitto | InfluxDB) -> int:
    assert server.proc is not None, "the service is not running"
    return server.proc.pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def demo_site_on_free_ports(work: Path) -> Path:
    """A copy of deploy/sites/demo with each port it names replaced by a free one (the
    same port by the same one), so a bench runs beside a demo or tests on the real ports."""
    shutil.copytree(DEMO, work)
    mapping: dict[int, int] = {}

    def replace(match: re.Match[str]) -> str:
        port = int(match[1])
        return f"port: {mapping.setdefault(port, free_port())}"

    for file in sorted(work.glob("*.yaml")):
        text = re.sub(r"\bport: (\d+)", replace, file.read_text(encoding="utf-8"))
        file.write_text(text, encoding="utf-8")
    return work


Summary = list[tuple[str, ...]]  # rows of the closing table: figure, measured, ...


@contextlib.contextmanager
def bench_session(
    prefix: str, tools: Sequence[str], head: Sequence[str] = ()
) -> Iterator[tuple[Path, Summary]]:
    """A bench's run: warnings logged as `  log` lines among its own, its header, a
    scratch folder, and the rows of its summary table, printed at the end."""
    logging.basicConfig(
        level=logging.WARNING, format="  log %(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    print_header(*tools)
    summary: Summary = []
    with scratch_dir(prefix) as tmp:
        yield tmp, summary
    print_summary(summary, head)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder under run/ in the checkout: the real disk (not tmpfs), ignored
    by git, removed afterwards."""
    (ROOT / "run").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=ROOT / "run") as name:
        yield Path(name)


# --- figures -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of values (sorted or not); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def run_or_report(label: str, run: Coroutine[Any, Any, T]) -> T | None:
    """One run of a section, in its own event loop; a failed run is printed (None) and
    must not hide the others."""
    try:
        return asyncio.run(run)
    except Exception as exc:
        print(f"  {label}: FAILED: {exc!r}")
        return None


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_summary(rows: Sequence[Sequence[str]], head: Sequence[str] = ()) -> None:
    """The closing table: one row a figure, the columns as wide as their widest cell,
    the second (the measured value) right-aligned."""
    print()
    print("summary")
    table = [list(head), *map(list, rows)] if head else [list(row) for row in rows]
    if not table:
        return
    widths = [max(len(row[i]) for row in table if i < len(row)) for i in range(len(table[0]))]
    for row in table:
        cells = [
            cell.rjust(widths[i]) if i == 1 else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        print("  " + "  ".join(cells).rstrip())
