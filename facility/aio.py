"""asyncio helpers shared by the daemons."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

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


async def run_until_signalled(
    main: Coroutine[Any, Any, None] | None = None,
    *,
    start: Callable[[], Awaitable[None]] | None = None,
    reload: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run a daemon's life between its start and its stop: the one signal loop of the
    `facility` commands that run until told otherwise.

    SIGINT and SIGTERM ask to stop gracefully: `main` (the daemon's foreground work, if
    any) is cancelled and waited for, then this returns and the caller stops what it
    started. Without `main` it returns only on a stop signal. `start` runs with the
    handlers already installed, so a SIGTERM during a slow start is kept, not fatal.
    SIGHUP awaits `reload` when given: one reload at a time, signals that come during
    one coalesce into one more, with the files as they are then. A reload that fails
    unexpectedly is logged and the daemon runs on with what it had.
    A second stop signal while the caller stops is ignored: the handlers stay installed.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reloads.set)
    if start is not None:
        try:
            await start()
        except BaseException:
            if main is not None:
                main.close()  # never started: no "never awaited" warning
            raise
    work = asyncio.create_task(main) if main is not None else None
    try:
        while not stop.is_set() and not (work is not None and work.done()):
            await _first_of(stop, reloads, work)
            if reloads.is_set() and not stop.is_set() and reload is not None:
                reloads.clear()
                await _reload_logged(reload)
    finally:
        if work is not None:
            await cancel_and_wait(work)


async def _first_of(
    stop: asyncio.Event, reloads: asyncio.Event, work: asyncio.Task[None] | None
) -> None:
    waiters: set[asyncio.Task[Any]] = {
        asyncio.create_task(stop.wait()),
        asyncio.create_task(reloads.wait()),
    }
    try:
        await asyncio.wait(
            waiters | ({work} if work is not None else set()),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _reload_logged(reload: Callable[[], Awaitable[None]]) -> None:
    try:
        await reload()
    except Exception:
        log.exception("reload failed; running on with the configuration it had")
