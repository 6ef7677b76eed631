"""PDF through headless Chromium's print, when a Chromium is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dashboards.reports.data import ReportError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium")
TIMEOUT_S = 120


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(page: Path, pdf: Path) -> Path:
    chromium = find_chromium()
    if chromium is None:
        raise ReportError(
            "PDF skipped: no Chromium found (looked for chromium, chromium-browser, "
            "google-chrome); the HTML report is complete, print it from a browser instead"
        )
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-pdf-header-footer",
        f"--print-to-pdf={pdf}",
        page.resolve().as_uri(),
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ReportError(f"PDF failed: {chromium} did not finish in {TIMEOUT_S} s") from None
    if done.returncode != 0 or not pdf.is_file():
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ReportError(f"PDF failed: {chromium} exited {done.returncode}: {' '.join(tail)}")
    return pdf
