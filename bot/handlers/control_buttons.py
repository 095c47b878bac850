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

from bot.clusters import Routed, describe_failure_in
from bot.deps import Deps
from bot.handlers.replies import post_audit, send_reply
from bot.operations import Actor, request_id
from bot.render.card import ACTION_PREFIX, ButtonTarget, parse_button_target
from bot.reply import Reply, warning
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
            target = parse_button_target(str(action.get("value", "")))
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
        # the value's cluster is whatever the click says: only a configured one is used
        routed = deps.clusters.route(target.cluster, actor.channel, click=True)
        if isinstance(routed, Reply):
            deps.metrics.commands.labels(verb=control, outcome="refused").inc()
            await send_reply(respond, routed)
            return
        routed.audit(control, actor.user)
        await _steer(deps, routed, control, target, actor, respond)


async def _steer(
    deps: Deps,
    routed: Routed,
    control: ControlAction,
    target: ButtonTarget,
    actor: Actor,
    respond: AsyncRespond,
) -> None:
    """Record the click's control request in its cluster; answer when there is no audit."""
    namespace, name = target.namespace, target.name
    parts = (namespace, name, control, str(target.seq), actor.user)
    # the cluster is part of the id where several are served: same names, other release
    rid = request_id("btn", routed.name, *parts) if routed.named else request_id("btn", *parts)
    try:
        outcome = await routed.operations.control(control, name, namespace, actor, rid)
        posted = await post_audit(deps, outcome, rid)
        if not posted or outcome.audit is None:
            await send_reply(respond, outcome.reply)
        deps.metrics.commands.labels(verb=control, outcome="ok").inc()
    except Exception as exc:
        log.exception("%s button failed for %s/%s", control, namespace, name)
        deps.metrics.commands.labels(verb=control, outcome="error").inc()
        await send_reply(respond, describe_failure_in(routed, exc))
