"""The card's buttons: Promote, Abort, Pause, Resume, Approve.

Slack shows the confirmation dialog (the button's ``confirm`` object) before a
destructive click reaches us. The request id comes from the card version, the action and
the user, so a double click or a Slack retry records one request.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.deps import Deps
from bot.handlers.replies import post_audit, send_reply
from bot.operations import Actor, describe_failure, request_id
from bot.render.card import ACTION_PREFIX, parse_button_value
from bot.reply import warning
from rollout.models import ControlAction

log = logging.getLogger("canary_bot.handlers")

ACTIONS: tuple[ControlAction, ...] = ("promote", "abort", "pause", "resume", "approve")
ACTION_IDS = re.compile(rf"^{ACTION_PREFIX}({'|'.join(ACTIONS)})$")


def register(app: AsyncApp, deps: Deps) -> None:
    """Add the button listener."""

    @app.action(ACTION_IDS)
    async def on_control_button(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        received = time.perf_counter()
        await ack()
        deps.metrics.ack_seconds.observe(time.perf_counter() - received)
        verb = str(action.get("action_id", "")).removeprefix(ACTION_PREFIX)
        control = next((a for a in ACTIONS if a == verb), None)
        try:
            namespace, name, seq = parse_button_value(str(action.get("value", "")))
        except ValueError:
            control = None
        if control is None:
            await send_reply(respond, warning("That button is not one of canary-bot's."))
            return
        user = body.get("user") or {}
        actor = Actor(
            user=str(user.get("id", "")),
            user_name=str(user.get("username") or user.get("name") or ""),
            channel=str((body.get("channel") or {}).get("id", "")),
        )
        rid = request_id("btn", namespace, name, control, str(seq), actor.user)
        try:
            outcome = await deps.operations.control(control, name, namespace, actor, rid)
            posted = await post_audit(deps, outcome, rid)
            if not posted or outcome.audit is None:
                await send_reply(respond, outcome.reply)
            deps.metrics.commands.labels(verb=control, outcome="ok").inc()
        except Exception as exc:
            log.exception("%s button failed for %s/%s", control, namespace, name)
            deps.metrics.commands.labels(verb=control, outcome="error").inc()
            await send_reply(respond, describe_failure(exc))
