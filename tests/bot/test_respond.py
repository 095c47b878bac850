"""Answers through ``response_url``s share one HTTP session (and its kept-alive connection)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock

from bot.respond import Responder
from rollout.kube import Kube
from sandbox.slack_fake import SlackFake
from tests.bot.harness import (
    ALICE,
    config_for,
    environment,
    ephemeral_texts,
    post_signed,
    running_bot,
)
from tests.fixtures.slack import SlackRequests, eventually

CHANNEL = "C0DEPLOYS"


def answers_to(fake: SlackFake, user: str, count: int) -> Callable[[], bool]:
    """Whether ``user`` has been told ``count`` things."""
    return lambda: len(ephemeral_texts(fake, user)) >= count


async def test_answers_to_different_requests_share_one_connection(slack_fake: SlackFake) -> None:
    responder = Responder()
    urls = [slack_fake.new_response_url(channel_id=CHANNEL, user_id=ALICE) for _ in range(3)]
    try:
        for i, url in enumerate(urls):
            sent = await responder.respond_to(url)(text=f"answer {i}", response_type="ephemeral")
            assert sent.status_code == 200
    finally:
        await responder.aclose()

    assert ephemeral_texts(slack_fake, ALICE) == ["answer 0", "answer 1", "answer 2"]
    peers = {post.peer for post in slack_fake.response_url_posts()}
    assert len(peers) == 1 and "" not in peers


async def test_an_answer_carries_blocks_and_options_as_bolts_respond_does(
    slack_fake: SlackFake,
) -> None:
    responder = Responder()
    url = slack_fake.new_response_url(channel_id=CHANNEL, user_id=ALICE)
    block = SectionBlock(text=MarkdownTextObject(text="*podinfo* is rolling out"))
    try:
        await responder.respond_to(url)(
            text="podinfo is rolling out",
            blocks=[block],
            response_type="in_channel",
            replace_original=False,
        )
    finally:
        await responder.aclose()

    [post] = slack_fake.response_url_posts(url)
    assert post.body == {
        "text": "podinfo is rolling out",
        "blocks": [block.to_dict()],
        "response_type": "in_channel",
        "replace_original": False,
    }
    assert [m["text"] for m in slack_fake.messages(CHANNEL)] == ["podinfo is rolling out"]


async def test_a_closed_responder_refuses_instead_of_opening_a_session(
    slack_fake: SlackFake,
) -> None:
    responder = Responder()
    url = slack_fake.new_response_url(channel_id=CHANNEL, user_id=ALICE)
    await responder.respond_to(url)(text="before shutdown")
    await responder.aclose()

    with pytest.raises(RuntimeError, match="shutting down"):
        await responder.respond_to(url)(text="after shutdown")
    assert ephemeral_texts(slack_fake, ALICE) == ["before shutdown"]


@pytest.mark.cluster
async def test_the_bot_answers_every_command_over_one_connection(
    kube: Kube,
    namespace: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube) as bot:
        for count in range(1, 4):  # one after another: each answer can reuse the connection
            request = slack_requests.slash_command(text="status nosuchapp")
            status, _ = await post_signed(bot.bound_port, request)
            assert status == 200
            await eventually(answers_to(slack_fake, ALICE, count))

    told = ephemeral_texts(slack_fake, ALICE)
    assert len(told) == 3 and all("nosuchapp" in text for text in told)
    posts = slack_fake.response_url_posts()
    assert len({post.url for post in posts}) == 3  # three requests, three response_urls
    assert len({post.peer for post in posts}) == 1  # one connection for all answers
