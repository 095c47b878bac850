"""Cancelling a task waiting on an API request always cancels it.

The controller stops the revision loop (and every run in flight) by cancelling its task
once. If the request it waits on has just finished, the cancellation must still win:
otherwise the loop goes on to its next tick and the controller's shutdown waits for it
forever (asyncio.wait_for of Python 3.11 returns the request's result instead).
"""

from __future__ import annotations

import asyncio
import socket
import time

import kubernetes.client
import pytest

from rollout.kube import RELEASES, Kube, KubeError


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_cancel_landing_as_the_request_finishes_still_cancels() -> None:
    config = kubernetes.client.Configuration()
    config.host = f"https://127.0.0.1:{closed_port()}"
    # one worker: the second request starts only after the first one's answer was
    # handed to the event loop, so seeing it start means the first one is done
    kube = Kube(kubernetes.client.ApiClient(config), workers=1)
    try:
        first = asyncio.create_task(kube.get(RELEASES, "test", "a"))
        second = asyncio.create_task(kube.get(RELEASES, "test", "b"))
        await asyncio.sleep(0)  # both submitted to the pool
        deadline = time.monotonic() + 10
        # blocking on purpose: the loop must not run the first task's wake-up yet
        while kube.requests.total < 2:
            assert time.monotonic() < deadline, "the second request never started"
            time.sleep(0.001)
        first.cancel()

        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(KubeError):
            await second
    finally:
        kube.close()
