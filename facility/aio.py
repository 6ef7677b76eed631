"""asyncio helpers shared by the daemons."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def honour_cancellation() -> None:
    """Re-raise a cancellation a library swallowed.

    Python 3.11's asyncio.wait_for (used inside pymodbus and paho/aiomqtt connects) can
    swallow a cancellation that arrives just as the awaited operation ends; the task
    then runs on with `cancelling()` set. Loops that must stop when cancelled call this
    once per turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel a task and wait until it has really finished."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: the daemons' way to stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
