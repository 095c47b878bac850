"""``SlackNotifier``: one thread per release, its root a live status card.

What ``publish`` does for a release:

1. The first time, post the card as a new message in the routed channel (the thread root).
2. Post one thread reply per event, oldest first; a failure also gets one top-level alert
   in the channel that mentions the requester and links the thread.
3. Refresh the card in place (``chat.update``). Card refreshes are coalesced per card: a
   burst of changes sends only the latest state, in the background.
4. When the event that ends the release (promoted, rolled back) has been posted, upload
   the rollout chart (``bot.chart``) into the thread, in the background, when a timeline
   source is configured. It is started exactly when that event is first delivered, so
   ``deliveredSeq`` keeps it to one upload per thread; a chart that cannot be built or
   uploaded is logged and never fails the publish (a chart is lost rather than doubled).

Sends to one channel go one at a time through a token bucket (Slack allows about one
post per second per channel), and the client waits out 429s as ``Retry-After`` says.
Every publish has a deadline under the engine's: Slack being slow or down never stalls a
rollout. When nothing could be delivered, ``publish`` raises and the engine re-offers the
same events later; when part was delivered it returns that progress, so nothing is posted
twice. Progress is also remembered here, in case the engine could not store it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Channels
from bot.metrics import BotMetrics
from bot.pacing import Pacer
from bot.render.card import card_blocks, headline_mrkdwn
from bot.render.events import event_reply, failure_alert, is_failure
from bot.render.limits import check_message
from rollout.egress import error_text
from rollout.models import CanaryRelease, NotificationState, RolloutEvent
from rollout.timeline import Timeline, TimelineSource

log = logging.getLogger("canary_bot.notifier")


class SlackUnavailable(Exception):
    """Nothing could be delivered (Slack down, rate limited past the deadline, refused)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Card:
    """The latest rendering of one card waiting to be sent, and who is sending it."""

    blocks: list[dict[str, Any]]
    text: str
    sender: asyncio.Task[None] | None = None


@dataclass
class _Channel:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pacer: Pacer | None = None


class SlackNotifier:
    """Implements ``rollout.notify.Notifier`` on Slack threads."""

    def __init__(
        self,
        client: AsyncWebClient,
        channels: Channels,
        *,
        metrics: BotMetrics | None = None,
        deadline_seconds: float = 8.0,
        posts_per_second: float = 1.0,
        post_burst: int = 5,
        clock: Callable[[], datetime] = _utc_now,
        timelines: TimelineSource | None = None,
        chart_delay_seconds: float = 15.0,
        chart_deadline_seconds: float = 60.0,
        remember_ended: int = 1000,
    ) -> None:
        """``timelines`` builds a finished release's timeline (e.g.
        ``rollout.timeline.timeline_source(PrometheusProvider(url))``); without it no
        rollout chart is posted. The chart is built ``chart_delay_seconds`` after the
        final event, so that Prometheus has scraped the rollout's last seconds (scrape
        intervals are often 15 s); ``chart_deadline_seconds`` bounds building, rendering
        and uploading it.
        """
        self._client = client
        self._channels = channels
        self._metrics = metrics
        self._deadline = deadline_seconds
        self._rate = posts_per_second
        self._burst = post_burst
        self._clock = clock
        self._per_channel: dict[str, _Channel] = {}
        self._cards: dict[tuple[str, str], _Card] = {}
        # Progress per release uid, ahead of what the engine may have stored.
        self._progress: dict[str, NotificationState] = {}
        # The last state of the most recently ended releases (bounded): an offer of an
        # object read before its end was stored must not post the end again.
        self._ended: OrderedDict[str, NotificationState] = OrderedDict()
        self._remember_ended = remember_ended
        self._last_reply: dict[str, tuple[str, str]] = {}
        self._timelines = timelines
        self._chart_delay = chart_delay_seconds
        self._chart_deadline = chart_deadline_seconds
        # (release, thread) pairs whose chart was started: one chart per thread.
        self._charted: set[tuple[str, str]] = set()
        self._chart_tasks: set[asyncio.Task[None]] = set()
        self._chart_waiting: set[asyncio.Task[None]] = set()

    # -- the Notifier protocol ----------------------------------------------------------

    async def publish(
        self, release: CanaryRelease, events: Sequence[RolloutEvent]
    ) -> NotificationState:
        """Deliver ``events`` to the release's thread and refresh its card."""
        key = release.metadata.uid or release.key
        state = self._known_state(key, release.status.notification)
        start = state
        try:
            async with asyncio.timeout(self._deadline):
                state = await self._deliver(release, events, state, key)
                self._prune_finished(release, key)
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = _describe(exc)
            if state == start:
                log.warning(
                    "could not notify Slack about %s: %s",
                    release.key,
                    reason,
                    extra={
                        "namespace": release.metadata.namespace,
                        "release": release.metadata.name,
                    },
                )
                raise SlackUnavailable(
                    f"Slack did not take the update for {release.key}: {reason}"
                ) from None
            log.warning("partly notified Slack about %s: %s", release.key, reason)
            return state
        return state

    async def aclose(self) -> None:
        """Send the last card refreshes and charts (bounded), e.g. before the process exits.

        A chart still waiting for its delay, or not done within the deadline, is dropped.
        """
        # a chart still waiting for Prometheus's last scrapes would only delay the exit
        waiting = list(self._chart_waiting)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        senders = [c.sender for c in self._cards.values() if c.sender is not None]
        senders += [t for t in self._chart_tasks if t not in waiting]
        if senders:
            _, pending = await asyncio.wait(senders, timeout=self._deadline)
            for task in pending:
                task.cancel()

    async def flush(self) -> None:
        """Wait for queued card refreshes and chart uploads (tests and shutdown)."""
        while senders := [
            *(c.sender for c in self._cards.values() if c.sender is not None),
            *self._chart_tasks,
        ]:
            await asyncio.gather(*senders, return_exceptions=True)

    # -- delivery -----------------------------------------------------------------------

    def _known_state(self, key: str, stored: NotificationState) -> NotificationState:
        remembered = self._progress.get(key) or self._ended.get(key)
        if remembered is None or (stored.thread_ts and remembered.thread_ts != stored.thread_ts):
            return stored
        if remembered.delivered_seq >= stored.delivered_seq or not stored.thread_ts:
            return remembered.model_copy(update={"alerted": remembered.alerted or stored.alerted})
        return stored

    def _prune_finished(self, release: CanaryRelease, key: str) -> None:
        """Drop what is kept for a release whose end is delivered and stored: nothing more
        will be posted for it; only its last state stays, among the last ``remember_ended``
        ended releases."""
        stored = release.status.notification
        if not (
            release.status.phase.is_final
            and stored.thread_ts
            and stored.delivered_seq >= release.status.event_seq
        ):
            return
        last = self._progress.pop(key, None)
        if last is not None:
            self._ended[key] = last
            self._ended.move_to_end(key)
            while len(self._ended) > self._remember_ended:
                self._ended.popitem(last=False)
        self._last_reply.pop(key, None)
        self._charted.discard((key, stored.thread_ts))
        card = self._cards.get((stored.channel, stored.thread_ts))
        if card is not None and (card.sender is None or card.sender.done()):
            del self._cards[(stored.channel, stored.thread_ts)]  # its last refresh failed

    def _remember(self, key: str, state: NotificationState) -> NotificationState:
        self._progress[key] = state
        return state

    async def _deliver(
        self,
        release: CanaryRelease,
        events: Sequence[RolloutEvent],
        state: NotificationState,
        key: str,
    ) -> NotificationState:
        pending = [e for e in events if e.seq > state.delivered_seq]
        # Only the config routes: requestedBy.channel is whatever the object's author wrote.
        channel = state.channel or self._channels.route(release.metadata.namespace)
        if channel is None:
            return _unrouted(release, pending, state)
        card_text = headline_mrkdwn(release)
        card = check_message(card_blocks(release, self._clock()), card_text)
        posted_root = False
        if not state.thread_ts:
            if not pending:
                return state  # nothing has happened yet that deserves a thread
            response = await self._send(
                channel, "chat.postMessage", channel=channel, text=card_text, blocks=card
            )
            state = self._remember(
                key,
                state.model_copy(
                    update={"channel": str(response["channel"]), "thread_ts": str(response["ts"])}
                ),
            )
            channel = state.channel
            posted_root = True
        for event in pending:
            signature = (event.type, event.message)
            # The same message again (a halt repeated every interval): say it once.
            if self._last_reply.get(key) != signature:
                text, blocks = event_reply(event)
                await self._send(
                    channel,
                    "chat.postMessage",
                    channel=channel,
                    thread_ts=state.thread_ts,
                    text=text,
                    blocks=check_message(blocks, text),
                )
                self._last_reply[key] = signature
            state = self._remember(key, state.model_copy(update={"delivered_seq": event.seq}))
            if _ends_rollout(event, release):
                self._start_chart(release, state, key)
            # muteAlert (Flagger's): a failure caused only by muted hooks gets no alert
            if is_failure(event) and not event.mute_alert and not state.alerted:
                await self._alert(release, event, state)
                state = self._remember(key, state.model_copy(update={"alerted": True}))
        if not posted_root:
            self._refresh_card(channel, state.thread_ts, card, card_text)
        return state

    async def _alert(
        self, release: CanaryRelease, event: RolloutEvent, state: NotificationState
    ) -> None:
        link = f"thread {state.thread_ts}"
        try:
            response = await self._client.chat_getPermalink(
                channel=state.channel, message_ts=state.thread_ts
            )
            link = str(response.get("permalink") or link)
        except SlackApiError as exc:  # the alert matters more than the link
            self._count("chat.getPermalink", "error")
            log.info("no permalink for %s: %s", release.key, exc.response.get("error"))
        text, blocks = failure_alert(release, event, link)
        await self._send(
            state.channel,
            "chat.postMessage",
            channel=state.channel,
            text=text,
            blocks=check_message(blocks, text),
            unfurl_links=False,
        )

    def _lane(self, channel_id: str) -> tuple[_Channel, Pacer]:
        lane = self._per_channel.setdefault(channel_id, _Channel())
        if lane.pacer is None:
            lane.pacer = Pacer(self._rate, self._burst)
        return lane, lane.pacer

    async def _send(self, channel_id: str, method: str, /, **params: Any) -> dict[str, Any]:
        lane, pacer = self._lane(channel_id)
        async with lane.lock:
            await pacer.acquire()
            try:
                response = await self._client.api_call(method, json=params)
            except SlackApiError as exc:
                self._count(method, str(exc.response.get("error") or exc.response.status_code))
                raise
            except (SlackClientError, OSError, TimeoutError):
                self._count(method, "unreachable")
                raise
        self._count(method, "ok")
        return dict(response.data) if isinstance(response.data, dict) else {}

    # -- the rollout chart --------------------------------------------------------------

    def _start_chart(self, release: CanaryRelease, state: NotificationState, key: str) -> None:
        """Build and upload the chart in the background, once per release thread."""
        mark = (key, state.thread_ts)
        if self._timelines is None or mark in self._charted:
            return
        self._charted.add(mark)
        task = asyncio.get_running_loop().create_task(
            self._post_chart(self._timelines, release, state.channel, state.thread_ts)
        )
        self._chart_tasks.add(task)
        task.add_done_callback(self._chart_tasks.discard)

    async def _post_chart(
        self, timelines: TimelineSource, release: CanaryRelease, channel: str, thread_ts: str
    ) -> None:
        task = asyncio.current_task()
        try:
            if task is not None:
                self._chart_waiting.add(task)
            try:
                await asyncio.sleep(self._chart_delay)
            finally:
                self._chart_waiting.discard(task)
            async with asyncio.timeout(self._chart_deadline):
                timeline = await timelines(release)
                # rendering is CPU-bound (a few hundred ms): keep the event loop free
                png, label, alt_text = await asyncio.to_thread(_render_chart, release, timeline)
                lane, pacer = self._lane(channel)
                async with lane.lock:
                    await pacer.acquire()  # sharing the file posts into the channel
                try:
                    await self._client.files_upload_v2(
                        channel=channel,
                        thread_ts=thread_ts,
                        file=png,
                        filename=f"{release.metadata.name}-rollout.png",
                        title=f"Rollout of {release.key}: {label}"[:250],
                        alt_txt=alt_text,
                        initial_comment=(
                            ":chart_with_upwards_trend: How the rollout went: success rate "
                            "and p99 latency, canary vs stable, with the canary weight"
                        ),
                    )
                except SlackApiError as exc:
                    self._count("files.upload_v2", str(exc.response.get("error") or "error"))
                    raise
            self._count("files.upload_v2", "ok")
        except Exception as exc:  # a missing chart must never break notifications
            log.warning(
                "rollout chart for %s not posted: %s",
                release.key,
                _describe(exc),
                extra={"namespace": release.metadata.namespace, "release": release.metadata.name},
            )

    def _count(self, method: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.slack_sends.labels(method=method, outcome=outcome).inc()

    # -- coalesced card refreshes -------------------------------------------------------

    def _refresh_card(self, channel: str, ts: str, blocks: list[dict[str, Any]], text: str) -> None:
        """Queue the newest rendering; one sender per card sends only the latest."""
        card = self._cards.get((channel, ts))
        if card is None:
            card = self._cards[(channel, ts)] = _Card(blocks, text)
        else:
            card.blocks, card.text = blocks, text
        if card.sender is None or card.sender.done():
            card.sender = asyncio.get_running_loop().create_task(self._send_card(channel, ts))

    async def _send_card(self, channel: str, ts: str) -> None:
        card = self._cards[(channel, ts)]
        sent: tuple[str, list[dict[str, Any]]] | None = None
        try:
            while sent != (card.text, card.blocks):
                sent = (card.text, card.blocks)
                try:
                    async with asyncio.timeout(self._deadline * 4):
                        await self._send(
                            channel,
                            "chat.update",
                            channel=channel,
                            ts=ts,
                            text=sent[0],
                            blocks=sent[1],
                        )
                except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    # The next publish re-renders the card; nothing is lost but freshness.
                    log.warning("card %s/%s not refreshed: %s", channel, ts, _describe(exc))
                    return
        finally:
            with contextlib.suppress(KeyError):
                if self._cards[(channel, ts)] is card and sent == (card.text, card.blocks):
                    del self._cards[(channel, ts)]
                else:
                    card.sender = None


def _render_chart(release: CanaryRelease, timeline: Timeline) -> tuple[bytes, str, str]:
    """The chart's PNG, its decision label and its alt text."""
    # matplotlib (and numpy) load with the first chart, not at start-up
    from bot.chart import chart_alt_text, decision_label, render_rollout_chart

    return (
        render_rollout_chart(release, timeline),
        decision_label(timeline),
        chart_alt_text(release, timeline),
    )


def _unrouted(
    release: CanaryRelease, pending: Sequence[RolloutEvent], state: NotificationState
) -> NotificationState:
    """No channel for the release's namespace: say so once per batch, count it delivered."""
    if pending:
        log.warning(
            "no Slack thread for %s: no channels.routes entry matches namespace %s "
            "and channels.default is not set",
            release.key,
            release.metadata.namespace,
            extra={"namespace": release.metadata.namespace, "release": release.metadata.name},
        )
    last = max([e.seq for e in pending], default=state.delivered_seq)
    return state.model_copy(update={"delivered_seq": last})


def _ends_rollout(event: RolloutEvent, release: CanaryRelease) -> bool:
    """Whether ``event`` ends a rollout that ran (a spec refused at the start did not)."""
    final = event.type in ("Promoted", "RolledBack") or (
        event.phase is not None and event.phase.is_final
    )
    return final and release.status.started_at is not None


def _describe(exc: BaseException) -> str:
    """A short reason without tokens or request bodies."""
    if isinstance(exc, SlackApiError):
        return f"Slack answered {exc.response.status_code} {exc.response.get('error')}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return error_text(exc)
