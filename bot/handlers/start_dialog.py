"""The start form's submission: validate like typed text, close the form, start."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.clusters import describe_failure_in
from bot.commands import ParseError, StartCommand, parse
from bot.deps import Deps
from bot.handlers.replies import with_thread_link
from bot.operations import Actor
from bot.releases import RequestProblem, build_analysis
from bot.render.modal import START_CALLBACK, origin_channel, origin_cluster, submission_text
from bot.render.slack_reply import slack_text
from bot.reply import Reply

log = logging.getLogger("canary_bot.handlers")


def error_block(error: ParseError) -> str:
    """Which form field a parse error is about."""
    text = error.message.lower()
    if "image" in text or "container" in text:
        return "images"
    if "namespace" in text:
        return "namespace"
    if "profile" in text:
        return "profile"
    return "deployment"


def register(app: AsyncApp, deps: Deps) -> None:
    """Add the form submission listener."""

    @app.view(START_CALLBACK)
    async def on_start_submitted(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        values = (view.get("state") or {}).get("values") or {}
        try:
            parsed = parse(submission_text(values))
        except ParseError as error:
            await ack(response_action="errors", errors={error_block(error): error.message[:3000]})
            return
        if not isinstance(parsed, StartCommand):
            await ack(response_action="errors", errors={"deployment": "Name the Deployment."})
            return
        # The same bounds as typed text (bot.bounds via build_analysis), shown in the form;
        # operations.start checks them again, so this is only the earlier, friendlier answer.
        try:
            build_analysis(parsed.options, deps.config)
        except RequestProblem as problem:
            block = "profile" if deps.config.profiles else "namespace"
            await ack(response_action="errors", errors={block: str(problem)[:3000]})
            return
        await ack()
        user = body.get("user") or {}
        metadata = str(view.get("private_metadata", ""))
        actor = Actor(
            user=str(user.get("id", "")),
            user_name=str(user.get("username") or user.get("name") or ""),
            channel=origin_channel(metadata),
        )
        # the metadata comes back from Slack: its cluster is used only if configured
        routed = deps.clusters.route(origin_cluster(metadata), actor.channel)
        if isinstance(routed, Reply):
            deps.metrics.commands.labels(verb="start", outcome="refused").inc()
            await tell(client, actor, routed)
            return
        routed.audit("start", actor.user)
        try:
            reply = await routed.operations.start(
                parsed.options, actor, request_key=str(view.get("id", ""))
            )
            deps.metrics.commands.labels(verb="start", outcome="ok").inc()
        except Exception as exc:
            log.exception("start from the form failed")
            deps.metrics.commands.labels(verb="start", outcome="error").inc()
            reply = describe_failure_in(routed, exc)
        await tell(client, actor, await with_thread_link(client, reply))


async def tell(client: AsyncWebClient, actor: Actor, reply: Reply) -> None:
    """An ephemeral note to the user in the channel the form came from (else a DM)."""
    text = slack_text(reply)
    try:
        if actor.channel:
            await client.chat_postEphemeral(channel=actor.channel, user=actor.user, text=text)
        else:
            await client.chat_postMessage(channel=actor.user, text=text)
    except SlackApiError as exc:
        log.warning("could not tell %s: %s", actor.user, exc.response.get("error"))
