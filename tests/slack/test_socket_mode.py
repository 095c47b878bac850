"""Socket Mode: a real Bolt AsyncApp with AsyncSocketModeHandler against the fake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack_fake import SlackFake
from sandbox.slack_socket_mode import SocketModeAckTimeout, SocketModeNotConnected
from tests.fixtures.slack import SlackRequests, eventually

CHANNEL = "C0DEPLOYS"


class CanaryApp:
    """A small Bolt app with a /canary command, the shape the real front will have."""

    def __init__(self, fake: SlackFake) -> None:
        self.release_slow_ack = asyncio.Event()
        self.app = AsyncApp(client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url))
        self.app.command("/canary")(self.canary)
        self.app.action("promote")(self.promote)

    async def canary(
        self,
        ack: AsyncAck,
        command: dict[str, Any],
        respond: AsyncRespond,
        client: AsyncWebClient,
    ) -> None:
        verb, _, target = command["text"].partition(" ")
        if verb == "slow":
            # Acks only when the test allows it: past Slack's deadline.
            await self.release_slow_ack.wait()
            await ack("too late")
            return
        await ack(f"Starting {target}")
        await respond(text=f"Working on {target}")
        await client.chat_postMessage(
            channel=command["channel_id"], text=f"Canary {target} started"
        )

    async def promote(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.chat_update(
            channel=body["channel"]["id"],
            ts=body["container"]["message_ts"],
            text=f"Promoted by <@{body['user']['id']}>",
        )


@pytest.fixture
async def canary_app(slack_fake: SlackFake) -> AsyncIterator[CanaryApp]:
    app = CanaryApp(slack_fake)
    handler = AsyncSocketModeHandler(app.app, app_token=slack_fake.app_token)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    try:
        yield app
    finally:
        app.release_slow_ack.set()
        await handler.close_async()  # type: ignore[no-untyped-call]


async def test_a_slash_command_round_trip_over_socket_mode(
    canary_app: CanaryApp, slack_fake: SlackFake, slack_requests: SlackRequests
) -> None:
    payload = slack_requests.slash_command_payload(text="start podinfo", user_id="U0BOB")

    ack = await slack_fake.deliver_slash_command(payload)

    assert ack.payload == {"text": "Starting podinfo"}
    assert ack.elapsed < 3.0
    messages = await eventually(
        lambda: slack_fake.messages(CHANNEL), message="the app never posted in #deploys"
    )
    assert [m["text"] for m in messages] == ["Canary podinfo started"]
    assert [e["text"] for e in slack_fake.ephemerals(user="U0BOB")] == ["Working on podinfo"]
    [envelope] = slack_fake.socket_envelopes()
    assert envelope.type == "slash_commands"
    assert envelope.ack == ack
    # The handler fetched its WebSocket URL with the app-level token.
    assert [c.token_type for c in slack_fake.calls("apps.connections.open")] == ["app"]


async def test_a_button_click_over_socket_mode(
    canary_app: CanaryApp,
    slack_fake: SlackFake,
    slack_client: AsyncWebClient,
    slack_requests: SlackRequests,
) -> None:
    card = await slack_client.chat_postMessage(channel=CHANNEL, text="podinfo: WaitingPromotion")
    payload = slack_requests.block_actions_payload("promote", "test/podinfo", message_ts=card["ts"])

    ack = await slack_fake.deliver_interactive(payload)

    assert ack.payload is None
    updates = await eventually(
        lambda: slack_fake.updates_of(CHANNEL, card["ts"]), message="the card was never updated"
    )
    assert updates[-1]["text"] == "Promoted by <@U0ALICE>"


async def test_no_ack_within_the_deadline_is_a_clear_error(
    canary_app: CanaryApp, slack_fake: SlackFake, slack_requests: SlackRequests
) -> None:
    payload = slack_requests.slash_command_payload(text="slow podinfo")

    with pytest.raises(SocketModeAckTimeout, match="did not ack the slash_commands envelope"):
        await slack_fake.deliver_slash_command(payload, ack_timeout=0.3)

    canary_app.release_slow_ack.set()
    late = await eventually(
        lambda: [e for e in slack_fake.socket_envelopes() if e.late],
        message="the late ack never arrived",
    )
    assert late[0].ack is None


async def test_the_app_reconnects_when_slack_refreshes_the_connection(
    canary_app: CanaryApp, slack_fake: SlackFake, slack_requests: SlackRequests
) -> None:
    first = await slack_fake.wait_for_socket_connection()

    told = await slack_fake.disconnect_socket("refresh_requested", close_after=0.2)
    second = await slack_fake.wait_for_socket_connection(after=first.id)

    assert told == [first.id]
    connections = await eventually(
        lambda: [c for c in slack_fake.socket_connections() if not c.is_open],
        message="the refreshed connection was never closed",
    )
    assert connections[0].id == first.id
    assert len(slack_fake.calls("apps.connections.open")) == 2
    ack = await slack_fake.deliver_slash_command(
        slack_requests.slash_command_payload(text="start podinfo")
    )
    assert ack.connection_id == second.id
    assert ack.payload == {"text": "Starting podinfo"}


async def test_the_app_reconnects_after_the_socket_drops(
    canary_app: CanaryApp, slack_fake: SlackFake, slack_requests: SlackRequests
) -> None:
    first = await slack_fake.wait_for_socket_connection()

    await slack_fake.drop_socket_connections()
    second = await slack_fake.wait_for_socket_connection(after=first.id)

    ack = await slack_fake.deliver_slash_command(
        slack_requests.slash_command_payload(text="start podinfo")
    )
    assert ack.connection_id == second.id


async def test_delivering_with_no_app_connected_fails_clearly(
    slack_fake: SlackFake, slack_requests: SlackRequests
) -> None:
    with pytest.raises(SocketModeNotConnected, match="no app is connected"):
        await slack_fake.deliver_slash_command(
            slack_requests.slash_command_payload(text="status"), connect_timeout=0.1
        )


async def test_the_blocking_form_refuses_to_run_on_an_event_loop(
    slack_fake: SlackFake, slack_requests: SlackRequests
) -> None:
    with pytest.raises(RuntimeError, match=r"use `await fake\.deliver"):
        slack_fake.deliver_slash_command_sync(slack_requests.slash_command_payload())


async def test_the_blocking_form_from_another_thread(
    canary_app: CanaryApp, slack_fake: SlackFake, slack_requests: SlackRequests
) -> None:
    payload = slack_requests.slash_command_payload(text="start podinfo")

    ack = await asyncio.to_thread(slack_fake.deliver_slash_command_sync, payload)

    assert ack.payload == {"text": "Starting podinfo"}


async def test_the_protocol_as_a_raw_websocket_client_sees_it(slack_fake: SlackFake) -> None:
    app_client = AsyncWebClient(base_url=slack_fake.api_url)
    opened = await app_client.apps_connections_open(app_token=slack_fake.app_token)
    url = opened["url"]
    assert url.startswith(f"ws://127.0.0.1:{slack_fake.port}/link/?ticket=")

    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        hello = await ws.receive_json()
        assert hello["type"] == "hello"
        assert hello["num_connections"] == 1
        assert hello["connection_info"] == {"app_id": slack_fake.app_id}
        assert hello["debug_info"]["approximate_connection_time"] > 0

        # Tickets are single use.
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(url)

        delivery = asyncio.ensure_future(
            slack_fake.deliver_interactive({"type": "view_submission"}, ack_timeout=2)
        )
        envelope = await ws.receive_json()
        assert set(envelope) == {"envelope_id", "payload", "type", "accepts_response_payload"}
        assert envelope["type"] == "interactive"
        await ws.send_str(
            json.dumps(
                {"envelope_id": envelope["envelope_id"], "payload": {"response_action": "clear"}}
            )
        )
        ack = await delivery
        assert ack.payload == {"response_action": "clear"}

        await slack_fake.disconnect_socket("warning")
        warning = await ws.receive_json()
        assert warning == {
            "type": "disconnect",
            "reason": "warning",
            "debug_info": {"host": "applink-fake"},
        }
        assert slack_fake.socket_connections()[0].is_open


async def test_apps_connections_open_needs_the_app_level_token(
    slack_fake: SlackFake, slack_client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as err:
        await slack_client.apps_connections_open(app_token=slack_fake.bot_token)

    assert err.value.response["error"] == "not_allowed_token_type"
