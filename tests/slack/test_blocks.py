"""Block Kit limits: the fake refuses what Slack refuses, with Slack's error shape."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack_fake import SlackFake, validate_blocks

CHANNEL = "C0DEPLOYS"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(i: int) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": f"a{i}",
        "text": {"type": "plain_text", "text": f"B{i}"},
    }


async def post_blocks(client: AsyncWebClient, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        response = await client.chat_postMessage(channel=CHANNEL, text="fallback", blocks=blocks)
    except SlackApiError as err:
        return dict(err.response.data)
    return dict(response.data)  # type: ignore[arg-type]


async def test_more_than_50_blocks_are_refused_like_slack(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    refused = await post_blocks(slack_client, [{"type": "divider"}] * 51)
    accepted = await post_blocks(slack_client, [{"type": "divider"}] * 50)

    assert refused["ok"] is False
    assert refused["error"] == "invalid_blocks"
    assert refused["errors"] == ["no more than 50 items allowed [json-pointer:/blocks]"]
    assert refused["response_metadata"]["messages"] == [
        "[ERROR] no more than 50 items allowed [json-pointer:/blocks]"
    ]
    assert accepted["ok"] is True
    assert len(slack_fake.messages(CHANNEL)) == 1


async def test_section_text_over_3000_characters_is_refused(slack_client: AsyncWebClient) -> None:
    refused = await post_blocks(slack_client, [section("x" * 3001)])
    accepted = await post_blocks(slack_client, [section("x" * 3000)])

    assert refused["error"] == "invalid_blocks"
    assert refused["errors"] == [
        "failed to match all allowed schemas [json-pointer:/blocks/0/text]",
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
    ]
    assert accepted["ok"] is True


async def test_chat_update_checks_blocks_too(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    root = await slack_client.chat_postMessage(channel=CHANNEL, text="card")

    with pytest.raises(SlackApiError) as err:
        await slack_client.chat_update(channel=CHANNEL, ts=root["ts"], blocks=[section("")])

    assert err.value.response["error"] == "invalid_blocks"
    assert slack_fake.updates_of(CHANNEL, root["ts"]) == []


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
        ),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
            "must be less than 2001 characters [json-pointer:/blocks/0/fields/0/text]",
        ),
        (
            [{"type": "actions", "elements": [button(i) for i in range(26)]}],
            "no more than 25 items allowed [json-pointer:/blocks/0/elements]",
        ),
        (
            [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/elements]",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}],
            "must be one of: plain_text [json-pointer:/blocks/0/text/type]",
        ),
        (
            [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}],
            "must be more than 0 characters [json-pointer:/blocks/0/text/text]",
        ),
        ([{"type": "section"}], "must provide either text or fields [json-pointer:/blocks/0]"),
        ([{"type": "carousel"}], "unsupported type: carousel [json-pointer:/blocks/0/type]"),
        (
            [{"type": "divider", "block_id": "x"}, {"type": "divider", "block_id": "x"}],
            "duplicate block_id: x [json-pointer:/blocks/1/block_id]",
        ),
        (
            [{"type": "actions", "elements": [button(1), button(1)]}],
            "duplicate action_id: a1 [json-pointer:/blocks/0/elements/1/action_id]",
        ),
        (
            [{"type": "actions", "elements": [{**button(1), "value": "v" * 2001}]}],
            "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
        ),
        (
            [{"type": "actions", "elements": [{**button(1), "style": "loud"}]}],
            "must be one of: primary, danger [json-pointer:/blocks/0/elements/0/style]",
        ),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            **button(1),
                            "confirm": {
                                "title": {"type": "plain_text", "text": "t" * 101},
                                "text": {"type": "mrkdwn", "text": "Abort?"},
                                "confirm": {"type": "plain_text", "text": "Abort"},
                                "deny": {"type": "plain_text", "text": "Cancel"},
                            },
                        }
                    ],
                }
            ],
            "must be less than 101 characters "
            "[json-pointer:/blocks/0/elements/0/confirm/title/text]",
        ),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            **button(1),
                            "confirm": {
                                "title": {"type": "plain_text", "text": "Abort?"},
                                "text": {"type": "mrkdwn", "text": "Really?"},
                                "confirm": {"type": "plain_text", "text": "Abort"},
                            },
                        }
                    ],
                }
            ],
            "missing required field: deny [json-pointer:/blocks/0/elements/0/confirm]",
        ),
    ],
)
def test_block_kit_limits(blocks: list[dict[str, Any]], expected: str) -> None:
    assert expected in validate_blocks(blocks)


def test_a_status_card_built_with_slack_sdk_models_is_valid() -> None:
    card = [
        HeaderBlock(text="podinfo in test: Progressing"),
        SectionBlock(
            text=MarkdownTextObject(text="*weight* 20% of 50%"),
            fields=[MarkdownTextObject(text=f"*metric {i}*\n99.9%") for i in range(10)],
        ),
        DividerBlock(),
        ContextBlock(elements=[MarkdownTextObject(text="cluster prod-eu")]),
        ActionsBlock(
            elements=[
                ButtonElement(text="Promote", action_id="promote", value="test/podinfo"),
                ButtonElement(
                    text="Abort",
                    action_id="abort",
                    value="test/podinfo",
                    style="danger",
                    confirm=ConfirmObject(
                        title="Abort podinfo?", text="Traffic goes back to stable."
                    ),
                ),
            ]
        ),
    ]

    assert validate_blocks([b.to_dict() for b in card]) == []


async def test_attachments_and_blocks_must_be_json_arrays(slack_fake: SlackFake) -> None:
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            slack_fake.api_url + "chat.postMessage",
            data={"channel": CHANNEL, "text": "x", "blocks": "not json"},
            headers={"Authorization": f"Bearer {slack_fake.bot_token}"},
        )
        body = await response.json()

    assert body == {"ok": False, "error": "invalid_blocks_format"}
