"""How the engine reports: a ``Notifier`` protocol the Slack front implements.

The engine appends every significant event to ``status.events`` (an outbox) in the same
write as the state change it describes. The leader then hands undelivered events to the
notifier and stores the returned ``NotificationState``; a crash between the two only
repeats delivery of events the notifier had not confirmed, and a new leader continues
the same thread because its coordinates live in the object's status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from rollout.models import CanaryRelease, NotificationState, RolloutEvent

log = logging.getLogger("canary_bot.events")


class Notifier(Protocol):
    """Delivers a release's events somewhere people look (Slack, a console, logs)."""

    async def publish(
        self, release: CanaryRelease, events: Sequence[RolloutEvent]
    ) -> NotificationState:
        """Deliver ``events`` (oldest first, all newer than ``deliveredSeq``).

        Also refreshes any live view of ``release`` (a status card). Returns the new
        notification state: where the thread lives and the last ``seq`` delivered. Raise
        to have the same events offered again later.
        """
        ...


class LoggingNotifier:
    """The default notifier: one structured log line per event."""

    async def publish(
        self, release: CanaryRelease, events: Sequence[RolloutEvent]
    ) -> NotificationState:
        """Log each event bound to the release's namespace/name."""
        state = release.status.notification
        for event in events:
            log.info(
                event.message,
                extra={
                    "namespace": release.metadata.namespace,
                    "release": release.metadata.name,
                    "event": event.type,
                    "seq": event.seq,
                    "weight": event.weight,
                },
            )
        last = events[-1].seq if events else state.delivered_seq
        return state.model_copy(update={"delivered_seq": max(last, state.delivered_seq)})


def undelivered(release: CanaryRelease) -> list[RolloutEvent]:
    """Events in the outbox newer than what the notifier confirmed."""
    done = release.status.notification.delivered_seq
    return [e for e in release.status.events if e.seq > done]
