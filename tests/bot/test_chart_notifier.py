"""The rollout chart in Slack: one PNG in the release's thread when the release ends.

SlackNotifier against the Slack fake, with a timeline source that answers from a
synthetic timeline (the Prometheus side is covered in test_chart_timeline.py).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any

import pytest
from PIL import Image
from prometheus_client import CollectorRegistry
from slack_sdk.web.async_client import AsyncWebClient

from bot.chart import HEIGHT_PX, WIDTH_PX
from bot.config import Channels
from bot.metrics import BotMetrics
from bot.notifier import SlackNotifier
from bot.slack_client import make_client
from rollout.models import CanaryRelease, NotificationState, Phase, RolloutEvent
from rollout.timeline import Timeline
from sandbox.slack_fake import SlackFake
from tests.bot.factories import NOW, event, release
from tests.bot.test_chart import synthetic_timeline
from tests.fixtures.slack import eventually

CHANNEL = "C0DEPLOYS"
CAUSE = "rolled back: request-success-rate 48.1 below 99 for 10 checks"


@pytest.fixture
def client(slack_fake: SlackFake) -> AsyncWebClient:
    return make_client(slack_fake.bot_token, slack_fake.api_url, rate_limit_retries=2)


class Timelines:
    """A timeline source that counts its calls; optionally fails or hangs."""

    def __init__(self, *, error: Exception | None = None, hang: bool = False) -> None:
        self.calls: list[str] = []
        self.error = error
        self.hang = hang

    async def __call__(self, release: CanaryRelease) -> Timeline:
        self.calls.append(release.key)
        if self.hang:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
        return synthetic_timeline(
            "rolled back" if release.status.phase == Phase.FAILED else "promoted"
        )


def notifier(client: AsyncWebClient, timelines: Timelines | None, **kwargs: Any) -> SlackNotifier:
    return SlackNotifier(
        client,
        Channels(default=CHANNEL),
        metrics=BotMetrics(CollectorRegistry()),
        clock=lambda: NOW,
        posts_per_second=100,
        timelines=timelines,
        **{"chart_delay_seconds": 0.0, **kwargs},
    )


def started(phase: Phase, weight: int, state: NotificationState | None = None) -> CanaryRelease:
    """A release in ``phase`` whose rollout started (the factory's releases have)."""
    notification = state.model_dump(by_alias=True) if state else None
    return release(phase, weight=weight, notification=notification)


def offer(
    base: CanaryRelease, events: list[dict[str, Any]], state: NotificationState | None = None
) -> tuple[CanaryRelease, list[RolloutEvent]]:
    """``base`` with ``events`` in its outbox, and the ones not yet delivered."""
    parsed = [RolloutEvent.model_validate(e) for e in events]
    notification = state or base.status.notification
    status = base.status.model_copy(
        update={"events": parsed, "notification": notification, "event_seq": parsed[-1].seq}
    )
    pending = [e for e in parsed if e.seq > notification.delivered_seq]
    return base.model_copy(update={"status": status}), pending


def final(seq: int, type_: str = "RolledBack") -> dict[str, Any]:
    body = event(seq, type_, CAUSE if type_ == "RolledBack" else "Promotion completed!", weight=0)
    body["phase"] = "Failed" if type_ == "RolledBack" else "Succeeded"
    body["severity"] = "error" if type_ == "RolledBack" else "info"
    return body


STEPS = [event(1, "Started", "new revision detected", weight=0), event(2)]


async def run_to_the_end(
    slack: SlackNotifier, type_: str = "RolledBack"
) -> tuple[NotificationState, CanaryRelease, list[dict[str, Any]]]:
    """Publish a rollout's steps, then its end; return the state and the final offer."""
    state = await slack.publish(*offer(started(Phase.PROGRESSING, 10), STEPS))
    phase = Phase.FAILED if type_ == "RolledBack" else Phase.SUCCEEDED
    events = [*STEPS, final(3, type_)]
    ended, pending = offer(started(phase, 0), events, state)
    state = await slack.publish(ended, pending)
    return state, ended, events


def decode_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.parametrize("type_", ["RolledBack", "Promoted"])
async def test_the_chart_lands_once_in_the_thread_when_the_release_ends(
    slack_fake: SlackFake, client: AsyncWebClient, type_: str
) -> None:
    timelines = Timelines()
    slack = notifier(client, timelines)

    state, ended, events = await run_to_the_end(slack, type_)
    await slack.flush()

    [chart] = slack_fake.files()
    assert (chart.channel, chart.thread_ts) == (CHANNEL, state.thread_ts)
    assert chart.filename == "podinfo-x7k2p-rollout.png"
    outcome = "promoted" if type_ == "Promoted" else "rolled back"
    assert chart.title.startswith(f"Rollout of podinfo-x7k2p.test: {outcome}")
    assert decode_size(chart.content) == (WIDTH_PX, HEIGHT_PX)
    # the file is shared as a reply in the thread, after the final event's reply
    thread = slack_fake.thread(CHANNEL, state.thread_ts)
    assert [bool(m.get("files")) for m in thread] == [False, False, False, False, True]

    # the same events offered again, with the stored state and with the old one
    await slack.publish(*offer(ended, events, state))
    await slack.publish(*offer(ended, events, state.model_copy(update={"delivered_seq": 2})))
    # and a new leader continuing the stored thread
    await notifier(client, timelines).publish(*offer(ended, events, state))
    await slack.flush()
    assert len(slack_fake.files()) == 1
    assert timelines.calls == ["podinfo-x7k2p.test"]


async def test_the_chart_waits_for_prometheus_to_scrape_the_last_seconds(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    timelines = Timelines()
    slack = notifier(client, timelines, chart_delay_seconds=1.0)

    await run_to_the_end(slack)
    assert timelines.calls == [] and slack_fake.files() == []

    await slack.flush()
    assert timelines.calls == ["podinfo-x7k2p.test"] and len(slack_fake.files()) == 1


async def test_closing_drops_a_chart_that_still_waits_instead_of_delaying_the_exit(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    timelines = Timelines()
    slack = notifier(client, timelines, chart_delay_seconds=30.0)
    await run_to_the_end(slack)

    began = time.monotonic()
    await slack.aclose()

    assert time.monotonic() - began < 2
    assert timelines.calls == [] and slack_fake.files() == []


async def test_no_chart_while_the_release_runs_or_without_a_timeline_source(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    timelines = Timelines()
    slack = notifier(client, timelines)
    await slack.publish(*offer(started(Phase.PROGRESSING, 10), STEPS))
    await slack.flush()
    assert slack_fake.files() == [] and timelines.calls == []

    plain = notifier(client, None)
    await run_to_the_end(plain)
    await plain.flush()
    assert slack_fake.files() == []


async def test_a_spec_refused_before_the_rollout_gets_no_chart(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    timelines = Timelines()
    slack = notifier(client, timelines)
    refused = release(Phase.FAILED, weight=0)
    refused = refused.model_copy(
        update={"status": refused.status.model_copy(update={"started_at": None})}
    )
    body = final(1)
    body.update(type="Refused", message="Refused podinfo.test: images: bad reference")
    state = await slack.publish(*offer(refused, [body]))
    await slack.flush()

    assert state.delivered_seq == 1
    assert slack_fake.files() == [] and timelines.calls == []


@pytest.mark.parametrize("method", ["files.getUploadURLExternal", "files.completeUploadExternal"])
async def test_a_failed_upload_never_fails_the_publish(
    slack_fake: SlackFake,
    client: AsyncWebClient,
    method: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack_fake.server_errors(seconds=60, status=500, method=method)
    slack = notifier(client, Timelines())

    state, _, _ = await run_to_the_end(slack)
    await slack.flush()

    assert state.delivered_seq == 3 and state.alerted
    thread = slack_fake.thread(CHANNEL, state.thread_ts)
    assert thread[-1]["text"] == CAUSE
    assert slack_fake.files() == []
    assert "rollout chart for podinfo-x7k2p.test not posted" in caplog.text


async def test_a_failing_or_hanging_timeline_source_never_holds_the_publish(
    slack_fake: SlackFake, client: AsyncWebClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    failing = notifier(client, Timelines(error=RuntimeError("boom")))
    state, _, _ = await run_to_the_end(failing)
    await failing.flush()
    assert state.delivered_seq == 3
    assert "rollout chart for podinfo-x7k2p.test not posted: RuntimeError" in caplog.text

    hanging = notifier(client, Timelines(hang=True), chart_deadline_seconds=0.5)
    began = time.monotonic()
    state, _, _ = await run_to_the_end(hanging)
    assert time.monotonic() - began < 5, "publish waited for the chart"
    assert state.delivered_seq == 3
    await eventually(
        lambda: "not posted: no answer in time" in caplog.text,
        within=5,
        message="the hanging chart was not given up",
    )
    assert slack_fake.files() == []
