"""A crew member at the alarm console: headless Chromium, signed in with a crew token,
pressing the buttons an alarm's row offers (Acknowledge, Reset).

The demo's scripted crew works the real web console, not the API behind it, so what
the README shows is what a person at the console does. Playwright drives Debian's
Chromium (its own browser download cannot work on these machines); when either is
missing the demo falls back to the API calls the buttons make.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.alarms.model import AlarmKey

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
# Chromium's own calls home are refused on a closed network, many at a time.
QUIET_FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class ConsoleUnavailable(RuntimeError):
    """No browser to sit at the console with (Playwright or Chromium missing)."""


@dataclass
class ConsoleCrew:
    url: str
    token: str
    chromium: Path = CHROMIUM
    wait_s: float = 10.0
    _playwright: Playwright | None = field(default=None, init=False)
    _browser: Browser | None = field(default=None, init=False)
    _page: Page | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def sign_in(self) -> None:
        try:
            from playwright.async_api import async_playwright
        except ImportError as exc:
            raise ConsoleUnavailable(f"playwright is not installed ({exc})") from None
        if not self.chromium.exists():
            raise ConsoleUnavailable(f"no browser at {self.chromium}")
        self._playwright = await async_playwright().start()
        try:
            self._browser = await self._playwright.chromium.launch(
                executable_path=str(self.chromium), headless=True, args=QUIET_FLAGS
            )
            page = await self._browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"{self.url}/")
            await page.fill("#token", self.token)
            await page.click("#login-form button[type=submit]")
            await page.locator("#board").wait_for(state="visible", timeout=self.wait_s * 1000)
        except Exception as exc:
            await self.leave()
            raise ConsoleUnavailable(f"cannot sign in at {self.url}/: {exc}") from None
        self._page = page

    async def press(self, key: AlarmKey, button: str) -> bool:
        """Press the row's button; False when the row offers none (someone was quicker)."""
        page = self._page
        if page is None:
            raise ConsoleUnavailable("not signed in")
        async with self._lock:
            row = page.locator(f'#alarms tbody tr[data-key="{key}"]')
            await row.wait_for(state="visible", timeout=self.wait_s * 1000)
            found = row.get_by_role("button", name=button)
            if await found.count() == 0:
                return False
            await found.click(timeout=self.wait_s * 1000)
            # the button goes once the API has answered and the board re-read the alarm
            await found.wait_for(state="detached", timeout=self.wait_s * 1000)
            return True

    async def leave(self) -> None:
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.close()
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                await self._playwright.stop()
        self._page = self._browser = self._playwright = None
