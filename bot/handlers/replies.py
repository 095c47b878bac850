"""Sending replies and audit lines back to Slack, shared by the handlers."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps
from bot.operations import ControlOutcome, Reply, message_blocks
from bot.render.limits import check_message

log = logging.getLogger("canary_bot.handlers")

Respond = Callable[..., Awaitable[Any]]


async def send_reply(respond: Respond, reply: Reply) -> None:
    """Answer through the request's ``response_url`` (ephemeral unless public)."""
    await respond(
        text=reply.text,
        blocks=check_message(message_blocks(reply), reply.text),
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
        return dataclasses.replace(reply, text=reply.text + f" Its thread is in <#{channel}>.")
    return dataclasses.replace(reply, text=reply.text + f" <{link}|Open the release thread>")
