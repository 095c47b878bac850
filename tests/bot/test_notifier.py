"""SlackNotifier against the Slack fake: one root card updated in place, replies in its
thread, one alert on failure, 429s honoured, outages re-offered without duplicates."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Channels
from bot.metrics import BotMetrics
from bot.notifier import SlackNotifier, SlackUnavailable
from bot.slack_client import make_client
from rollout.models import CanaryRelease, NotificationState, Phase, RolloutEvent
from sandbox.slack_fake import SlackFake
from tests.bot.factories import NOW, event, release
from tests.fixtures.slack import eventually

CHANNEL = "C0DEPLOYS"


@pytest.fixture
def client(slack_fake: SlackFake) -> AsyncWebClient:
    return make_client(slack_fake.bot_token, slack_fake.api_url, rate_limit_retries=2)


def notifier(client: AsyncWebClient, **kwargs: Any) -> SlackNotifier:
    return SlackNotifier(
        client,
        Channels(default=CHANNEL),
        metrics=BotMetrics(CollectorRegistry()),
        clock=lambda: NOW,
        posts_per_second=100,
        **kwargs,
    )


def with_events(
    base: CanaryRelease, events: list[dict[str, Any]], state: NotificationState | None = None
) -> tuple[CanaryRelease, list[RolloutEvent]]:
    parsed = [RolloutEvent.model_validate(e) for e in events]
    status = base.status.model_copy(
        update={
            "events": parsed,
            "notification": state or base.status.notification,
            "event_seq": parsed[-1].seq if parsed else base.status.event_seq,
        }
    )
    delivered = (state or base.status.notification).delivered_seq
    return base.model_copy(update={"status": status}), [e for e in parsed if e.seq > delivered]


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m.get("text", "") for m in messages]


async def test_one_root_card_updated_in_place_and_replies_in_its_thread(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    slack = notifier(client)
    first, events = with_events(
        release(Phase.PROGRESSING, weight=5),
        [
            event(1, "Started", "new revision detected, starting analysis", weight=0),
            event(2, "StepAdvanced", "advance canary weight 5", weight=5),
        ],
    )
    state = await slack.publish(first, events)
    assert state.channel == CHANNEL and state.thread_ts and state.delivered_seq == 2

    second, events = with_events(
        release(Phase.PROGRESSING, weight=10),
        [
            event(1, "Started", "new revision detected, starting analysis", weight=0),
            event(2, "StepAdvanced", "advance canary weight 5", weight=5),
            event(3, "StepAdvanced", "advance canary weight 10", weight=10),
        ],
        state,
    )
    state = await slack.publish(second, events)
    await slack.flush()

    top_level = slack_fake.messages(CHANNEL)
    assert len(top_level) == 1, texts(top_level)
    thread = slack_fake.thread(CHANNEL, state.thread_ts)
    assert texts(thread[1:]) == [
        "new revision detected, starting analysis",
        "advance canary weight 5",
        "advance canary weight 10",
    ]
    assert thread[0]["text"] == "Canary podinfo-x7k2p.test: Progressing at 10%"
    assert slack_fake.updates_of(CHANNEL, state.thread_ts), "the card was never updated"
    assert state.delivered_seq == 3


async def test_card_refreshes_are_coalesced(slack_fake: SlackFake, client: AsyncWebClient) -> None:
    slack = notifier(client)
    base, events = with_events(release(weight=5), [event(1)])
    state = await slack.publish(base, events)
    for weight in range(6, 30):
        await slack.publish(
            release(weight=weight, notification=state.model_dump(by_alias=True)), []
        )
    await slack.flush()
    updates = slack_fake.updates_of(CHANNEL, state.thread_ts)
    assert updates[-1]["text"] == "Canary podinfo-x7k2p.test: Progressing at 29%"
    assert len(updates) < 24, "every refresh was sent instead of the latest"


async def test_failure_posts_one_alert_that_links_the_thread(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    slack = notifier(client)
    failure = event(
        5,
        "RolledBack",
        "rolled back: request-success-rate 48.1 below 99 for 10 checks",
        severity="error",
        details={"request-success-rate": "48.1"},
    )
    failed, events = with_events(release(Phase.FAILED, weight=0), [event(4), failure])
    state = await slack.publish(failed, events)
    assert state.alerted
    top_level = slack_fake.messages(CHANNEL)
    assert len(top_level) == 2
    alert = top_level[1]
    assert "<@U0ALICE>" in alert["text"] and "48.1" in alert["text"]
    assert "/archives/" in str(alert["blocks"]), "the alert does not link the thread"
    # offered again (engine could not store the state): no second alert, no second reply
    again, events = with_events(release(Phase.FAILED, weight=0), [event(4), failure])
    await slack.publish(again, events)
    assert len(slack_fake.messages(CHANNEL)) == 2
    assert len(slack_fake.thread(CHANNEL, state.thread_ts)) == 3


async def test_a_failure_of_muted_hooks_is_told_in_the_thread_without_an_alert(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    slack = notifier(client)
    failure = {
        **event(
            5,
            "RolledBack",
            "Rolling back podinfo.test failed checks threshold reached 2",
            severity="error",
            details={"cause": "rollout check smoke failed: HTTP 500"},
        ),
        "muteAlert": True,
    }
    failed, events = with_events(release(Phase.FAILED, weight=0), [event(4), failure])
    state = await slack.publish(failed, events)
    await slack.flush()
    assert not state.alerted
    assert len(slack_fake.messages(CHANNEL)) == 1, "a muted failure posted a channel alert"
    replies = texts(slack_fake.thread(CHANNEL, state.thread_ts)[1:])
    assert any("failed checks threshold reached 2" in text for text in replies), replies


async def test_what_is_kept_for_a_release_goes_once_its_end_is_delivered_and_stored(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    slack = notifier(client)
    ending = [event(1), event(2, "Promoted", "Promotion completed!", weight=0)]
    running, events = with_events(release(Phase.PROGRESSING, weight=10), ending[:1])
    state = await slack.publish(running, events)
    ended, events = with_events(release(Phase.SUCCEEDED, weight=0), ending, state)
    state = await slack.publish(ended, events)
    await slack.flush()
    assert slack._progress and slack._last_reply  # the engine has not stored it yet

    # the engine stored the delivery; the next offer carries it
    stored, events = with_events(release(Phase.SUCCEEDED, weight=0), ending, state)
    assert not events
    assert await slack.publish(stored, events) == state
    await slack.flush()
    assert not slack._progress and not slack._last_reply and not slack._cards
    assert not slack._charted
    assert list(slack._ended.values()) == [state]
    # offered once more, and as read before the end was stored: nothing is posted twice
    before = len(slack_fake.thread(CHANNEL, state.thread_ts))
    await slack.publish(stored, [])
    stale, events = with_events(
        release(Phase.SUCCEEDED, weight=0), ending, state.model_copy(update={"delivered_seq": 1})
    )
    await slack.publish(stale, events)
    await slack.flush()
    assert len(slack_fake.thread(CHANNEL, state.thread_ts)) == before
    assert not slack._progress


async def test_only_the_last_ended_releases_are_remembered(client: AsyncWebClient) -> None:
    slack = notifier(client, remember_ended=2)
    for n in range(4):
        ending = [event(1, "Promoted", "Promotion completed!", weight=0)]
        ended, events = with_events(release(Phase.SUCCEEDED, weight=0, uid=f"u{n}"), ending)
        state = await slack.publish(ended, events)
        stored, events = with_events(release(Phase.SUCCEEDED, weight=0, uid=f"u{n}"), ending, state)
        await slack.publish(stored, events)
    await slack.flush()
    assert list(slack._ended) == ["u2", "u3"] and not slack._progress


async def test_rate_limits_are_waited_out(slack_fake: SlackFake, client: AsyncWebClient) -> None:
    slack = notifier(client)
    slack_fake.rate_limit(calls=1, retry_after=1, method="chat.postMessage")
    base, events = with_events(release(), [event(1)])
    state = await slack.publish(base, events)
    posts = slack_fake.calls("chat.postMessage")
    assert [c.status for c in posts][:2] == [429, 200]
    assert len(slack_fake.messages(CHANNEL)) == 1
    assert state.delivered_seq == 1


async def test_an_outage_raises_and_the_same_events_are_delivered_once_later(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    slack = notifier(client)
    base, events = with_events(release(), [event(1)])
    state = await slack.publish(base, events)
    slack_fake.server_errors(seconds=60, status=503)
    later, events = with_events(
        release(), [event(1), event(2, message="advance canary weight 15")], state
    )
    with pytest.raises(SlackUnavailable):
        await slack.publish(later, events)
    slack_fake.clear_faults()
    state = await slack.publish(later, events)
    assert state.delivered_seq == 2
    assert texts(slack_fake.thread(CHANNEL, state.thread_ts)[1:]) == [
        "advance canary weight 10",
        "advance canary weight 15",
    ]


async def test_a_slow_slack_never_holds_the_engine(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    slack = notifier(client, deadline_seconds=0.5)
    slack_fake.rate_limit(seconds=60, retry_after=30)
    base, events = with_events(release(), [event(1)])
    with pytest.raises(SlackUnavailable, match="no answer in time"):
        await slack.publish(base, events)


async def test_a_new_leader_continues_the_stored_thread(
    slack_fake: SlackFake, client: AsyncWebClient
) -> None:
    base, events = with_events(release(), [event(1)])
    state = await notifier(client).publish(base, events)
    later, events = with_events(
        release(), [event(1), event(2, message="advance canary weight 15")], state
    )
    state2 = await notifier(client).publish(later, events)
    assert state2.thread_ts == state.thread_ts
    assert len(slack_fake.messages(CHANNEL)) == 1
    assert texts(slack_fake.thread(CHANNEL, state.thread_ts)[1:]) == [
        "advance canary weight 10",
        "advance canary weight 15",
    ]


async def test_routes_by_namespace(slack_fake: SlackFake, client: AsyncWebClient) -> None:
    from bot.config import ChannelRoute

    slack = SlackNotifier(
        client,
        Channels(default=CHANNEL, routes=[ChannelRoute(namespaces=["te*"], channel="C0ALERTS")]),
        clock=lambda: NOW,
    )
    base, events = with_events(release(), [event(1)])
    state = await slack.publish(base, events)
    assert state.channel == "C0ALERTS"
    await eventually(lambda: len(slack_fake.messages("C0ALERTS")) == 1)
    assert slack_fake.messages(CHANNEL) == []
