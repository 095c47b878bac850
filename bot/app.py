"""The Bolt ``AsyncApp``: every listener registered, the Web API client injected.

The client's base URL comes from ``SLACK_API_URL`` (tests, proxies), and Bolt's own
``auth.test`` goes through the same client, so nothing reaches slack.com unless asked.
"""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp

from bot.deps import Deps
from bot.handlers import control_buttons, slash_command, start_dialog
from bot.respond import Responder


def build_app(
    deps: Deps, signing_secret: str = "", responder: Responder | None = None
) -> AsyncApp:
    """The Slack app with all canary-bot listeners.

    With a ``responder``, answers through a ``response_url`` share its HTTP session;
    without, Bolt opens one per answer.
    """
    app = AsyncApp(
        client=deps.client,
        signing_secret=signing_secret,
        logger=logging.getLogger("canary_bot.bolt"),
        # Socket Mode requests are not signed; HTTP ones are verified in front of Bolt
        # (bot/web.py) unless a secret is given here.
        request_verification_enabled=bool(signing_secret),
    )
    if responder is not None:
        responder.install(app)
    for module in (slash_command, control_buttons, start_dialog):
        module.register(app, deps)
    return app
