"""The Slack port, served by an event loop of its own in a thread.

Slack waits 3 s for the acknowledgement of a command. Served on the process's event
loop, an ack waits for its turn behind every other command's work and the engine's
steps: each turn of a busy loop runs everything that is ready, and an ack through Bolt
takes several turns. Here the Slack port's loop reads the request, checks its signature
and, for a ``/canary`` command that parses, acknowledges it at once
(``bot.handlers.slash_command.early_acker``); Bolt, the listeners, the clients and the
engine stay on the main loop, where the request is handed over. Requests whose answer
comes from a listener (button clicks, dialogs, help, refusals of bad input) wait for
Bolt on the main loop as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable

from aiohttp import web

from bot.web import serve

log = logging.getLogger("canary_bot.web")

# How long stopping waits for the port's thread (its runner's cleanup) before going on.
STOP_TIMEOUT_S = 10.0


class SlackPort:
    """``build()``'s web app served on ``host:port`` from a thread; ``start`` then ``stop``."""

    def __init__(self, build: Callable[[], web.Application], host: str, port: int) -> None:
        self._build, self._host, self._port = build, host, port
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Serve; returns once the port listens (raises what binding it raised)."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="slack-port", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.runner = self._loop.run_until_complete(
                serve(self._build(), self._host, self._port)
            )
        except BaseException as exc:  # e.g. the port is taken: start() raises it
            ready.set_exception(exc)
            self._loop.close()
            return
        ready.set_result(None)
        try:
            self._loop.run_forever()
            self._loop.run_until_complete(self.runner.cleanup())
        finally:
            self._loop.close()

    async def stop(self) -> None:
        """Stop listening and close the port's connections."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(thread.join, STOP_TIMEOUT_S)
        if thread.is_alive():
            log.warning("the Slack port did not stop within %.0fs", STOP_TIMEOUT_S)
