"""A real Bolt AsyncApp in HTTP mode, served by aiohttp, fed signed requests, talking to the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack_fake import SlackFake
from tests.fixtures.slack import SlackRequests, eventually, send_to_app

CHANNEL = "C0DEPLOYS"


def build_app(fake: SlackFake, signing_secret: str) -> AsyncApp:
    app = AsyncApp(
        client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url),
        signing_secret=signing_secret,
    )

    @app.command("/canary")
    async def canary(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        verb, _, target = command["text"].partition(" ")
        if verb == "abort":
            await ack()
            await client.views_open(
                trigger_id=command["trigger_id"],
                view={
                    "type": "modal",
                    "callback_id": "confirm_abort",
                    "private_metadata": target,
                    "title": {"type": "plain_text", "text": "Abort?"},
                    "submit": {"type": "plain_text", "text": "Abort"},
                    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": target}}],
                },
            )
            return
        await ack(f"Starting {target}")
        await respond(text=f"Working on {target}")
        await client.chat_postMessage(
            channel=command["channel_id"], text=f"Canary {target} started"
        )

    @app.action("abort")
    async def abort(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await respond(text=f"Aborted by <@{body['user']['id']}>", replace_original=True)

    @app.view("confirm_abort")
    async def confirm_abort(ack: AsyncAck, view: dict[str, Any]) -> None:
        reason = view["state"]["values"].get("reason", {}).get("text", {}).get("value")
        if not reason:
            await ack(response_action="errors", errors={"reason": "Say why you abort"})
            return
        await ack()

    return app


@pytest.fixture
async def bolt_url(slack_fake: SlackFake, signing_secret: str) -> AsyncIterator[str]:
    server = TestServer(build_app(slack_fake, signing_secret).web_app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/slack/events"))
    finally:
        await server.close()


async def test_a_signed_slash_command_is_acked_and_handled(
    bolt_url: str, slack_fake: SlackFake, slack_requests: SlackRequests
) -> None:
    request = slack_requests.slash_command(text="start podinfo", user_id="U0BOB")

    answer = await send_to_app(bolt_url, request)

    assert answer.status == 200
    assert (answer.content_type, answer.body) == ("text/plain", "Starting podinfo")
    messages = await eventually(
        lambda: slack_fake.messages(CHANNEL), message="the app never posted in #deploys"
    )
    assert [m["text"] for m in messages] == ["Canary podinfo started"]
    assert [e["text"] for e in slack_fake.ephemerals(user="U0BOB")] == ["Working on podinfo"]


@pytest.mark.parametrize("forgery", ["stale", "wrong_secret", "tampered"])
async def test_a_forged_slash_command_gets_401_and_does_nothing(
    bolt_url: str, slack_fake: SlackFake, slack_requests: SlackRequests, forgery: str
) -> None:
    forged = slack_requests.slash_command(
        text="start podinfo",
        stale=forgery == "stale",
        wrong_secret=forgery == "wrong_secret",
        tampered=forgery == "tampered",
    )

    answer = await send_to_app(bolt_url, forged)

    assert answer.status == 401
    assert slack_fake.calls("chat.postMessage") == []
    assert slack_fake.response_url_posts() == []


async def test_a_button_click_replaces_the_clicked_card(
    bolt_url: str,
    slack_fake: SlackFake,
    slack_client: AsyncWebClient,
    slack_requests: SlackRequests,
) -> None:
    card = await slack_client.chat_postMessage(channel=CHANNEL, text="podinfo: Progressing")

    answer = await send_to_app(
        bolt_url, slack_requests.block_actions("abort", "test/podinfo", message_ts=card["ts"])
    )

    assert answer.status == 200
    updates = await eventually(
        lambda: slack_fake.updates_of(CHANNEL, card["ts"]), message="the card was never replaced"
    )
    assert [u["text"] for u in updates] == ["Aborted by <@U0ALICE>"]


async def test_a_command_opens_a_modal_with_its_trigger_id(
    bolt_url: str, slack_fake: SlackFake, slack_requests: SlackRequests
) -> None:
    answer = await send_to_app(bolt_url, slack_requests.slash_command(text="abort test/podinfo"))

    assert answer.status == 200
    views = await eventually(slack_fake.views, message="no modal was opened")
    assert views[0]["private_metadata"] == "test/podinfo"
    assert slack_fake.calls("views.open")[0].ok


async def test_a_view_submission_can_answer_with_field_errors(
    bolt_url: str, slack_requests: SlackRequests
) -> None:
    empty = slack_requests.view_submission("confirm_abort", {})
    filled = slack_requests.view_submission(
        "confirm_abort", {"reason": {"text": {"type": "plain_text_input", "value": "5xx"}}}
    )

    refused = await send_to_app(bolt_url, empty)
    accepted = await send_to_app(bolt_url, filled)

    assert refused.status == 200
    assert refused.json() == {
        "response_action": "errors",
        "errors": {"reason": "Say why you abort"},
    }
    assert (accepted.status, accepted.body) == (200, "")
