"""Publish what simulated MQTT devices (barrier gates, lot counters) send to a broker.

Devices do not buffer much: while the broker is unreachable the publisher keeps a
bounded queue and drops the oldest messages, counting each drop, as a real controller
with a small memory would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from facility.aio import honour_cancellation

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0


@dataclass
class MqttDevicePublisher:
    host: str
    port: int
    client_id: str
    max_queued: int = 20_000
    connected: bool = False
    published: int = 0
    dropped: int = 0
    _queue: deque[tuple[str, bytes]] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        if len(self._queue) >= self.max_queued:
            self._queue.popleft()
            self.dropped += 1
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        self._queue.append((topic, data))
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mqtt-devices-{self.client_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything queued has been handed to the broker."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._queue and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return not self._queue

    async def _run(self) -> None:
        backoff = RECONNECT_MIN_S
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier=self.client_id, timeout=5
                ) as client:
                    self.connected, backoff = True, RECONNECT_MIN_S
                    log.info("device publisher connected to %s:%d", self.host, self.port)
                    await self._pump(client)
            except aiomqtt.MqttError as exc:
                if self.connected:
                    log.warning("device publisher lost broker %s:%d: %s", self.host, self.port, exc)
                self.connected = False
                honour_cancellation()
                await asyncio.sleep(backoff)
                backoff = min(RECONNECT_MAX_S, backoff * 2)

    async def _pump(self, client: aiomqtt.Client) -> None:
        while True:
            while self._queue:
                topic, data = self._queue[0]
                await client.publish(topic, data, qos=1)
                self._queue.popleft()
                self.published += 1
            self._wake.clear()
            await self._wake.wait()
