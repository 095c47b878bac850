"""Sending replies and audit lines back to Slack, shared by the handlers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps
from bot.operations import ControlOutcome
from bot.render.limits import check_message
from bot.render.slack_reply import slack_blocks, slack_text
from bot.reply import Channel, Link, Reply

log = logging.getLogger("canary_bot.handlers")

Respond = Callable[..., Awaitable[Any]]


async def send_reply(respond: Respond, reply: Reply) -> None:
    """Answer through the request's ``response_url`` (ephemeral unless public)."""
    text = slack_text(reply)
    await respond(
        text=text,
        blocks=check_message(slack_blocks(reply), text),
        response_type="in_channel" if reply.public else "ephemeral",
        replace_original=False,
    )


async def post_audit(deps: Deps, outcome: ControlOutcome, request_id: str) -> bool:
    """Post ``aborted by <@U…>`` in the release's thread, once per request id."""
    release = outcome.release
    if outcome.audit is None or release is None:
        return False
    thread = release.status.notification
    if not thread.channel or not thread.thread_ts or not deps.audit.claim(request_id):
        return False
    try:
        await deps.client.chat_postMessage(
            channel=thread.channel, thread_ts=thread.thread_ts, text=outcome.audit
        )
    except SlackApiError as exc:  # the request is recorded; the audit line is a courtesy
        log.warning("audit line not posted for %s: %s", release.key, exc.response.get("error"))
        deps.metrics.slack_sends.labels(method="chat.postMessage", outcome="error").inc()
        return False
    deps.metrics.slack_sends.labels(method="chat.postMessage", outcome="ok").inc()
    return True


async def with_thread_link(client: AsyncWebClient, reply: Reply) -> Reply:
    """``reply`` with a link to the release thread it names (Slack's permalink)."""
    if reply.thread is None:
        return reply
    channel, ts = reply.thread
    try:
        response = await client.chat_getPermalink(channel=channel, message_ts=ts)
        link = str(response.get("permalink") or "")
    except SlackApiError:  # the reply matters more than the link
        link = ""
    if not link.startswith(("https://", "http://")) or set("<>|") & set(link):
        return reply.extended(" Its thread is in ", Channel(channel), ".")
    return reply.extended(" ", Link(link, "Open the release thread"))
