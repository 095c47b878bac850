"""The fake's Web API, driven through slack_sdk's AsyncWebClient as the bot drives Slack."""

from __future__ import annotations

import os

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack_fake import SlackChannel, SlackFake

CHANNEL = "C0DEPLOYS"


async def test_root_message_and_threaded_reply_are_recorded_in_the_thread(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    root = await slack_client.chat_postMessage(channel=CHANNEL, text="Canary podinfo started")
    reply = await slack_client.chat_postMessage(
        channel=CHANNEL, text="Advance podinfo weight 10", thread_ts=root["ts"]
    )

    assert root["channel"] == CHANNEL
    assert root["message"]["text"] == "Canary podinfo started"
    assert reply["message"]["thread_ts"] == root["ts"]
    thread = slack_fake.thread(CHANNEL, root["ts"])
    assert [m["text"] for m in thread] == ["Canary podinfo started", "Advance podinfo weight 10"]
    assert thread[0]["reply_count"] == 1
    assert thread[0]["latest_reply"] == reply["ts"]
    # A reply is not a channel message unless broadcast.
    assert [m["ts"] for m in slack_fake.messages(CHANNEL)] == [root["ts"]]


async def test_a_broadcast_reply_shows_in_the_channel_and_the_thread(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    root = await slack_client.chat_postMessage(channel=CHANNEL, text="root")
    await slack_client.chat_postMessage(
        channel=CHANNEL, text="rolled back", thread_ts=root["ts"], reply_broadcast=True
    )

    assert [m["text"] for m in slack_fake.messages(CHANNEL)] == ["root", "rolled back"]
    assert slack_fake.messages(CHANNEL)[1]["subtype"] == "thread_broadcast"
    assert [m["text"] for m in slack_fake.thread(CHANNEL, root["ts"])] == ["root", "rolled back"]


async def test_a_reply_to_a_reply_joins_the_root_thread(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    root = await slack_client.chat_postMessage(channel=CHANNEL, text="root")
    first = await slack_client.chat_postMessage(channel=CHANNEL, text="1", thread_ts=root["ts"])
    await slack_client.chat_postMessage(channel=CHANNEL, text="2", thread_ts=first["ts"])

    assert [m["text"] for m in slack_fake.thread(CHANNEL, root["ts"])] == ["root", "1", "2"]


async def test_a_reply_to_an_unknown_thread_is_refused(slack_client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        await slack_client.chat_postMessage(channel=CHANNEL, text="x", thread_ts="1.000100")
    assert err.value.response["error"] == "thread_not_found"


async def test_chat_update_changes_the_message_in_place_and_keeps_its_history(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    card = [{"type": "section", "text": {"type": "mrkdwn", "text": "*podinfo* weight 0%"}}]
    root = await slack_client.chat_postMessage(channel=CHANNEL, text="weight 0", blocks=card)
    await slack_client.chat_postMessage(channel=CHANNEL, text="reply", thread_ts=root["ts"])

    for weight in (10, 20):
        card = [{"type": "section", "text": {"type": "mrkdwn", "text": f"weight {weight}%"}}]
        updated = await slack_client.chat_update(
            channel=CHANNEL, ts=root["ts"], text=f"weight {weight}", blocks=card
        )
        assert updated["ts"] == root["ts"]

    # Same ts, same place in the channel, new content.
    messages = slack_fake.messages(CHANNEL)
    assert [m["ts"] for m in messages] == [root["ts"]]
    assert messages[0]["text"] == "weight 20"
    assert messages[0]["blocks"][0]["text"]["text"] == "weight 20%"
    assert "edited" in messages[0]
    assert [u["text"] for u in slack_fake.updates_of(CHANNEL, root["ts"])] == [
        "weight 10",
        "weight 20",
    ]
    assert slack_fake.versions_of(CHANNEL, root["ts"])[0]["text"] == "weight 0"
    # The thread still hangs off the updated root.
    assert [m["text"] for m in slack_fake.thread(CHANNEL, root["ts"])] == ["weight 20", "reply"]


async def test_chat_update_keeps_blocks_it_was_not_given(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    blocks = [{"type": "divider", "block_id": "d1"}]
    root = await slack_client.chat_postMessage(channel=CHANNEL, text="a", blocks=blocks)
    await slack_client.chat_update(channel=CHANNEL, ts=root["ts"], text="b")

    assert slack_fake.message(CHANNEL, root["ts"])["blocks"] == blocks


async def test_updating_what_cannot_be_updated_fails_like_slack(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    human_ts = slack_fake.post_user_message(CHANNEL, "U0BOB", "lgtm")

    with pytest.raises(SlackApiError) as unknown:
        await slack_client.chat_update(channel=CHANNEL, ts="1700000000.000100", text="x")
    with pytest.raises(SlackApiError) as not_ours:
        await slack_client.chat_update(channel=CHANNEL, ts=human_ts, text="x")
    ephemeral = await slack_client.chat_postEphemeral(channel=CHANNEL, user="U0BOB", text="psst")
    with pytest.raises(SlackApiError) as ephemeral_update:
        await slack_client.chat_update(channel=CHANNEL, ts=ephemeral["message_ts"], text="x")

    assert unknown.value.response["error"] == "message_not_found"
    assert not_ours.value.response["error"] == "cant_update_message"
    assert ephemeral_update.value.response["error"] == "message_not_found"


async def test_ts_values_are_unique_and_increasing(slack_client: AsyncWebClient) -> None:
    stamps = [
        (await slack_client.chat_postMessage(channel=CHANNEL, text=str(i)))["ts"] for i in range(20)
    ]

    assert len(set(stamps)) == len(stamps)
    assert [float(ts) for ts in stamps] == sorted(float(ts) for ts in stamps)
    seconds, micros = stamps[0].split(".")
    assert len(seconds) == 10 and len(micros) == 6


@pytest.mark.parametrize(
    ("channel", "error"),
    [
        ("C0NOPE", "channel_not_found"),
        ("C0NOBOT", "not_in_channel"),
        ("C0ARCHIVED", "is_archived"),
    ],
)
async def test_posting_where_the_bot_cannot_post_fails_like_slack(
    slack_client: AsyncWebClient, slack_fake: SlackFake, channel: str, error: str
) -> None:
    with pytest.raises(SlackApiError) as err:
        await slack_client.chat_postMessage(channel=channel, text="hello")

    assert err.value.response.status_code == 200
    assert err.value.response["error"] == error
    assert slack_fake.calls("chat.postMessage")[-1].error == error


async def test_a_channel_name_resolves_to_its_id(slack_client: AsyncWebClient) -> None:
    posted = await slack_client.chat_postMessage(channel="#alerts", text="hello")

    assert posted["channel"] == "C0ALERTS"


async def test_text_limits(slack_client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as too_long:
        await slack_client.chat_postMessage(channel=CHANNEL, text="x" * 40_001)
    with pytest.raises(SlackApiError) as empty:
        await slack_client.chat_postMessage(channel=CHANNEL, text="")

    assert too_long.value.response["error"] == "msg_too_long"
    assert empty.value.response["error"] == "no_text"


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("xoxb-not-the-right-token", "invalid_auth"),
        (None, "not_authed"),
    ],
)
async def test_a_bad_or_missing_token_is_refused(
    slack_fake: SlackFake, token: str | None, error: str
) -> None:
    client = AsyncWebClient(token=token, base_url=slack_fake.api_url)

    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="hello")

    assert err.value.response.status_code == 200
    assert err.value.response["error"] == error
    assert slack_fake.messages(CHANNEL) == []


async def test_the_app_level_token_cannot_post(slack_fake: SlackFake) -> None:
    client = AsyncWebClient(token=slack_fake.app_token, base_url=slack_fake.api_url)

    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="hello")

    assert err.value.response["error"] == "not_allowed_token_type"


async def test_tokens_never_reach_the_records(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    await slack_client.chat_postMessage(channel=CHANNEL, text="hello")
    async with aiohttp.ClientSession() as http:
        await http.post(slack_fake.api_url + "auth.test", data={"token": slack_fake.bot_token})

    recorded = repr(slack_fake.calls())
    assert slack_fake.bot_token not in recorded
    assert [c.token_type for c in slack_fake.calls()] == ["bot", "bot"]


async def test_form_encoded_and_json_bodies_are_both_accepted(slack_fake: SlackFake) -> None:
    bearer = {"Authorization": f"Bearer {slack_fake.bot_token}"}
    async with aiohttp.ClientSession() as http:
        form = await http.post(
            slack_fake.api_url + "chat.postMessage",
            data={"token": slack_fake.bot_token, "channel": CHANNEL, "text": "from a form"},
        )
        as_json = await http.post(
            slack_fake.api_url + "chat.postMessage",
            json={"channel": CHANNEL, "text": "from JSON"},
            headers=bearer,
        )
        # Slack reads the token of a JSON body only from the Authorization header.
        token_in_json = await http.post(
            slack_fake.api_url + "chat.postMessage",
            json={"token": slack_fake.bot_token, "channel": CHANNEL, "text": "x"},
        )
        form_blocks = await http.post(
            slack_fake.api_url + "chat.postMessage",
            data={
                "channel": CHANNEL,
                "blocks": '[{"type": "divider"}]',
                "text": "blocks as a JSON string",
            },
            headers=bearer,
        )
        results = [await r.json() for r in (form, as_json, token_in_json, form_blocks)]

    assert [r["ok"] for r in results] == [True, True, False, True]
    assert results[2]["error"] == "not_authed"
    texts = [m["text"] for m in slack_fake.messages(CHANNEL)]
    assert texts == ["from a form", "from JSON", "blocks as a JSON string"]
    assert slack_fake.messages(CHANNEL)[2]["blocks"][0]["type"] == "divider"


async def test_post_ephemeral_is_recorded_for_its_user(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    sent = await slack_client.chat_postEphemeral(
        channel=CHANNEL, user="U0MALLORY", text="You may not abort podinfo in test"
    )

    assert sent["message_ts"]
    assert slack_fake.ephemerals(user="U0MALLORY") == [
        {
            "channel": CHANNEL,
            "user": "U0MALLORY",
            "message_ts": sent["message_ts"],
            "thread_ts": None,
            "via": "chat.postEphemeral",
            "text": "You may not abort podinfo in test",
        }
    ]
    assert slack_fake.messages(CHANNEL) == []


async def test_post_ephemeral_to_someone_outside_the_channel_fails(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    slack_fake.add_channel(SlackChannel("C0SMALL", "small", members=frozenset({"U0ALICE"})))

    with pytest.raises(SlackApiError) as err:
        await slack_client.chat_postEphemeral(channel="C0SMALL", user="U0BOB", text="x")

    assert err.value.response["error"] == "user_not_in_channel"


async def test_permalinks_for_a_root_and_a_reply(slack_client: AsyncWebClient) -> None:
    root = await slack_client.chat_postMessage(channel=CHANNEL, text="root")
    reply = await slack_client.chat_postMessage(channel=CHANNEL, text="r", thread_ts=root["ts"])

    root_link = await slack_client.chat_getPermalink(channel=CHANNEL, message_ts=root["ts"])
    reply_link = await slack_client.chat_getPermalink(channel=CHANNEL, message_ts=reply["ts"])

    digits = root["ts"].replace(".", "")
    assert root_link["permalink"] == f"https://canary-test.slack.com/archives/{CHANNEL}/p{digits}"
    assert reply_link["permalink"].endswith(f"?thread_ts={root['ts']}&cid={CHANNEL}")
    with pytest.raises(SlackApiError) as err:
        await slack_client.chat_getPermalink(channel=CHANNEL, message_ts="1.000001")
    assert err.value.response["error"] == "message_not_found"


async def test_chat_delete_removes_the_message(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    posted = await slack_client.chat_postMessage(channel=CHANNEL, text="oops")
    await slack_client.chat_delete(channel=CHANNEL, ts=posted["ts"])

    assert slack_fake.messages(CHANNEL) == []


async def test_directory_methods(slack_client: AsyncWebClient) -> None:
    user = await slack_client.users_info(user="U0ALICE")
    groups = await slack_client.usergroups_list(include_users=True)
    with_disabled = await slack_client.usergroups_list(include_disabled=True)
    members = await slack_client.usergroups_users_list(usergroup="S0DEVS")
    channel = await slack_client.conversations_info(channel="C0PRIVATE")

    assert user["user"]["name"] == "alice"
    assert user["user"]["is_admin"] is True
    assert user["user"]["profile"]["email"] == "alice@example.com"
    assert {g["handle"]: g["users"] for g in groups["usergroups"]} == {
        "sre": ["U0ALICE"],
        "devs": ["U0BOB", "U0CAROL"],
    }
    assert "old-oncall" in {g["handle"] for g in with_disabled["usergroups"]}
    assert members["users"] == ["U0BOB", "U0CAROL"]
    assert channel["channel"]["is_private"] is True
    assert channel["channel"]["name"] == "sre-private"
    for call, error in [
        (slack_client.users_info(user="U0NOBODY"), "user_not_found"),
        (slack_client.usergroups_users_list(usergroup="S0NONE"), "no_such_subteam"),
        (slack_client.conversations_info(channel="C0NONE"), "channel_not_found"),
    ]:
        with pytest.raises(SlackApiError) as err:
            await call
        assert err.value.response["error"] == error


async def test_every_call_is_recorded_with_its_outcome(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    await slack_client.auth_test()
    with pytest.raises(SlackApiError):
        await slack_client.chat_postMessage(channel="C0NOPE", text="x")

    calls = slack_fake.calls()
    assert [(c.method, c.ok, c.error) for c in calls] == [
        ("auth.test", True, None),
        ("chat.postMessage", False, "channel_not_found"),
    ]
    assert calls[1].params == {"channel": "C0NOPE", "text": "x"}
    assert calls[0].at <= calls[1].at


async def test_reset_forgets_everything(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    await slack_client.chat_postMessage(channel=CHANNEL, text="x")
    slack_fake.rate_limit(calls=5)

    slack_fake.reset()

    assert slack_fake.calls() == []
    assert slack_fake.messages(CHANNEL) == []
    await slack_client.auth_test()  # no 429 left over


async def test_a_stopped_fake_can_start_again() -> None:
    fake = SlackFake().start()
    fake.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.api_url

    fake.start()
    try:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        assert (await client.auth_test())["ok"] is True
    finally:
        fake.stop()


async def test_a_token_in_the_query_string_is_not_logged(
    slack_fake: SlackFake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    async with aiohttp.ClientSession() as http:
        response = await http.get(
            slack_fake.api_url + "users.info",
            params={"token": slack_fake.bot_token, "user": "U0BOB"},
        )
        assert (await response.json())["ok"] is True

    assert slack_fake.bot_token not in caplog.text


async def test_slack_env_points_settings_at_the_fake(
    slack_env: dict[str, str], slack_fake: SlackFake
) -> None:
    client = AsyncWebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]
    )

    assert (await client.auth_test())["user_id"] == slack_fake.bot_user_id
    assert os.environ["SLACK_APP_TOKEN"].startswith("xapp-")
    assert os.environ["SLACK_SIGNING_SECRET"] == slack_env["SLACK_SIGNING_SECRET"]
