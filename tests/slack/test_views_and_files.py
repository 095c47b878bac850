"""Modals (views.open/update with trigger ids) and the files_upload_v2 flow."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack_fake import SlackFake

CHANNEL = "C0DEPLOYS"


def modal(title: str = "Abort podinfo?", **extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "confirm_abort",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Abort"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Why?"},
                "element": {"type": "plain_text_input", "action_id": "text"},
            }
        ],
        **extra,
    }


async def test_views_open_with_a_fresh_trigger_opens_the_modal(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    opened = await slack_client.views_open(trigger_id=slack_fake.new_trigger_id(), view=modal())

    assert opened["view"]["id"].startswith("V")
    assert opened["view"]["callback_id"] == "confirm_abort"
    assert [v["title"]["text"] for v in slack_fake.views()] == ["Abort podinfo?"]


async def test_a_trigger_id_works_once(slack_fake: SlackFake, slack_client: AsyncWebClient) -> None:
    trigger = slack_fake.new_trigger_id()
    await slack_client.views_open(trigger_id=trigger, view=modal())

    with pytest.raises(SlackApiError) as err:
        await slack_client.views_open(trigger_id=trigger, view=modal())

    assert err.value.response["error"] == "exchanged_trigger_id"


async def test_a_trigger_id_expires_after_three_seconds() -> None:
    now = [1_764_140_000.0]
    with SlackFake(clock=lambda: now[0]) as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        trigger = fake.new_trigger_id()
        now[0] += 3.5

        with pytest.raises(SlackApiError) as err:
            await client.views_open(trigger_id=trigger, view=modal())

    assert err.value.response["error"] == "expired_trigger_id"


async def test_views_open_needs_a_valid_trigger_id(slack_client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as malformed:
        await slack_client.views_open(trigger_id="not-a-trigger", view=modal())

    assert malformed.value.response["error"] == "invalid_trigger_id"


async def test_an_invalid_view_is_refused_with_slacks_messages(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as err:
        await slack_client.views_open(
            trigger_id=slack_fake.new_trigger_id(), view=modal(title="A title that is far too long")
        )

    assert err.value.response["error"] == "invalid_arguments"
    assert err.value.response["response_metadata"]["messages"] == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/view]",
        "[ERROR] failed to match all allowed schemas [json-pointer:/view/title]",
        "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]",
    ]
    assert slack_fake.views() == []


async def test_views_update_by_id_and_hash(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    opened = await slack_client.views_open(trigger_id=slack_fake.new_trigger_id(), view=modal())
    view_id, first_hash = opened["view"]["id"], opened["view"]["hash"]

    updated = await slack_client.views_update(
        view_id=view_id, hash=first_hash, view=modal(title="Aborting...")
    )
    with pytest.raises(SlackApiError) as stale:
        await slack_client.views_update(view_id=view_id, hash=first_hash, view=modal())
    with pytest.raises(SlackApiError) as missing:
        await slack_client.views_update(view_id="V0NOPE", view=modal())

    assert updated["view"]["id"] == view_id
    assert slack_fake.views()[0]["title"]["text"] == "Aborting..."
    assert stale.value.response["error"] == "hash_conflict"
    assert missing.value.response["error"] == "not_found"


async def test_files_upload_v2_shares_the_file_in_the_thread(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    root = await slack_client.chat_postMessage(channel=CHANNEL, text="podinfo rolled back")

    uploaded = await slack_client.files_upload_v2(
        channel=CHANNEL,
        thread_ts=root["ts"],
        filename="analysis.txt",
        title="Analysis of podinfo",
        content="request-success-rate 87.5% < 99%",
        initial_comment="Measured values",
    )

    [stored] = slack_fake.files()
    assert uploaded["file"]["id"] == stored.id
    assert stored.content == b"request-success-rate 87.5% < 99%"
    assert (stored.filename, stored.title, stored.channel) == (
        "analysis.txt",
        "Analysis of podinfo",
        CHANNEL,
    )
    reply = slack_fake.thread(CHANNEL, root["ts"])[1]
    assert reply["text"] == "Measured values"
    assert reply["files"][0]["id"] == stored.id
    methods = [c.method for c in slack_fake.calls()]
    assert methods == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]


async def test_completing_an_upload_that_never_happened_fails(
    slack_client: AsyncWebClient,
) -> None:
    url = await slack_client.files_getUploadURLExternal(filename="a.txt", length=3)

    with pytest.raises(SlackApiError) as err:
        await slack_client.files_completeUploadExternal(
            files=[{"id": url["file_id"], "title": "a"}], channel_id=CHANNEL
        )

    assert err.value.response["error"] == "file_not_found"
