"""The web console in a real headless browser (Debian's Chromium, driven by Playwright)
against the real API server, with alarms raised by the real engine from readings.

Sign in, the board in priority order with the priority colours, an alarm raised by the
pipeline appearing without a reload, acknowledging and shelving from the page (and the
book agreeing on who did it), the history panel, a phone-sized screen, and the
acknowledge-link page. Screenshots go to $ALARM_CONSOLE_SCREENSHOTS if set (to look at),
else to the test's temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from facility.clock import now_ms
from facility.config import SiteConfig
from facility.wire import Reading
from ingest.alarms.book import AlarmEvent
from ingest.alarms.model import AlarmKey, AlarmState
from ingest.api import Role
from tests.integration.test_alarm_api import (
    PUMP_LOCAL,
    SITE,
    TANK_H,
    TANK_HH,
    TANK_LL,
    TOKENS,
    Stack,
    path_of,
    running_stack,
    trip_key,
)
from tests.integration.test_notifier import (
    LI,
    SECRET_ENV,
    Clock,
    RefusingMailServer,
    write_config,
)

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium package"),
]

# What console.css gives each priority's badge.
PRIORITY_COLOURS = {
    "critical": "rgb(211, 47, 47)",
    "high": "rgb(239, 108, 0)",
    "medium": "rgb(249, 194, 15)",
    "low": "rgb(30, 111, 217)",
}


@pytest.fixture
async def stack(tmp_path: Path, demo_config: SiteConfig) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path / "stack", demo_config) as s:
        yield s


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        await chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ALARM_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class PageErrors:
    """Script errors and console errors (a CSP violation is one) of a page."""

    def __init__(self, page: Page) -> None:
        self.found: list[str] = []
        page.on("pageerror", lambda exc: self.found.append(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.found.append(f"console: {message.text}")


def row(page: Page, key: AlarmKey) -> str:
    return f'#alarms tbody tr[data-key="{key}"]'


async def sign_in(page: Page, url: str, role: Role) -> None:
    await page.goto(url)
    await page.fill("#token", TOKENS[role])
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#board")).to_be_visible()


async def board_keys(page: Page) -> list[str]:
    keys: list[str] = await page.eval_on_selector_all(
        "#alarms tbody tr", "rows => rows.map(r => r.dataset.key)"
    )
    return keys


async def test_console_board_live_acknowledge_and_shelve(
    stack: Stack, browser: Browser, shots: Path
) -> None:
    order = await stack.all_priorities()
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    errors = PageErrors(page)
    await sign_in(page, stack.url, Role.SUPERVISOR)
    await expect(page.locator("#alarms tbody tr")).to_have_count(len(order))
    await expect(page.locator("#who")).to_have_text("wang (supervisor)")

    # in priority order, then oldest first; coloured by priority; unacknowledged marked
    assert await board_keys(page) == [str(k) for k in order]
    for key in order:
        alarm = stack.book.get(key)
        assert alarm is not None
        # to_have_css retries: a live update may re-render the row meanwhile
        badge = page.locator(f"{row(page, key)} .prio-badge")
        colour = PRIORITY_COLOURS[alarm.priority.value]
        await expect(badge).to_have_css("background-color", colour)
        await expect(page.locator(f"{row(page, key)} .unacked-dot")).to_have_count(1)
    message = page.locator(f"{row(page, TANK_LL)} .message")
    await expect(message).to_have_css("font-weight", "700")  # unacknowledged: bold
    await expect(page.locator("#live")).to_have_text("live")

    # a new alarm appears without a reload, in its place: a high, the newest of them
    await page.evaluate("window.notReloaded = true")
    new = await stack.trip("sankeshu", "pump_1")
    await expect(page.locator(row(page, new))).to_be_visible(timeout=5000)
    assert (await board_keys(page))[3] == str(new)
    assert await page.evaluate("window.notReloaded") is True

    # acknowledge from the page
    await page.locator(row(page, new)).get_by_role("button", name="Acknowledge").click()
    acked = page.locator(f'{row(page, new)}[data-state="{AlarmState.ACKED}"]')
    await expect(acked).to_be_visible()
    await expect(acked.locator(".state-note")).to_have_text("by wang")
    await expect(acked.locator(".unacked-dot")).to_have_count(0)
    alarm = stack.book.get(new)
    assert alarm is not None and alarm.state is AlarmState.ACKED and alarm.acked_by == "wang"

    # somebody else's acknowledgement, and a trip clearing unacknowledged, arrive live
    async with stack.client(Role.CREW) as crew:
        assert (await crew.post(f"{path_of(TANK_HH)}/ack")).status_code == 200
    await expect(page.locator(f"{row(page, TANK_HH)} .state-note")).to_have_text("by li")
    await stack.clear_trip("xiba", "pump_1")
    returned = page.locator(f"{row(page, trip_key('xiba', 'pump_1'))}")
    await expect(returned).to_have_attribute("data-state", AlarmState.RTN_UNACKED.value)
    await expect(returned.locator(".state-word")).to_have_text("Cleared, unacknowledged")

    # shelve through the dialog
    await page.locator(row(page, TANK_LL)).get_by_role("button", name="Shelve").click()
    dialog = page.locator("#shelve-dialog")
    await expect(dialog).to_be_visible()
    await page.fill("#shelve-reason", "level sensor being cleaned")
    await page.fill("#shelve-minutes", "45")
    await page.click("#shelve-submit")
    await expect(dialog).to_be_hidden()
    shelved = page.locator(f"{row(page, TANK_LL)}.shelved")
    await expect(shelved).to_be_visible()
    await expect(shelved.locator(".tag-shelved")).to_have_text("Shelved")
    await expect(shelved.get_by_role("button", name="Unshelve")).to_be_visible()
    alarm = stack.book.get(TANK_LL)
    assert alarm is not None and alarm.shelved_by == "wang"
    assert alarm.shelve_reason == "level sensor being cleaned"
    assert alarm.shelved_until_ms is not None
    assert abs(alarm.shelved_until_ms - (now_ms() + 45 * 60_000)) < 10_000

    # the history of the alarm acknowledged from the page
    await page.locator(f"{row(page, new)} .message").click()
    await expect(page.locator("#history")).to_be_visible()
    await expect(page.locator("#history-list li").first).to_contain_text("acknowledged · wang")
    await expect(page.locator("#history-list li")).to_have_count(2)

    # ages tick without asking the server
    age = page.locator(f"{row(page, PUMP_LOCAL)} .age")
    first = await age.text_content()
    assert first is not None and first.startswith("6m ")  # raised 400 s before
    await expect(age).not_to_have_text(first, timeout=3000)

    await page.screenshot(path=str(shots / "console-desktop.png"), full_page=True)
    assert errors.found == []
    assert stack.book.get(TANK_H) is not None


async def test_console_on_a_phone(stack: Stack, browser: Browser, shots: Path) -> None:
    await stack.all_priorities()
    async with stack.client(Role.SUPERVISOR) as supervisor:
        shelf = {"reason": "pump on manual for tests", "minutes": 20}
        await supervisor.post(f"{path_of(PUMP_LOCAL)}/shelve", json=shelf)
        await supervisor.post(f"{path_of(TANK_HH)}/ack")
    context = await browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = await context.new_page()
    errors = PageErrors(page)
    await sign_in(page, stack.url, Role.CREW)
    await expect(page.locator("#alarms tbody tr")).to_have_count(5)
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the board must fit a phone's width"
    ack = page.locator(row(page, TANK_LL)).get_by_role("button", name="Acknowledge")
    box = await ack.bounding_box()
    assert box is not None and box["height"] >= 40, "buttons big enough for a thumb"
    # crew may acknowledge but not shelve
    await expect(page.get_by_role("button", name="Shelve")).to_have_count(0)
    await page.screenshot(path=str(shots / "console-phone.png"), full_page=True)
    await ack.tap()
    await expect(page.locator(row(page, TANK_LL))).to_have_attribute(
        "data-state", AlarmState.ACKED.value
    )
    alarm = stack.book.get(TANK_LL)
    assert alarm is not None and alarm.acked_by == "li"
    await page.locator(f"{row(page, TANK_LL)} .message").tap()
    await expect(page.locator("#history-list li").first).to_contain_text("acknowledged · li")
    await page.screenshot(path=str(shots / "console-phone-history.png"), full_page=True)
    assert errors.found == []
    await context.close()


async def test_console_sign_in_refused_and_viewer_has_no_buttons(
    stack: Stack, browser: Browser
) -> None:
    await stack.trip("xiba", "pump_1")
    page = await browser.new_page()
    await page.goto(stack.url)
    await page.fill("#token", "not-a-token-anybody-has")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("not accepted")
    await expect(page.locator("#board")).to_be_hidden()

    await page.fill("#token", TOKENS[Role.VIEWER])
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#alarms tbody tr")).to_have_count(1)
    await expect(page.locator("#alarms tbody button")).to_have_count(0)

    # the token survives a reload (sessionStorage), and signing out forgets it
    await page.reload()
    await expect(page.locator("#alarms tbody tr")).to_have_count(1)
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_ack_link_page(stack: Stack, browser: Browser, shots: Path) -> None:
    key = await stack.trip("xiba", "pump_1")
    link = f"{stack.url}/ack/{stack.link_token(key, 'zhang')}"
    page = await browser.new_page(viewport={"width": 390, "height": 700})
    errors = PageErrors(page)

    response = await page.goto(link)
    assert response is not None and response.status == 200
    await expect(page.locator("dl.ack-alarm")).to_contain_text("Pump 1: tripped")
    alarm = stack.book.get(key)
    assert alarm is not None and alarm.state is AlarmState.UNACKED  # showing is not acking
    await page.screenshot(path=str(shots / "ack-link.png"), full_page=True)

    await page.fill("input[name=comment]", "on the way")
    await page.get_by_role("button", name="Acknowledge as zhang").click()
    await expect(page.locator("h1")).to_have_text("Acknowledged")
    await expect(page.locator(".ack-note")).to_contain_text("Acknowledged by zhang")
    alarm = stack.book.get(key)
    assert alarm is not None and alarm.acked_by == "zhang"
    assert [t.comment for t in stack.book.history(key)][-1] == "on the way"
    await page.screenshot(path=str(shots / "ack-link-done.png"), full_page=True)
    assert errors.found == []

    tampered = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    response = await page.goto(tampered)
    assert response is not None and response.status == 400
    await expect(page.locator(".ack-note")).to_contain_text("not valid")


async def test_console_shows_notifications_that_reached_nobody(
    tmp_path: Path,
    demo_config: SiteConfig,
    browser: Browser,
    shots: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The crew's mail server refuses the mailbox: the console says who was not told,
    how, and why, until a retry gets through."""
    monkeypatch.setenv(SECRET_ENV, "test-secret-0123456789abcdef")
    server = RefusingMailServer()
    server.start()
    clock = Clock(now_ms())
    config = write_config(tmp_path, server.port)
    try:
        async with running_stack(tmp_path / "stack", demo_config, notify=(config, clock)) as s:
            assert s.notifier is not None
            await s.trip("xiba", "pump_1")
            clock.now_ms += 30_000  # group_wait
            await s.notifier.tick()
            assert server.refused == [LI]  # a real server said no

            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            errors = PageErrors(page)
            await sign_in(page, s.url, Role.CREW)
            banner = page.locator("#deliveries")
            await expect(banner).to_be_visible()
            await expect(page.locator("#deliveries-head")).to_have_text(
                "1 notification not delivered"
            )
            item = page.locator("#deliveries-list li")
            await expect(item).to_have_count(1)
            await expect(item).to_have_attribute("data-state", "failed")
            await expect(item.locator(".d-state")).to_have_text("Failing, retried")
            await expect(item.locator(".d-to")).to_contain_text("li_wei by mailto: mailto://")
            await expect(item.locator(".d-to")).to_contain_text(LI)
            await expect(item.locator(".d-tries")).to_contain_text("(1 try, last at")
            await expect(item.locator(".d-error")).to_have_text(f'Sending email to "{LI}" failed.')
            await expect(item.locator(".d-what")).to_contain_text("[HIGH] RAISED")
            await page.screenshot(path=str(shots / "console-deliveries-failing.png"))

            # a viewer may not read deliveries: no banner, and no error either
            viewer = await browser.new_page()
            viewer_errors = PageErrors(viewer)
            await sign_in(viewer, s.url, Role.VIEWER)
            await expect(viewer.locator("#alarms tbody tr")).to_have_count(1)
            await expect(viewer.locator("#deliveries")).to_be_hidden()

            # the mailbox is back: the retry goes through and the banner goes, live
            server.accept = True
            clock.now_ms += 10_000  # retry_first
            await s.notifier.tick()
            assert server.accepted == [LI]
            await expect(banner).to_be_hidden(timeout=8000)
            assert errors.found == [] and viewer_errors.found == []
    finally:
        server.stop()


async def test_console_lists_late_conditions_as_they_are_journalled(
    stack: Stack, browser: Browser, shots: Path
) -> None:
    """A condition that began and ended before anyone could be told (here within one
    batch: HH held 40 s, then normal) raises nothing, and appears under the board."""
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    errors = PageErrors(page)
    await sign_in(page, stack.url, Role.VIEWER)
    await expect(page.locator("#empty")).to_be_visible()
    await expect(page.locator("#late")).to_be_hidden()
    at = now_ms()
    held = [(100, 4.95), (80, 4.95), (60, 4.95), (50, 3.0)]
    readings = [Reading(TANK_HH.asset, "level_m", at - s * 1000, v) for s, v in held]
    [late] = await stack.pipeline.observe(SITE, TANK_HH.station, readings)
    assert (late.event, late.notify) == (AlarmEvent.LATE, False)
    item = page.locator("#late-list li")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("level 4.95 m, above its high-high limit 4.9 m")
    await expect(item).to_contain_text(str(TANK_HH))
    await expect(page.locator("#alarms tbody tr")).to_have_count(0)
    await page.screenshot(path=str(shots / "console-late.png"), full_page=True)
    assert errors.found == []
