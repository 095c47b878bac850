"""``/canary …``: parse, acknowledge, then do the work and answer ephemerally."""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

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
from bot.operations import Actor, describe_failure
from bot.render.modal import start_modal
from bot.render.slack_reply import slack_text

log = logging.getLogger("canary_bot.handlers")

COMMAND = "/canary"


def help_text(topic: str | None) -> str:
    """``/canary help`` or one subcommand's usage (escaped: ``<ref>`` is not a link)."""
    return slack_text(help_reply(topic))


def parse_error_text(error: ParseError) -> str:
    """The refusal of bad input: what is wrong, then the usage of that subcommand.

    The message quotes what the person typed: escaped, it cannot mention or link anything.
    """
    return slack_text(parse_error_reply(error))


def register(app: AsyncApp, deps: Deps) -> None:
    """Add the ``/canary`` listener."""

    @app.command(COMMAND)
    async def on_canary(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
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
        actor = Actor(
            user=str(command.get("user_id", "")),
            user_name=str(command.get("user_name", "")),
            channel=str(command.get("channel_id", "")),
        )
        try:
            await run(deps, parsed, actor, command, respond, client)
            deps.metrics.commands.labels(verb=parsed.verb, outcome="ok").inc()
        except Exception as exc:
            log.exception("/canary %s failed", parsed.verb)
            deps.metrics.commands.labels(verb=parsed.verb, outcome="error").inc()
            await send_reply(respond, describe_failure(exc))


async def run(
    deps: Deps,
    parsed: Command,
    actor: Actor,
    command: dict[str, Any],
    respond: AsyncRespond,
    client: AsyncWebClient,
) -> None:
    """Carry out one parsed command (after the ack) and answer."""
    ops = deps.operations
    trigger = str(command.get("trigger_id", ""))
    if isinstance(parsed, OpenStartDialog):
        view = start_modal(deps.config, parsed.namespace, actor.channel)
        await client.views_open(trigger_id=trigger, view=view)
        return
    outcome = await ops.run_command(parsed, actor, request_key=trigger)
    if outcome.request_id is not None:
        await post_audit(deps, outcome, outcome.request_id)
    await send_reply(respond, await with_thread_link(client, outcome.reply))
