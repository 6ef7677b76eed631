"""asyncio helpers shared by the daemons."""

from __future__ import annotations

import asyncio


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
