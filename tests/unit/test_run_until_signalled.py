"""facility.aio.run_until_signalled: the signal loop every `facility` daemon lives in.

Real signals sent to this very process (os.kill), so the loop's handlers are the ones
that answer; the process-level tests (gateway, ingest, simulate) cover the commands.
Each test runs its own event loop (asyncio.run): closing it removes the handlers, which
the helper leaves installed on purpose (a second SIGTERM while a daemon stops is ignored).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any

import pytest

from facility.aio import run_until_signalled


def _signal_later(sig: signal.Signals, after_s: float = 0.05) -> None:
    asyncio.get_running_loop().call_later(after_s, os.kill, os.getpid(), sig)


def _run(life: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(life, 5))


def test_sigterm_cancels_main_and_waits_for_its_cleanup() -> None:
    cleaned: list[str] = []

    async def main() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.05)  # a cleanup that itself awaits
            cleaned.append("main")

    async def life() -> None:
        _signal_later(signal.SIGTERM)
        await run_until_signalled(main())

    _run(life())
    assert cleaned == ["main"]


def test_main_ending_ends_it_and_its_error_comes_out() -> None:
    async def done() -> None:
        await asyncio.sleep(0.01)

    _run(run_until_signalled(done()))

    async def broken() -> None:
        raise ValueError("the daemon's own fault")

    with pytest.raises(ValueError, match="own fault"):
        _run(run_until_signalled(broken()))


def test_sigint_stops_without_main_and_a_stop_during_start_is_kept() -> None:
    started: list[str] = []

    async def slow_start() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came while it connected
        await asyncio.sleep(0.1)
        started.append("started")

    _run(run_until_signalled(start=slow_start))
    assert started == ["started"]  # the start ran to its end, then the stop applied


def test_sighup_reloads_one_at_a_time_and_a_failed_reload_keeps_it_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reloads: list[int] = []
    running = 0

    async def reload() -> None:
        nonlocal running
        running += 1
        assert running == 1, "two reloads at once"
        turn = len(reloads)
        reloads.append(turn)
        try:
            if turn == 0:
                _signal_later(signal.SIGHUP, 0.2)  # the daemon runs on after this failure
                raise RuntimeError("a reload bug")
            if turn == 1:  # a burst during this reload: one more reload after it, not three
                for _ in range(3):
                    os.kill(os.getpid(), signal.SIGHUP)
                await asyncio.sleep(0.05)
            if turn == 2:  # time for a wrongly queued fourth reload to show
                _signal_later(signal.SIGTERM, 0.3)
        finally:
            running -= 1

    async def life() -> None:
        _signal_later(signal.SIGHUP)
        await run_until_signalled(reload=reload)

    with caplog.at_level(logging.ERROR, logger="facility.aio"):
        _run(life())
    assert reloads == [0, 1, 2]
    assert "reload failed; running on" in caplog.text and "a reload bug" in caplog.text


def test_without_a_reload_sighup_is_left_alone() -> None:
    async def life() -> None:
        await run_until_signalled(asyncio.sleep(0.01))
        assert asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP) is False
        assert asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM) is True

    _run(life())
