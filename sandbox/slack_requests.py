"""Requests as Slack sends them to an app, for tests of the Slack front.

Two shapes of the same payloads:

* HTTP mode: ``slash_command(...)``, ``block_actions(...)`` and ``view_submission(...)``
  return a :class:`SignedRequest` (raw body bytes + headers) signed with the app's
  signing secret the way Slack signs: ``X-Slack-Signature: v0=HMAC_SHA256(secret,
  "v0:{timestamp}:{body}")``. Options make a stale timestamp, a wrong secret or a body
  changed after signing, for tests that expect a 401.
* Socket Mode: ``slash_command_payload(...)``, ``block_actions_payload(...)`` and
  ``view_submission_payload(...)`` return the unsigned payload that goes inside a
  Socket Mode envelope (see :class:`sandbox.slack_fake.SlackFake`).

The default workspace, users and channels match the defaults of the local Slack fake,
so a payload built with defaults refers to things the fake knows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any, NamedTuple, TypedDict, Unpack
from urllib.parse import urlencode

__all__ = [
    "DEFAULT_API_APP_ID",
    "DEFAULT_BOT_ID",
    "DEFAULT_BOT_USER_ID",
    "DEFAULT_CHANNEL_ID",
    "DEFAULT_CHANNEL_NAME",
    "DEFAULT_TEAM_DOMAIN",
    "DEFAULT_TEAM_ID",
    "DEFAULT_USER_ID",
    "DEFAULT_USER_NAME",
    "BlockActionsFields",
    "SignedRequest",
    "SlashCommandFields",
    "ViewSubmissionFields",
    "block_actions",
    "block_actions_payload",
    "form_body",
    "interactive_body",
    "make_trigger_id",
    "sign",
    "slash_command",
    "slash_command_payload",
    "trigger_issued_at",
    "view_submission",
    "view_submission_payload",
]

DEFAULT_TEAM_ID = "T0CANARY"
DEFAULT_TEAM_DOMAIN = "canary-test"
DEFAULT_API_APP_ID = "A0CANARYBOT"
DEFAULT_USER_ID = "U0ALICE"
DEFAULT_USER_NAME = "alice"
DEFAULT_CHANNEL_ID = "C0DEPLOYS"
DEFAULT_CHANNEL_NAME = "deploys"
DEFAULT_BOT_USER_ID = "U0BOTCANARY"
DEFAULT_BOT_ID = "B0BOTCANARY"

# Slack still sends the deprecated verification token in every payload; apps must not
# rely on it (Bolt ignores it), so a constant that is obviously not a secret will do.
_VERIFICATION_TOKEN = "fake-verification-token"

# How far in the past a "stale" request is signed: Slack's verifiers reject more than
# 300 s of skew, so 10 minutes is stale for every one of them.
_STALE_SECONDS = 600

_SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


class SignedRequest(NamedTuple):
    """A request body and the headers Slack sends with it (unpacks as ``body, headers``)."""

    body: bytes
    headers: dict[str, str]


# ---------------------------------------------------------------------------
# trigger ids


def make_trigger_id(*, issued_at: float | None = None) -> str:
    """Return a trigger id in Slack's shape (``<digits>.<digits>.<hex>``).

    The first part carries the issue time in milliseconds so the local fake can tell an
    expired trigger (Slack allows 3 s between the interaction and ``views.open``)
    without sharing state with whoever built the request.
    """
    issued_ms = int((time.time() if issued_at is None else issued_at) * 1000)
    return f"{issued_ms}.{secrets.randbelow(10**10):010d}.{secrets.token_hex(16)}"


def trigger_issued_at(trigger_id: str) -> float | None:
    """Return when a trigger id from :func:`make_trigger_id` was issued, or None if malformed."""
    parts = trigger_id.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    if len(parts[2]) < 8 or any(ch not in "0123456789abcdef" for ch in parts[2]):
        return None
    return int(parts[0]) / 1000.0


def _placeholder_response_url(kind: str, team_id: str) -> str:
    # Shape of a real response_url; nothing listens there, so a test that wants the
    # app's `respond()` to land somewhere passes one from SlackFake.new_response_url().
    return (
        f"https://hooks.slack.com/{kind}/{team_id}/"
        f"{secrets.randbelow(10**12):012d}/{secrets.token_urlsafe(18)}"
    )


# ---------------------------------------------------------------------------
# signing


def sign(
    body: bytes,
    *,
    signing_secret: str,
    timestamp: int | None = None,
    stale: bool = False,
    wrong_secret: bool = False,
    tampered: bool = False,
    content_type: str = "application/x-www-form-urlencoded",
) -> SignedRequest:
    """Sign ``body`` as Slack does and return it with Slack's request headers.

    Args:
        body: the raw request body.
        signing_secret: the app's signing secret.
        timestamp: the request timestamp (Unix seconds); now by default.
        stale: sign with a timestamp 10 minutes old (verifiers allow 5).
        wrong_secret: sign with a different secret (a forged request).
        tampered: change the body after signing it (a modified request).
        content_type: the Content-Type header.
    """
    if not signing_secret:
        raise ValueError("signing_secret must not be empty")
    ts = int(time.time()) if timestamp is None else timestamp
    if stale:
        ts -= _STALE_SECONDS
    secret = signing_secret + "-but-not-this-one" if wrong_secret else signing_secret
    base = b"v0:" + str(ts).encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if tampered:
        # An extra form field keeps the body parseable, so the request fails on its
        # signature alone and not on a parse error.
        body = body + b"&tampered=1"
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature,
        "User-Agent": _SLACK_USER_AGENT,
        "Accept": "application/json,*/*",
    }
    return SignedRequest(body=body, headers=headers)


def form_body(fields: Mapping[str, str]) -> bytes:
    """Form-encode ``fields`` as Slack does for slash commands."""
    return urlencode(fields).encode()


def interactive_body(payload: Mapping[str, Any]) -> bytes:
    """Encode an interactive payload as Slack does: one form field, ``payload``, of JSON."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


# ---------------------------------------------------------------------------
# slash commands


class SlashCommandFields(TypedDict, total=False):
    """Fields of a slash command request; every one has a default."""

    command: str
    text: str
    user_id: str
    user_name: str
    channel_id: str
    channel_name: str
    team_id: str
    team_domain: str
    response_url: str
    trigger_id: str
    api_app_id: str
    enterprise_id: str
    enterprise_name: str
    is_enterprise_install: bool


def slash_command_payload(**fields: Unpack[SlashCommandFields]) -> dict[str, str]:
    """Return the fields Slack sends for a slash command (``/canary`` by default).

    This is the form body of an HTTP-mode request and the ``payload`` of a Socket Mode
    ``slash_commands`` envelope.
    """
    team_id = fields.get("team_id", DEFAULT_TEAM_ID)
    payload = {
        "token": _VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": fields.get("team_domain", DEFAULT_TEAM_DOMAIN),
        "channel_id": fields.get("channel_id", DEFAULT_CHANNEL_ID),
        "channel_name": fields.get("channel_name", DEFAULT_CHANNEL_NAME),
        "user_id": fields.get("user_id", DEFAULT_USER_ID),
        "user_name": fields.get("user_name", DEFAULT_USER_NAME),
        "command": fields.get("command", "/canary"),
        "text": fields.get("text", ""),
        "api_app_id": fields.get("api_app_id", DEFAULT_API_APP_ID),
        "is_enterprise_install": "true" if fields.get("is_enterprise_install") else "false",
        "response_url": fields.get("response_url")
        or _placeholder_response_url("commands", team_id),
        "trigger_id": fields.get("trigger_id") or make_trigger_id(),
    }
    # Slack only includes the enterprise fields for Enterprise Grid workspaces.
    if "enterprise_id" in fields:
        payload["enterprise_id"] = fields["enterprise_id"]
        payload["enterprise_name"] = fields.get("enterprise_name", "")
    return payload


def slash_command(
    *,
    signing_secret: str,
    timestamp: int | None = None,
    stale: bool = False,
    wrong_secret: bool = False,
    tampered: bool = False,
    **fields: Unpack[SlashCommandFields],
) -> SignedRequest:
    """Return a signed HTTP-mode slash command request (form-encoded, as Slack sends it)."""
    return sign(
        form_body(slash_command_payload(**fields)),
        signing_secret=signing_secret,
        timestamp=timestamp,
        stale=stale,
        wrong_secret=wrong_secret,
        tampered=tampered,
    )


# ---------------------------------------------------------------------------
# block actions (button clicks and other interactive elements in messages)


class BlockActionsFields(TypedDict, total=False):
    """Optional fields of a ``block_actions`` payload."""

    user_id: str
    user_name: str
    channel_id: str
    channel_name: str
    team_id: str
    team_domain: str
    api_app_id: str
    message_ts: str
    thread_ts: str
    message: dict[str, Any]
    is_ephemeral: bool
    block_id: str
    action_type: str
    action_text: str
    style: str
    response_url: str
    trigger_id: str
    state_values: dict[str, Any]


def block_actions_payload(
    action_id: str, value: str | None = None, **fields: Unpack[BlockActionsFields]
) -> dict[str, Any]:
    """Return the payload of a ``block_actions`` interaction (a button click by default).

    Pass ``message`` (for example ``fake.message(channel, ts)``) so the app sees the
    message it rendered, as it would from Slack; the clicked element's block_id, text,
    style and value then come from that message unless given. Without a message a
    minimal one is used.
    """
    team_id = fields.get("team_id", DEFAULT_TEAM_ID)
    user_id = fields.get("user_id", DEFAULT_USER_ID)
    user_name = fields.get("user_name", DEFAULT_USER_NAME)
    channel_id = fields.get("channel_id", DEFAULT_CHANNEL_ID)
    message = fields.get("message")
    message_ts = fields.get("message_ts") or (message or {}).get("ts") or _ts_now()
    thread_ts = fields.get("thread_ts") or (message or {}).get("thread_ts")
    # Slack describes the element that was clicked as the message rendered it.
    found_block_id, element = _find_element(message, action_id)
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": fields.get("block_id") or found_block_id or secrets.token_urlsafe(4),
        "type": fields.get("action_type") or element.get("type", "button"),
        "action_ts": _ts_now(),
    }
    if action["type"] == "button":
        text = element.get("text") or {"type": "plain_text", "text": action_id, "emoji": True}
        if "action_text" in fields:
            text = {"type": "plain_text", "text": fields["action_text"], "emoji": True}
        action["text"] = text
        style = fields.get("style") or element.get("style")
        if style:
            action["style"] = style
    value = value if value is not None else element.get("value")
    if value is not None:
        action["value"] = value
    is_ephemeral = fields.get("is_ephemeral", False)
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel_id,
        "is_ephemeral": is_ephemeral,
    }
    if thread_ts and thread_ts != message_ts:
        container["thread_ts"] = thread_ts
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": fields.get("api_app_id", DEFAULT_API_APP_ID),
        "token": _VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": fields.get("trigger_id") or make_trigger_id(),
        "team": {"id": team_id, "domain": fields.get("team_domain", DEFAULT_TEAM_DOMAIN)},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": fields.get("channel_name", DEFAULT_CHANNEL_NAME)},
        "state": {"values": fields.get("state_values", {})},
        "response_url": fields.get("response_url") or _placeholder_response_url("actions", team_id),
        "actions": [action],
    }
    # Slack omits the message for ephemeral messages: the app never stored them.
    if not is_ephemeral:
        payload["message"] = message or {
            "type": "message",
            "ts": message_ts,
            "text": "",
            "user": "",
            "blocks": [],
        }
    return payload


def _find_element(
    message: Mapping[str, Any] | None, action_id: str
) -> tuple[str | None, dict[str, Any]]:
    """Find the interactive element ``action_id`` in a message's blocks."""
    for block in (message or {}).get("blocks") or []:
        if not isinstance(block, dict):
            continue
        candidates = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            candidates.append(block["accessory"])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return block.get("block_id"), element
    return None, {}


def block_actions(
    action_id: str,
    value: str | None = None,
    *,
    signing_secret: str,
    timestamp: int | None = None,
    stale: bool = False,
    wrong_secret: bool = False,
    tampered: bool = False,
    **fields: Unpack[BlockActionsFields],
) -> SignedRequest:
    """Return a signed HTTP-mode ``block_actions`` request (form body ``payload=<json>``)."""
    return sign(
        interactive_body(block_actions_payload(action_id, value, **fields)),
        signing_secret=signing_secret,
        timestamp=timestamp,
        stale=stale,
        wrong_secret=wrong_secret,
        tampered=tampered,
    )


# ---------------------------------------------------------------------------
# view submissions (a modal's submit button)


class ViewSubmissionFields(TypedDict, total=False):
    """Optional fields of a ``view_submission`` payload."""

    user_id: str
    user_name: str
    team_id: str
    team_domain: str
    api_app_id: str
    view_id: str
    view_hash: str
    private_metadata: str
    blocks: list[dict[str, Any]]
    title: str
    external_id: str
    response_urls: list[dict[str, Any]]
    trigger_id: str


def view_submission_payload(
    callback_id: str,
    values: dict[str, dict[str, Any]] | None = None,
    **fields: Unpack[ViewSubmissionFields],
) -> dict[str, Any]:
    """Return the payload of a ``view_submission`` interaction.

    ``values`` is the modal's ``state.values``: ``{block_id: {action_id: {"type": ...,
    "value": ...}}}``, as Slack reports what the user entered.
    """
    team_id = fields.get("team_id", DEFAULT_TEAM_ID)
    user_id = fields.get("user_id", DEFAULT_USER_ID)
    user_name = fields.get("user_name", DEFAULT_USER_NAME)
    app_id = fields.get("api_app_id", DEFAULT_API_APP_ID)
    view_id = fields.get("view_id") or "V" + secrets.token_hex(5).upper()
    view = {
        "id": view_id,
        "team_id": team_id,
        "type": "modal",
        "blocks": fields.get("blocks", []),
        "private_metadata": fields.get("private_metadata", ""),
        "callback_id": callback_id,
        "state": {"values": values or {}},
        "hash": fields.get("view_hash") or f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": {"type": "plain_text", "text": fields.get("title", "Canary"), "emoji": True},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": app_id,
        "external_id": fields.get("external_id", ""),
        "app_installed_team_id": team_id,
        "bot_id": DEFAULT_BOT_ID,
    }
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": fields.get("team_domain", DEFAULT_TEAM_DOMAIN)},
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": app_id,
        "token": _VERIFICATION_TOKEN,
        "trigger_id": fields.get("trigger_id") or make_trigger_id(),
        "view": view,
        "response_urls": fields.get("response_urls", []),
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_submission(
    callback_id: str,
    values: dict[str, dict[str, Any]] | None = None,
    *,
    signing_secret: str,
    timestamp: int | None = None,
    stale: bool = False,
    wrong_secret: bool = False,
    tampered: bool = False,
    **fields: Unpack[ViewSubmissionFields],
) -> SignedRequest:
    """Return a signed HTTP-mode ``view_submission`` request (form body ``payload=<json>``)."""
    return sign(
        interactive_body(view_submission_payload(callback_id, values, **fields)),
        signing_secret=signing_secret,
        timestamp=timestamp,
        stale=stale,
        wrong_secret=wrong_secret,
        tampered=tampered,
    )


def _ts_now() -> str:
    now = time.time()
    return f"{int(now)}.{int((now % 1) * 1_000_000):06d}"
