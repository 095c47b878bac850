"""Delivering each release's outbox in the background, outside the per-release lock.

``advance`` stores events in ``status.events``; ``Outbox.offer`` then hands them to the
notifier in a task of their own, so a Slack outage (each publish may take the notifier's
whole deadline) never holds up the next ``advance`` of that release, such as an abort.

- One delivery task per release at a time; offers that arrive meanwhile are coalesced
  into one more round with the newest object.
- The notifier's confirmed state is stored on a freshly read object under the release's
  lock, so it neither conflicts with nor overwrites an ``advance`` (a few milliseconds).
- Events stay in status until their delivery is stored: after a restart or a failure
  they are offered again, and the notifier skips what it had confirmed (see
  ``rollout.notify``), so each is delivered once.
- Nothing is published or stored once ``may_act`` says this process may no longer act.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from rollout.kube import KubeError
from rollout.models import CanaryRelease, NotificationState

log = logging.getLogger("canary_bot.outbox")

Publish = Callable[[CanaryRelease], Awaitable[NotificationState | None]]
Store = Callable[[str, str, NotificationState], Awaitable[CanaryRelease | None]]


class Outbox:
    """Per-release background delivery (see module doc)."""

    def __init__(
        self,
        publish: Publish,
        store: Store,
        lock_of: Callable[[str], AbstractAsyncContextManager[None]],
        may_act: Callable[[], bool],
    ) -> None:
        self._publish = publish
        self._store = store
        self._lock_of = lock_of
        self._may_act = may_act
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._latest: dict[str, CanaryRelease] = {}
        # what the notifier confirmed, ahead of an object read before it was stored
        self._confirmed: dict[str, NotificationState] = {}

    def offer(self, key: str, release: CanaryRelease) -> None:
        """Deliver ``release``'s undelivered events soon and refresh its card (offered
        after every status write, and after every advance while events are waiting)."""
        self._latest[key] = release
        if key not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._drain(key), name=f"deliver:{key}")
            self._tasks[key] = task

    async def _drain(self, key: str) -> None:
        try:
            while (release := self._latest.pop(key, None)) is not None and self._may_act():
                await self._deliver(key, release)
        except KubeError as exc:
            log.warning("storing the delivery of %s failed: %s (offered again)", key, exc)
        except Exception:
            log.exception("delivering %s failed (offered again)", key)
        finally:
            self._tasks.pop(key, None)

    async def _deliver(self, key: str, release: CanaryRelease) -> None:
        confirmed = self._confirmed.get(key)
        if confirmed is not None and (
            confirmed.delivered_seq > release.status.notification.delivered_seq
        ):
            status = release.status.model_copy(update={"notification": confirmed})
            release = release.model_copy(update={"status": status})
        state = await self._publish(release)
        if state is None or not self._may_act():
            return
        self._confirmed[key] = state
        namespace, name = key.split("/", 1)
        async with self._lock_of(key):
            await self._store(namespace, name, state)

    def forget(self, key: str) -> None:
        """Drop what is kept for a deleted release (a running delivery ends by itself)."""
        self._latest.pop(key, None)
        self._confirmed.pop(key, None)

    async def cancel_all(self) -> None:
        """Stop every delivery now (leadership lost or shutting down)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        self._latest.clear()
        self._confirmed.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
