"""The Slack port acknowledges commands from its own event loop: a busy main loop (the
engine, other commands' work) does not hold up Slack's 3 s ack."""

from __future__ import annotations

import asyncio
import threading
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from rollout.kube import Kube
from sandbox.slack_fake import SlackFake
from sandbox.slack_requests import SignedRequest
from tests.bot.harness import ALICE, config_for, environment, ephemeral_texts, running_bot
from tests.fixtures.slack import SlackRequests, eventually

pytestmark = pytest.mark.cluster

DEADLINE_S = 10.0


def post_from_thread(port: int, request: SignedRequest, got: dict[str, object]) -> threading.Thread:
    """POST ``request`` from a thread of its own (the test's loop is the bot's main loop)."""

    def send() -> None:
        http = urllib.request.Request(
            f"http://127.0.0.1:{port}/slack/events",
            data=request.body,
            headers=request.headers,
            method="POST",
        )
        with urllib.request.urlopen(http, timeout=DEADLINE_S) as response:
            got["status"], got["body"] = response.status, response.read().decode()

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def ack_count(registry: CollectorRegistry) -> float:
    """How many acks the bot's metrics counted."""
    return float(registry.get_sample_value("canarybot_slack_ack_seconds_count") or 0)


async def test_a_command_is_acknowledged_while_the_main_loop_is_busy(
    kube: Kube,
    namespace: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube) as bot:
        got: dict[str, object] = {}
        request = slack_requests.slash_command(text="status nosuchapp")
        sender = post_from_thread(bot.bound_port, request, got)
        # Hold the main loop (where Bolt, the listeners and the engine run) until the
        # ack has arrived: it can only have come from the Slack port's own loop.
        sender.join(DEADLINE_S)
        acked_while_busy = dict(got)
        answered_while_busy = ephemeral_texts(slack_fake, ALICE)

        assert acked_while_busy == {"status": 200, "body": ""}
        assert answered_while_busy == []  # the work waits for the main loop
        told = await eventually(lambda: ephemeral_texts(slack_fake, ALICE))
        assert "nosuchapp" in told[0]
        assert ack_count(bot.registry) == 1  # counted once, at the early ack


async def test_help_and_bad_input_are_still_answered_in_the_ack(
    kube: Kube,
    namespace: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube) as bot:
        for text, shown in (("help status", "/canary status"), ("stauts x", "did you mean")):
            got: dict[str, object] = {}
            sender = post_from_thread(bot.bound_port, slack_requests.slash_command(text=text), got)
            await asyncio.to_thread(sender.join, DEADLINE_S)  # the main loop runs meanwhile
            assert got["status"] == 200 and shown in str(got["body"])
        assert ack_count(bot.registry) == 2
        assert slack_fake.response_url_posts() == []
