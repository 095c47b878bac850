"""response_url endpoints served by the fake, with Slack's semantics and limits."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from sandbox.slack_fake import SlackFake

CHANNEL = "C0DEPLOYS"


async def test_an_ephemeral_response_is_seen_only_by_the_user(slack_fake: SlackFake) -> None:
    url = slack_fake.new_response_url(channel_id=CHANNEL, user_id="U0BOB")

    sent = await AsyncWebhookClient(url).send(text="Starting podinfo in test")

    assert sent.status_code == 200
    assert slack_fake.messages(CHANNEL) == []
    [ephemeral] = slack_fake.ephemerals(user="U0BOB")
    assert ephemeral["text"] == "Starting podinfo in test"
    assert ephemeral["via"] == "response_url"
    assert [p.ok for p in slack_fake.response_url_posts(url)] == [True]


async def test_an_in_channel_response_is_a_channel_message(slack_fake: SlackFake) -> None:
    url = slack_fake.new_response_url(channel_id=CHANNEL)

    await AsyncWebhookClient(url).send(text="podinfo is rolling out", response_type="in_channel")

    assert [m["text"] for m in slack_fake.messages(CHANNEL)] == ["podinfo is rolling out"]


async def test_replace_original_updates_the_clicked_message(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    card = await slack_client.chat_postMessage(channel=CHANNEL, text="Promote?")
    url = slack_fake.new_response_url(channel_id=CHANNEL, message_ts=card["ts"], kind="actions")

    await AsyncWebhookClient(url).send(text="Promoted by alice", replace_original=True)

    assert slack_fake.message(CHANNEL, card["ts"])["text"] == "Promoted by alice"
    assert [u["text"] for u in slack_fake.updates_of(CHANNEL, card["ts"])] == ["Promoted by alice"]


async def test_replace_original_of_a_command_replaces_its_last_ephemeral(
    slack_fake: SlackFake,
) -> None:
    url = slack_fake.new_response_url(channel_id=CHANNEL, user_id="U0ALICE")
    webhook = AsyncWebhookClient(url)

    await webhook.send(text="Working on it")
    await webhook.send(text="Done", replace_original=True)

    assert [e["text"] for e in slack_fake.ephemerals(user="U0ALICE")] == ["Done"]


async def test_delete_original_removes_the_clicked_message(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    card = await slack_client.chat_postMessage(channel=CHANNEL, text="Confirm abort?")
    url = slack_fake.new_response_url(channel_id=CHANNEL, message_ts=card["ts"], kind="actions")

    await AsyncWebhookClient(url).send_dict({"delete_original": True})

    assert slack_fake.messages(CHANNEL) == []


async def test_a_response_url_takes_five_posts_then_refuses(slack_fake: SlackFake) -> None:
    url = slack_fake.new_response_url(channel_id=CHANNEL)
    webhook = AsyncWebhookClient(url)

    statuses = [(await webhook.send(text=f"update {i}")).status_code for i in range(6)]
    seventh = await webhook.send(text="still too many")

    assert statuses == [200, 200, 200, 200, 200, 404]
    assert '"used_url"' in seventh.body
    assert len(slack_fake.ephemerals()) == 5
    posts = slack_fake.response_url_posts(url)
    assert [p.error for p in posts] == [None] * 5 + ["used_url", "used_url"]


async def test_a_response_url_expires_after_30_minutes() -> None:
    now = [1_764_140_000.0]
    with SlackFake(clock=lambda: now[0]) as fake:
        url = fake.new_response_url(channel_id=CHANNEL)
        webhook = AsyncWebhookClient(url)
        assert (await webhook.send(text="fresh")).status_code == 200

        now[0] += 30 * 60 + 1
        late = await webhook.send(text="late")

    assert late.status_code == 404
    assert '"expired_url"' in late.body


async def test_invalid_blocks_and_unknown_urls_are_refused(slack_fake: SlackFake) -> None:
    url = slack_fake.new_response_url(channel_id=CHANNEL)
    bad_blocks = await AsyncWebhookClient(url).send(blocks=[{"type": "divider"}] * 51)
    unknown = await AsyncWebhookClient(slack_fake.base_url + "/hooks/commands/T0/1/nope").send(
        text="x"
    )

    assert bad_blocks.status_code == 400
    assert '"invalid_blocks"' in bad_blocks.body
    assert unknown.status_code == 404


async def test_delete_original_of_a_command_removes_its_ephemeral(slack_fake: SlackFake) -> None:
    url = slack_fake.new_response_url(channel_id=CHANNEL, user_id="U0ALICE")
    webhook = AsyncWebhookClient(url)

    await webhook.send(text="Are you sure?")
    await webhook.send_dict({"delete_original": True})

    assert slack_fake.ephemerals(user="U0ALICE") == []
