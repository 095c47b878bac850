"""Polling with a deadline, the one way tests and benchmarks wait for a condition.

A condition is polled until it holds; past the deadline :class:`WaitTimeout` names what
was awaited and the last value seen. It is an ``AssertionError`` (a test that waited in
vain fails) and a ``TimeoutError`` (a benchmark can tell a timeout from a crash).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

_T = TypeVar("_T")

__all__ = ["WaitTimeout", "async_poll", "async_wait_for", "poll", "wait_for"]


class WaitTimeout(AssertionError, TimeoutError):
    """A condition did not hold before its deadline."""


def _timeout(what: str, timeout: float, last: object) -> WaitTimeout:
    return WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def poll(
    probe: Callable[[], _T],
    accept: Callable[[_T], object],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
) -> _T:
    """Call ``probe`` until ``accept`` holds for its value (probed once more at the end)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            raise _timeout(what, timeout, value)
        time.sleep(interval)


def wait_for(condition: Callable[[], _T], timeout: float, what: str, interval: float = 0.1) -> _T:
    """Poll ``condition`` until it returns something truthy; return that value."""
    return poll(condition, bool, timeout, what, interval=interval)


async def async_poll(
    probe: Callable[[], _T | Awaitable[_T]],
    accept: Callable[[_T], object],
    timeout: float,  # noqa: ASYNC109 - the deadline is what a poller is for
    what: str,
    *,
    interval: float = 0.2,
) -> _T:
    """:func:`poll` on an event loop: ``probe`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = probe()
        value: _T = await outcome if inspect.isawaitable(outcome) else outcome
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            raise _timeout(what, timeout, value)
        await asyncio.sleep(interval)


async def async_wait_for(
    condition: Callable[[], _T | Awaitable[_T]],
    timeout: float,  # noqa: ASYNC109 - the deadline is what a poller is for
    what: str,
    interval: float = 0.2,
) -> _T:
    """:func:`wait_for` without blocking the event loop."""
    return await async_poll(condition, bool, timeout, what, interval=interval)
