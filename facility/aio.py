"""asyncio helpers shared by the daemons."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

log = logging.getLogger(__name__)


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


async def cancel_and_wait(task: asyncio.Task[None], attempts: int = 20) -> None:
    """Cancel a task and wait until it has really finished.

    The cancellation is repeated while the task runs on, because a library can swallow
    one (see honour_cancellation); a task that survives every attempt is logged and
    left running rather than hanging the caller.
    """
    for _ in range(attempts):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if done:
            break
    if not task.done():
        log.error("task %s ignored %d cancellations; leaving it", task.get_name(), attempts)
        return
    with contextlib.suppress(asyncio.CancelledError):
        await task


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: the daemons' way to stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
