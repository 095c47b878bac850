"""Console mode: the same card and events as text, for running without Slack."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

from bot.render.text import card_text, event_line
from rollout.models import CanaryRelease, NotificationState, RolloutEvent


class ConsoleNotifier:
    """Prints each event as a line and the card after every batch (a Notifier)."""

    def __init__(
        self,
        out: TextIO = sys.stdout,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._out = out
        self._clock = clock

    async def publish(
        self, release: CanaryRelease, events: Sequence[RolloutEvent]
    ) -> NotificationState:
        """Print the events, then the card when something happened."""
        state = release.status.notification
        for event in events:
            print(event_line(release, event), file=self._out)
        if events:
            print(card_text(release, self._clock()), file=self._out, flush=True)
        last = max([e.seq for e in events], default=state.delivered_seq)
        return state.model_copy(update={"delivered_seq": max(last, state.delivered_seq)})
