"""Private instances of real services for tests: Mosquitto, socat pty pairs.

Each runs on a free port in its own temporary folder, so a test can stop, kill and
restart it without touching anything else on the machine.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from wiring.services import Mosquitto, free_port, require, wait_for_port

__all__ = ["Mosquitto", "PtyPair", "free_port", "require", "wait_for_port"]


@dataclass
class PtyPair:
    """Two linked pseudo-terminals (a serial cable) made by socat."""

    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def a(self) -> str:
        return str(self.workdir / "ttyA")

    @property
    def b(self) -> str:
        return str(self.workdir / "ttyB")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [require("socat"), f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if time.monotonic() > deadline:
                raise TimeoutError("socat did not create the pty pair")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None
