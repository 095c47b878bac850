"""Rate limits and server errors, and slack_sdk's retry handlers against them."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack_fake import SlackFake

CHANNEL = "C0DEPLOYS"


async def test_a_429_with_retry_after_is_honoured_by_the_retry_handler(
    slack_fake: SlackFake,
) -> None:
    client = AsyncWebClient(
        token=slack_fake.bot_token,
        base_url=slack_fake.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    slack_fake.rate_limit(calls=1, retry_after=1, method="chat.postMessage")

    posted = await client.chat_postMessage(channel=CHANNEL, text="after the limit")

    assert posted["ok"] is True
    attempts = slack_fake.calls("chat.postMessage")
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[0].error == "ratelimited"
    # The handler waits Retry-After seconds (plus jitter) before trying again.
    assert attempts[1].at - attempts[0].at >= 1.0
    assert [m["text"] for m in slack_fake.messages(CHANNEL)] == ["after the limit"]


async def test_without_a_retry_handler_the_429_reaches_the_caller(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    slack_fake.rate_limit(calls=1, retry_after=7)

    with pytest.raises(SlackApiError) as err:
        await slack_client.chat_update(channel=CHANNEL, ts="1.000100", text="x")

    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    assert err.value.response["error"] == "ratelimited"


async def test_a_rate_limit_for_one_method_spares_the_others(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    slack_fake.rate_limit(calls=3, method="chat.update")

    root = await slack_client.chat_postMessage(channel=CHANNEL, text="card")
    outcomes = []
    for _ in range(4):
        try:
            await slack_client.chat_update(channel=CHANNEL, ts=root["ts"], text="new")
            outcomes.append(200)
        except SlackApiError as err:
            outcomes.append(err.response.status_code)

    assert outcomes == [429, 429, 429, 200]


async def test_a_rate_limit_window_covers_every_call_inside_it(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    slack_fake.rate_limit(seconds=60)

    for _ in range(3):
        with pytest.raises(SlackApiError) as err:
            await slack_client.auth_test()
        assert err.value.response.status_code == 429
    slack_fake.clear_faults()
    assert (await slack_client.auth_test())["ok"] is True


async def test_server_errors_for_a_window_then_recovery() -> None:
    now = [1_764_140_000.0]
    fake = SlackFake(clock=lambda: now[0]).start()
    try:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        fake.server_errors(seconds=30, status=503)

        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel=CHANNEL, text="x")
        assert err.value.response.status_code == 503

        now[0] += 31
        assert (await client.chat_postMessage(channel=CHANNEL, text="x"))["ok"] is True
        assert [c.status for c in fake.calls()] == [503, 200]
    finally:
        fake.stop()


async def test_server_errors_are_retried_by_the_server_error_handler(
    slack_fake: SlackFake,
) -> None:
    client = AsyncWebClient(
        token=slack_fake.bot_token,
        base_url=slack_fake.api_url,
        retry_handlers=[AsyncServerErrorRetryHandler(max_retry_count=2)],
    )
    slack_fake.server_errors(calls=1)

    posted = await client.chat_postMessage(channel=CHANNEL, text="eventually")

    assert posted["ok"] is True
    assert [c.status for c in slack_fake.calls()] == [500, 200]


async def test_enforced_rate_limits_follow_slacks_per_channel_posting_rate() -> None:
    now = [1_764_140_000.0]
    with SlackFake(clock=lambda: now[0]) as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        fake.enforce_rate_limits(posts_per_second=1.0, post_burst=3)

        outcomes = []
        for i in range(5):
            try:
                await client.chat_postMessage(channel=CHANNEL, text=str(i))
                outcomes.append("ok")
            except SlackApiError as err:
                outcomes.append(err.response.headers["Retry-After"])
        other_channel = await client.chat_postMessage(channel="C0ALERTS", text="elsewhere")
        now[0] += 1.0
        after_a_second = await client.chat_postMessage(channel=CHANNEL, text="later")

    assert outcomes == ["ok", "ok", "ok", "1", "1"]
    assert other_channel["ok"] and after_a_second["ok"]
    assert [m["text"] for m in fake.messages(CHANNEL)] == ["0", "1", "2", "later"]


async def test_enforced_rate_limits_cap_chat_update_per_minute() -> None:
    now = [1_764_140_000.0]
    with SlackFake(clock=lambda: now[0]) as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        root = await client.chat_postMessage(channel=CHANNEL, text="card")
        fake.enforce_rate_limits(updates_per_minute=50)

        for i in range(50):
            await client.chat_update(channel=CHANNEL, ts=root["ts"], text=f"v{i}")
        with pytest.raises(SlackApiError) as err:
            await client.chat_update(channel=CHANNEL, ts=root["ts"], text="one too many")

    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "2"  # 60 s / 50 = 1.2 s, rounded up
    assert len(fake.updates_of(CHANNEL, root["ts"])) == 50
