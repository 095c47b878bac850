"""``/canary …``: parse, acknowledge, then do the work and answer ephemerally."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.clusters import Routed, describe_failure_in
from bot.commands import (
    Command,
    HelpCommand,
    OpenStartDialog,
    ParseError,
    help_reply,
    parse,
    parse_error_reply,
)
from bot.deps import Deps
from bot.handlers.replies import post_audit, send_reply, with_thread_link
from bot.operations import Actor
from bot.render.modal import start_modal
from bot.render.slack_reply import slack_text
from bot.reply import Reply

log = logging.getLogger("canary_bot.handlers")

COMMAND = "/canary"
# Set by ``early_acker`` on a request it acknowledged: the command it parsed.
EARLY_ACKED = "canary_early_acked"


def help_text(topic: str | None) -> str:
    """``/canary help`` or one subcommand's usage (escaped: ``<ref>`` is not a link)."""
    return slack_text(help_reply(topic))


def parse_error_text(error: ParseError) -> str:
    """The refusal of bad input: what is wrong, then the usage of that subcommand.

    The message quotes what the person typed: escaped, it cannot mention or link anything.
    """
    return slack_text(parse_error_reply(error))


def early_acker(deps: Deps) -> Callable[[AsyncBoltRequest], BoltResponse | None]:
    """The ack of a ``/canary`` command that parses, before Bolt sees the request.

    Called where the Slack port reads the request (``bot.slack_port``); the listener
    then finds the parsed command in the request's context. Help and refusals of bad
    input are answered in the ack's body by the listener (None here).
    """

    def acknowledge(request: AsyncBoltRequest) -> BoltResponse | None:
        received = time.perf_counter()
        body = request.body
        if body.get("command") != COMMAND:
            return None
        try:
            parsed = parse(str(body.get("text") or ""))
        except ParseError:
            return None
        if isinstance(parsed, HelpCommand):
            return None
        request.context[EARLY_ACKED] = parsed
        deps.metrics.ack_seconds.observe(time.perf_counter() - received)
        return BoltResponse(status=200, body="")  # what ``await ack()`` sends

    return acknowledge


def register(app: AsyncApp, deps: Deps) -> None:
    """Add the ``/canary`` listener."""

    @app.command(COMMAND)
    async def on_canary(
        ack: AsyncAck,
        command: dict[str, Any],
        respond: AsyncRespond,
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        early = context.get(EARLY_ACKED)
        if early is not None:
            await ack()  # Slack has had its ack; Bolt expects the call
            await carry_out(deps, early, command, respond, client)
            return
        received = time.perf_counter()
        try:
            parsed = parse(str(command.get("text") or ""))
        except ParseError as error:
            await ack(text=parse_error_text(error), response_type="ephemeral")
            deps.metrics.ack_seconds.observe(time.perf_counter() - received)
            # a parser defect is an error of ours, not an invalid command
            outcome = "error" if error.defect else "refused"
            deps.metrics.commands.labels(verb="invalid", outcome=outcome).inc()
            return
        if isinstance(parsed, HelpCommand):
            await ack(text=help_text(parsed.topic), response_type="ephemeral")
            deps.metrics.ack_seconds.observe(time.perf_counter() - received)
            deps.metrics.commands.labels(verb="help", outcome="ok").inc()
            return
        await ack()
        deps.metrics.ack_seconds.observe(time.perf_counter() - received)
        await carry_out(deps, parsed, command, respond, client)


async def carry_out(
    deps: Deps,
    parsed: Command,
    command: dict[str, Any],
    respond: AsyncRespond,
    client: AsyncWebClient,
) -> None:
    """Run an acknowledged command and answer; a failure is answered and counted."""
    actor = Actor(
        user=str(command.get("user_id", "")),
        user_name=str(command.get("user_name", "")),
        channel=str(command.get("channel_id", "")),
    )
    if isinstance(parsed, HelpCommand):  # answered in the ack; here only for completeness
        await send_reply(respond, help_reply(parsed.topic))
        return
    routed = deps.clusters.route(parsed.cluster, actor.channel)
    if isinstance(routed, Reply):
        deps.metrics.commands.labels(verb=parsed.verb, outcome="refused").inc()
        await send_reply(respond, routed)
        return
    routed.audit(parsed.verb, actor.user)
    try:
        await run(deps, routed, parsed, actor, command, respond, client)
        deps.metrics.commands.labels(verb=parsed.verb, outcome="ok").inc()
    except Exception as exc:
        log.exception("/canary %s failed", parsed.verb)
        deps.metrics.commands.labels(verb=parsed.verb, outcome="error").inc()
        await send_reply(respond, describe_failure_in(routed, exc))


async def run(
    deps: Deps,
    routed: Routed,
    parsed: Command,
    actor: Actor,
    command: dict[str, Any],
    respond: AsyncRespond,
    client: AsyncWebClient,
) -> None:
    """Carry out one parsed command (after the ack) in its cluster and answer."""
    trigger = str(command.get("trigger_id", ""))
    if isinstance(parsed, OpenStartDialog):
        cluster = routed.name if routed.named else None
        view = start_modal(deps.config, parsed.namespace, actor.channel, cluster)
        await client.views_open(trigger_id=trigger, view=view)
        return
    outcome = await routed.operations.run_command(parsed, actor, request_key=trigger)
    if outcome.request_id is not None:
        await post_audit(deps, outcome, outcome.request_id)
    await send_reply(respond, await with_thread_link(client, outcome.reply))
