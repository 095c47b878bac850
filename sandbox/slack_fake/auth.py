"""``auth.test`` and ``apps.connections.open``: who a token is, and the Socket Mode URL."""

from __future__ import annotations

from sandbox.slack_fake.records import JSON
from sandbox.slack_fake.state import SlackState, WebApiMethod
from sandbox.slack_fake.workspace import BOT_NAME


def auth_test(slack: SlackState, params: JSON) -> JSON:
    """The bot's identity."""
    return {
        "url": f"https://{slack.team_domain}.slack.com/",
        "team": slack.team_domain,
        "user": BOT_NAME,
        "team_id": slack.team_id,
        "user_id": slack.bot_user_id,
        "bot_id": slack.bot_id,
        "is_enterprise_install": False,
    }


def apps_connections_open(slack: SlackState, params: JSON) -> JSON:
    """A one-time Socket Mode WebSocket URL (needs the app-level token)."""
    ws_url = slack.base_url.replace("http://", "ws://", 1)
    return {"url": slack.socket_mode.issue_url(ws_url)}


METHODS: dict[str, WebApiMethod] = {
    "auth.test": auth_test,
    "apps.connections.open": apps_connections_open,
}
