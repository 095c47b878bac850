"""Bounds the work that follows an ack, so acks stay fast when commands pour in.

Slack wants an ack within 3 s, and an ack costs little; what costs is the work after it
(reading releases, rendering cards, answering through the ``response_url``). All of it
shares one event loop with the other acks (and the engine), so with every command's
work running at once, a new request's ack waits behind hundreds of others' steps. With
at most ``concurrent`` commands working and the others waiting their turn (which costs
nothing), the loop stays free for acks; answers queue instead. Past ``queued`` waiting
commands, a new one is refused at once with a message to try again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

CONCURRENT = 16
QUEUED = 1000


class Backlog:
    """At most ``concurrent`` commands work at once; at most ``queued`` wait."""

    def __init__(self, concurrent: int = CONCURRENT, queued: int = QUEUED) -> None:
        self.concurrent = concurrent
        self.queued = queued
        self._slots = asyncio.Semaphore(concurrent)
        self.waiting = 0

    @property
    def full(self) -> bool:
        """Whether a new command should be refused (as busy) instead of queued."""
        return self.waiting >= self.queued

    def busy_text(self) -> str:
        """The ephemeral answer to a command refused because the backlog is full."""
        return (
            f":hourglass: canary-bot is busy ({self.waiting} commands waiting); nothing was "
            "done. Try again in a few seconds."
        )

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for a free slot, then hold it for the block."""
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
