"""Every Slack Web API method canary-bot calls, and the bot-token scope each one needs.

manifests/slack-app.yaml asks for exactly the scopes below plus ``commands`` (the
``/canary`` slash command), and tests check both directions: every scope requested is
needed by a method here, and every method the bot calls in an end-to-end run is here.
docs/slack.md explains each scope to the person creating the app.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodUse:
    """Why the bot calls a method, and which bot scope that needs (empty: none)."""

    scopes: tuple[str, ...]
    why: str


#: The slash command itself needs this scope; it is not a Web API method.
SLASH_COMMAND_SCOPE = "commands"

METHODS: dict[str, MethodUse] = {
    "auth.test": MethodUse((), "Bolt checks the bot token at start-up"),
    "chat.postMessage": MethodUse(
        ("chat:write", "chat:write.public"),
        "the release card, thread replies and channel alerts; chat:write.public lets it "
        "post in a namespace's public channel without being invited first",
    ),
    "chat.update": MethodUse(("chat:write",), "keep the release card up to date in place"),
    "chat.postEphemeral": MethodUse(("chat:write",), "answer the start form privately"),
    "chat.getPermalink": MethodUse((), "link the release thread from a failure alert"),
    "views.open": MethodUse((), "open the `/canary start` form"),
    "usergroups.users.list": MethodUse(
        ("usergroups:read",), "resolve the user groups named in the access rules"
    ),
    "files.getUploadURLExternal": MethodUse(
        ("files:write",), "upload the end-of-rollout chart (step 1 of files_upload_v2)"
    ),
    "files.completeUploadExternal": MethodUse(
        ("files:write",), "share the uploaded chart in the release thread (step 2)"
    ),
}

#: Called with the app-level token (``xapp-``, scope ``connections:write``), not a bot scope.
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})


def bot_scopes() -> set[str]:
    """The bot-token scopes the app must request: exactly what the methods above need."""
    needed = {scope for use in METHODS.values() for scope in use.scopes}
    return needed | {SLASH_COMMAND_SCOPE}
