"""Private instances of the real services the platform talks to (Mosquitto, InfluxDB), for the demo
and the tests: own folder, own port, stoppable, killable, restartable."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PORT_CLAIMS = Path(tempfile.gettempdir()) / "facility-free-ports"
PORT_CLAIM_S = 120.0  # long enough for any server to bind the port it was handed


def free_port() -> int:
    """A TCP port nothing listens on, not handed out by this function (in any process
    on the machine) in the last PORT_CLAIM_S: parallel test workers and their
    neighbours each choose ports and bind them a moment later, and the kernel would
    hand the same free port to two of them."""
    PORT_CLAIMS.mkdir(exist_ok=True)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if _claim(PORT_CLAIMS / str(port)):
            return port


def _claim(path: Path) -> bool:
    try:
        if time.time() - path.stat().st_mtime < PORT_CLAIM_S:
            return False
        path.unlink(missing_ok=True)  # a stale claim
    except FileNotFoundError:
        pass
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # another process claimed it this instant
        return False
    return True


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def require(binary: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if Path(p).exists()), None
    )
    if path is None:
        raise RuntimeError(
            f"{binary} is not installed: the README's commands install the system packages"
        )
    return path


class ServerProcess:
    """Stop, kill and restart for a server run as a child process (`start` is the server's)."""

    proc: subprocess.Popen[bytes] | None

    def start(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _launch(
        self,
        argv: list[str],
        log_path: Path,
        ready: Callable[[], bool],
        timeout_s: float = 20.0,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start the server with its output appended to log_path (a restart keeps the
        earlier log) and wait until ready(); a server that exits or never gets ready is
        killed and named in a RuntimeError that points at its log. `env`: variables
        added to this process's for the server."""
        environment = {**os.environ, **env} if env else None
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=environment
            )
        name, deadline = Path(argv[0]).name, time.monotonic() + timeout_s
        while not ready():
            if self.proc is None or self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"{name} exited while starting (see {log_path})")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{name} not ready within {timeout_s} s (see {log_path})")
            time.sleep(0.05)


@dataclass
class Mosquitto(ServerProcess):
    """A private Mosquitto broker: start(), stop(), kill(), restart()."""

    workdir: Path
    port: int = field(default_factory=free_port)
    listener_options: str = "allow_anonymous true\n"  # e.g. a password file, TLS files
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        # `user root`: started as root, Mosquitto would drop to a user that cannot write
        # our folder; ignored when not started as root.
        conf.write_text(
            f"user root\nper_listener_settings true\nlistener {self.port} 127.0.0.1\n"
            f"{self.listener_options}"
            f"persistence true\npersistence_location {self.workdir}/\n"
            f"log_dest file {self.workdir}/mosquitto.log\n"
        )
        self.proc = subprocess.Popen(
            [require("mosquitto"), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.kill()
            raise RuntimeError(
                f"mosquitto did not start on port {self.port} (see {self.workdir}/mosquitto.log)"
            ) from None


@dataclass
class InfluxDB(ServerProcess):
    """A private InfluxDB 1.x server (`influxd run -config FILE`): start(), stop(), kill(),
    restart(). Its meta, data and WAL live under workdir, so a restart keeps the data."""

    workdir: Path
    http_port: int = field(default_factory=free_port)
    rpc_port: int = field(default_factory=free_port)
    auth_enabled: bool = False
    http_options: str = ""  # extra [http] lines, e.g. "max-body-size = 4096\n"
    # Go's GC target (GOGC, default 100): higher trades memory for CPU in big queries
    gc_percent: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        # Two free_port() calls can hand out the same port; influxd would then not start.
        while self.rpc_port == self.http_port:
            self.rpc_port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "influxd.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "influxdb.conf"
        conf.write_text(self._config())
        env = {"GOGC": str(self.gc_percent)} if self.gc_percent else None
        argv = [require("influxd"), "run", "-config", str(conf)]
        self._launch(argv, self.log_path, self._ping, env=env)

    def _config(self) -> str:
        w = self.workdir
        # The top-level bind-address is the RPC port used by backup/restore: left at its
        # default (8088) a second instance on the machine would collide with the first.
        return (
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{w}/meta"\n'
            f'[data]\n  dir = "{w}/data"\n  wal-dir = "{w}/wal"\n'
            '  wal-fsync-delay = "0s"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.http_port}"\n'
            f"  auth-enabled = {str(self.auth_enabled).lower()}\n"
            f"  log-enabled = false\n{self.http_options}"
            "[monitor]\n  store-enabled = false\n"  # no _internal database to write
            "[continuous_queries]\n  enabled = true\n"
        )

    def _ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                return bool(resp.status == 204)
        except OSError:  # refused while starting; URLError and HTTPError are OSErrors
            return False

    def query(
        self, q: str, db: str | None = None, username: str = "", password: str = ""
    ) -> dict[str, Any]:
        """Run InfluxQL (POST /query, epoch=ms) and return the parsed JSON answer, for tests
        and the demo. POST because 1.x refuses CREATE/DROP/ALTER sent as GET."""
        params = {"q": q, "epoch": "ms"}
        if db is not None:
            params["db"] = db
        if username:
            params.update(u=username, p=password)
        body = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=body, timeout=10) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
        return answer


@dataclass
class VictoriaMetrics(ServerProcess):
    """A private single-node VictoriaMetrics (Debian package `victoria-metrics`), which
    takes InfluxDB line protocol on `/write` and `/api/v2/write`: start(), stop(), kill(),
    restart(). Data lives under workdir, so a restart keeps what was flushed. A line's
    measurement and field become the metric `{measurement}_{field}`, its tags labels;
    every value is a float64 (true is 1, a string field 0)."""

    workdir: Path
    http_port: int = field(default_factory=free_port)
    username: str = ""  # with a password: HTTP Basic auth on every path but /health
    password: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "victoria-metrics.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._launch([require("victoria-metrics"), *self._flags()], self.log_path, self._healthy)

    def _flags(self) -> list[str]:
        # The default retention (1 month) silently drops older points with a 204, and
        # tests write fixed dates; 100y keeps everything InfluxDB would keep.
        flags = [
            f"-httpListenAddr=127.0.0.1:{self.http_port}",
            f"-storageDataPath={self.workdir}/data",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-dedup.minScrapeInterval=1ms",
            "-loggerLevel=WARN",
        ]
        if self.username:
            flags += [f"-httpAuth.username={self.username}", f"-httpAuth.password={self.password}"]
        return flags

    def _healthy(self) -> bool:
        try:
            self._get("/health")
        except OSError:  # refused while starting
            return False
        return True

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        """Every series matching the selector, as /api/v1/export gives them: one dict per
        series with `metric` (name and labels), `values` and `timestamps` (ms)."""
        # Points wait in memory for up to a few seconds before a search sees them, and
        # export's default end is now rounded down to the second: flush, and ask up to
        # the year 2286 so points stamped in the last second are not left out.
        self._get("/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": match, "end": "9999999999"})
        answer = self._get(f"/api/v1/export?{query}")
        return [json.loads(line) for line in answer.splitlines() if line.strip()]

    def _get(self, path: str) -> str:
        request = urllib.request.Request(f"{self.url}{path}")
        if self.username:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as resp:
            return str(resp.read().decode())
