"""Socket Mode: the process connects to the fake's endpoint, acks envelopes, answers."""

from __future__ import annotations

import pytest

from rollout.kube import Kube
from sandbox.slack_fake import SlackFake
from tests.bot.harness import ALICE, MALLORY, config_for, environment, ephemeral_texts, running_bot
from tests.fixtures.slack import SlackRequests, eventually

pytestmark = pytest.mark.cluster


async def test_slash_command_round_trip(
    kube: Kube, namespace: str, slack_fake: SlackFake, slack_requests: SlackRequests
) -> None:
    env = environment(slack_fake, socket_mode=True)
    assert env.transport == "socket"
    async with running_bot(env, config_for(namespace), kube):
        await slack_fake.wait_for_socket_connection()
        ack = await slack_fake.deliver_slash_command(
            slack_requests.slash_command_payload(text="help start")
        )
        assert ack.payload is not None and "/canary start &lt;deployment&gt;" in str(ack.payload)

        ack = await slack_fake.deliver_slash_command(
            slack_requests.slash_command_payload(
                text="abort podinfo", user_id=MALLORY, user_name="mallory"
            )
        )
        told = await eventually(lambda: ephemeral_texts(slack_fake, MALLORY))
        assert (
            f"No release or Deployment with a release named podinfo in namespace {namespace}"
            in told[0]
        )

        await slack_fake.deliver_slash_command(
            slack_requests.slash_command_payload(text=f"list -n {namespace}")
        )
        told = await eventually(lambda: ephemeral_texts(slack_fake, ALICE))
        assert told[0] == f"No active releases in {namespace}."
    # the fake notes the close when the frame arrives, a moment after the bot let go
    await eventually(
        lambda: not [c for c in slack_fake.socket_connections() if c.closed_at is None],
        message="the bot left its Socket Mode connection open",
    )
