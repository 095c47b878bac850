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

A routine delivery (a Progressing release whose thread and alert are unchanged, only
``deliveredSeq`` moved) is not stored on its own: the next step's status write carries
it (``fold``), so a steady analysis step costs one status write, not two. That write
comes within one interval; if it has not come by ``FOLD_WINDOW_SECONDS`` (intervals longer
than that, a paused scheduler) the record is stored on its own, and a graceful stop
stores every record still waiting (``flush``) before the Lease is handed back. Only an
engine that dies without stopping (SIGKILL, OOM, a lost node) inside that window makes a
new leader post those routine replies a second time; endings, alerts and the thread's
first post are always stored at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from rollout.kube import KubeError
from rollout.models import CanaryRelease, NotificationState, Phase

log = logging.getLogger("canary_bot.outbox")

Publish = Callable[[CanaryRelease], Awaitable[NotificationState | None]]
Store = Callable[[str, str, NotificationState], Awaitable[CanaryRelease | None]]

# How long a routine delivery record may wait for the next step's status write.
FOLD_WINDOW_SECONDS = 30.0


def routine(
    release: CanaryRelease, state: NotificationState, window: float = FOLD_WINDOW_SECONDS
) -> bool:
    """Whether ``state`` may ride on the release's next status write: the release steps
    again within the fold window, and only the delivered sequence number changed since
    what the object (as read, before any overlay) holds."""
    stored = release.status.notification
    return (
        release.status.phase == Phase.PROGRESSING
        and release.spec.analysis.interval_seconds < window
        and state.channel == stored.channel
        and state.thread_ts == stored.thread_ts
        and state.alerted == stored.alerted
    )


class Outbox:
    """Per-release background delivery (see module doc)."""

    def __init__(
        self,
        publish: Publish,
        store: Store,
        lock_of: Callable[[str], AbstractAsyncContextManager[None]],
        may_act: Callable[[], bool],
        fold_window: float = FOLD_WINDOW_SECONDS,
    ) -> None:
        self._publish = publish
        self._store = store
        self._lock_of = lock_of
        self._may_act = may_act
        self._fold_window = fold_window
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._records: set[asyncio.Task[None]] = set()
        self._latest: dict[str, CanaryRelease] = {}
        # what the notifier confirmed, ahead of an object read before it was stored
        self._confirmed: dict[str, NotificationState] = {}
        # confirmed routine deliveries no status write has carried yet, each with the
        # timer that stores it on its own when no step comes (see module doc)
        self._waiting: dict[str, tuple[NotificationState, asyncio.TimerHandle]] = {}

    def offer(self, key: str, release: CanaryRelease) -> None:
        """Deliver ``release``'s undelivered events soon and refresh its card (offered
        after every status write, and after every advance while events are waiting)."""
        self._latest[key] = release
        self._carried(key, release.status.notification)
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
        as_read = release
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
        if state == as_read.status.notification:
            return  # nothing new to record (a card refresh only)
        if routine(as_read, state, self._fold_window):
            self._wait_for_step(key, state)
            return
        self._carried(key, state)
        await self._store_now(key, state)

    async def _store_now(self, key: str, state: NotificationState) -> None:
        namespace, name = key.split("/", 1)
        async with self._lock_of(key):
            await self._store(namespace, name, state)

    def fold(self, key: str, stored: NotificationState) -> NotificationState:
        """The notification state a status write of ``key`` should carry: what the
        notifier confirmed, when that is newer than what the object holds."""
        confirmed = self._confirmed.get(key)
        if confirmed is not None and confirmed.delivered_seq > stored.delivered_seq:
            return confirmed
        return stored

    def _wait_for_step(self, key: str, state: NotificationState) -> None:
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            waiting[1].cancel()
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._fold_window, self._store_waiting, key)
        self._waiting[key] = (state, timer)

    def _carried(self, key: str, stored: NotificationState) -> None:
        """A status write stored ``stored``: a waiting record it covers is done."""
        waiting = self._waiting.get(key)
        if waiting is not None and stored.delivered_seq >= waiting[0].delivered_seq:
            waiting[1].cancel()
            del self._waiting[key]

    def _store_waiting(self, key: str) -> None:
        """No step carried the record in time: store it in a task of its own."""
        waiting = self._waiting.pop(key, None)
        if waiting is None or not self._may_act():
            return
        task = asyncio.get_running_loop().create_task(
            self._store_quietly(key, waiting[0]), name=f"deliver-record:{key}"
        )
        self._records.add(task)
        task.add_done_callback(self._records.discard)

    async def _store_quietly(self, key: str, state: NotificationState) -> None:
        try:
            await self._store_now(key, state)
        except KubeError as exc:
            log.warning("storing the delivery of %s failed: %s (offered again)", key, exc)

    async def flush(self) -> None:
        """Store every record still waiting for a step (a graceful stop, while leading)."""
        waiting, self._waiting = self._waiting, {}
        for key, (state, timer) in waiting.items():
            timer.cancel()
            if self._may_act():
                await self._store_quietly(key, state)
        if self._records:
            await asyncio.gather(*self._records, return_exceptions=True)

    def forget(self, key: str) -> None:
        """Drop what is kept for a deleted release (a running delivery ends by itself)."""
        self._latest.pop(key, None)
        self._confirmed.pop(key, None)
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            waiting[1].cancel()

    async def cancel_all(self) -> None:
        """Stop every delivery now (leadership lost or shutting down)."""
        tasks = list(self._tasks.values()) + list(self._records)
        for task in tasks:
            task.cancel()
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        self._latest.clear()
        self._confirmed.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
