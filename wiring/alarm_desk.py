"""The demo's alarm desk: where the notifier's messages land, and a crew that answers.

The demo runs deploy/alarms/notify.yaml with its local addresses pointed at catchers on
this machine (an SMTP server, a webhook receiver), the demo's broker for MQTT and the
demo's alarm API for the acknowledge links. It makes fresh API tokens: one for the
operator (printed, to sign in to the console) and one for a scripted crew member, who
sits at the web console (headless Chromium, `console_crew.py`) and presses Acknowledge
some seconds after an alarm is raised, and as long after a latched alarm is back to
normal, Reset. Without a browser the crew makes the same calls to the API instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from ingest.alarms.book import AlarmEvent, Transition
from ingest.alarms.model import AlarmKey, AlarmState
from ingest.config import AlarmSettings, ApiSettings
from wiring.catchers import Mail, MailCatcher, Webhook
from wiring.console_crew import ConsoleCrew, ConsoleUnavailable

# The sample's local addresses (deploy/alarms/notify.yaml), and what they stand for.
SAMPLE_MAIL, SAMPLE_WEBHOOK = "127.0.0.1:1025", "127.0.0.1:18080"
CREW_USER, OPERATOR_USER = "demo.crew", "demo.operator"
CONSOLE_BUTTONS = {"ack": "Acknowledge", "reset": "Reset"}


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


@dataclass
class AlarmDesk:
    run_dir: Path
    notify_sample: Path
    broker_port: int
    api_port: int
    say: Callable[[str], None]
    crew_ack_after_s: float = 20.0
    mail: MailCatcher = field(init=False)
    webhook: Webhook = field(default_factory=Webhook)
    webhook_port: int = 0
    operator_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    crew_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    api_url: str = ""
    acks: int = 0
    resets: int = 0
    console: ConsoleCrew | None = None  # None: the crew calls the API
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.mail = MailCatcher(on_mail=self._mailed)

    def start(self) -> None:
        self.mail.start()
        self.webhook_port = self.webhook.start()
        # the ack links are signed: a secret for this run unless the operator set one
        os.environ.setdefault("FACILITY_ACK_SECRET", secrets.token_hex(16))

    async def sit_down_at_console(self) -> str:
        """Sign the crew in at the console; what the crew works with, to print."""
        console = ConsoleCrew(self.api_url, self.crew_token)
        try:
            await console.sign_in()
        except ConsoleUnavailable as exc:
            return f"through the alarm API ({exc})"
        self.console = console
        return "at the web console (headless Chromium)"

    def settings(self, rules: Path) -> AlarmSettings:
        folder = self.run_dir / "alarms"
        folder.mkdir(parents=True, exist_ok=True)
        notify, tokens = folder / "notify.yaml", folder / "api-tokens.yaml"
        notify.write_text(yaml.safe_dump(self._notify_config(), allow_unicode=True))
        tokens.write_text(yaml.safe_dump({"users": self._users()}))
        api = ApiSettings(port=self.api_port, tokens=str(tokens.resolve()))
        return AlarmSettings(rules=str(rules.resolve()), notify=str(notify.resolve()), api=api)

    def _notify_config(self) -> dict[str, Any]:
        config: dict[str, Any] = _rewrite(
            yaml.safe_load(self.notify_sample.read_text(encoding="utf-8")),
            {
                SAMPLE_MAIL: f"127.0.0.1:{self.mail.port}",
                SAMPLE_WEBHOOK: f"127.0.0.1:{self.webhook_port}",
            },
        )
        config["mqtt"] = {**config.get("mqtt", {}), "host": "127.0.0.1", "port": self.broker_port}
        links = config.get("ack_links")
        if links is not None:
            links["base_url"] = f"http://127.0.0.1:{self.api_port}"
        return config

    def _users(self) -> list[dict[str, str]]:
        operator, crew = _sha(self.operator_token), _sha(self.crew_token)
        return [
            {"name": OPERATOR_USER, "role": "supervisor", "token_sha256": operator},
            {"name": CREW_USER, "role": "crew", "token_sha256": crew},
        ]

    def _mailed(self, mail: Mail) -> None:  # the SMTP server's thread
        self.say(f"{_stamp()} MAIL to {', '.join(mail.to)}: {mail.subject}")

    # -- the scripted crew ----------------------------------------------------------------

    async def on_transitions(self, transitions: list[Transition]) -> None:
        for t in transitions:
            if t.event is AlarmEvent.RAISED and t.notify:
                self._later(t.key, "ack", "on my way")
            elif t.to_state is AlarmState.LATCHED:
                self._later(t.key, "reset", "checked on site, reset at the panel")

    def _later(self, key: AlarmKey, action: str, comment: str) -> None:
        async def run() -> None:
            await asyncio.sleep(self.crew_ack_after_s)
            try:
                await self._act(key, action, comment)
            except httpx.HTTPError as exc:
                self.say(f"{_stamp()} the crew's call to the alarm API failed: {exc}")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _act(self, key: AlarmKey, action: str, comment: str) -> None:
        if self.console is not None:
            await self._press(self.console, key, action)
            return
        await self._call_api(key, action, comment)

    async def _press(self, console: ConsoleCrew, key: AlarmKey, action: str) -> None:
        try:
            pressed = await console.press(key, CONSOLE_BUTTONS[action])
        except Exception as exc:  # a browser hiccup must not cost the demo its story
            self.say(f"{_stamp()} the crew could not press {action} at the console: {exc}")
            return
        if pressed:
            self._count(action)

    async def _call_api(self, key: AlarmKey, action: str, comment: str) -> None:
        headers = {"Authorization": f"Bearer {self.crew_token}"}
        async with httpx.AsyncClient(base_url=self.api_url, headers=headers) as http:
            answer = await http.post(f"/api/alarms/{key}/{action}", json={"comment": comment})
        if answer.status_code == 409:  # someone at the console was quicker
            return
        answer.raise_for_status()
        self._count(action)

    def _count(self, action: str) -> None:
        if action == "ack":
            self.acks += 1
        else:
            self.resets += 1

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task
        if self.console is not None:
            await self.console.leave()
        self.mail.stop()
        self.webhook.stop()


def _rewrite(value: Any, addresses: dict[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in addresses.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_rewrite(v, addresses) for v in value]
    if isinstance(value, dict):
        return {k: _rewrite(v, addresses) for k, v in value.items()}
    return value


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
