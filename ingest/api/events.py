"""Transitions as they happen, to every open console: Server-Sent Events.

The hub is an AlarmPipeline listener; each open `/api/events` stream has its own queue.
A console that falls behind (a phone on a bad link) is not allowed to hold the pipeline
up or grow memory without bound: its queue is bounded, and when it overflows the stream
gets one `resync` event instead of the lost transitions, on which the console re-reads
the board. The console also re-reads the board whenever its stream (re)connects, so
nothing is replayed from here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ingest.alarms.book import Transition
from ingest.api.models import TransitionOut

HEARTBEAT_S = 15.0
QUEUE_SIZE = 256
RETRY_MS = 3000

Batch = list[Transition] | None  # None: the hub closed, end the stream


@dataclass(eq=False)
class Subscriber:
    loop: asyncio.AbstractEventLoop
    user: str = ""
    queue: asyncio.Queue[Batch] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    lagging: bool = False

    def offer(self, batch: Batch) -> None:
        if batch is None:
            self._close()
            return
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.lagging = True

    def _close(self) -> None:
        # The closing mark must get through even to a full queue.
        while self.queue.full():
            self.queue.get_nowait()
            self.lagging = True
        self.queue.put_nowait(None)


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self.closed = False

    async def publish(self, transitions: list[Transition]) -> None:
        """The pipeline listener. Never waits for a console."""
        self._send(list(transitions))

    def close(self) -> None:
        """End every stream, so a server shutting down has no connection to wait for."""
        self.closed = True
        self._send(None)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def end_streams_of(self, user: str) -> None:
        """A user whose access was revoked hears nothing more."""
        for subscriber in list(self._subscribers):
            if subscriber.user == user:
                subscriber.loop.call_soon_threadsafe(subscriber.offer, None)

    @contextmanager
    def subscribe(self, user: str = "") -> Iterator[Subscriber]:
        subscriber = Subscriber(asyncio.get_running_loop(), user)
        if self.closed:
            subscriber.offer(None)
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)

    def _send(self, batch: Batch) -> None:
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for subscriber in list(self._subscribers):
            if subscriber.loop is here:
                subscriber.offer(batch)
            else:  # a server running in another thread than the pipeline
                subscriber.loop.call_soon_threadsafe(subscriber.offer, batch)


async def stream(hub: EventHub, user: str, heartbeat_s: float = HEARTBEAT_S) -> AsyncIterator[str]:
    """The text of one `text/event-stream` response."""
    with hub.subscribe(user) as subscriber:
        yield f"retry: {RETRY_MS}\n" + sse("hello", {"user": user})
        while True:
            try:
                batch = await asyncio.wait_for(subscriber.queue.get(), heartbeat_s)
            except TimeoutError:
                # Keeps proxies from closing an idle stream, and finds dead clients.
                yield ": keep-alive\n\n"
                continue
            if batch is None:
                return
            for transition in batch:
                yield sse(
                    "transition", TransitionOut.model_validate(transition).model_dump(mode="json")
                )
            if subscriber.lagging and subscriber.queue.empty():
                subscriber.lagging = False
                yield sse("resync", {"reason": "transitions were dropped; read the board again"})


def sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
