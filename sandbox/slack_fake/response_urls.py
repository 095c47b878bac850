"""``response_url`` posts: replies to a slash command or a click, with Slack's limits.

A URL takes 5 posts and lives 30 minutes; ``replace_original`` and ``delete_original``
act on the message clicked, or for a slash command on the last ephemeral posted through
the URL; ``response_type: in_channel`` posts a message everyone sees.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.slack_fake.errors import ApiError
from sandbox.slack_fake.params import truthy
from sandbox.slack_fake.records import Message
from sandbox.slack_fake.state import SlackState, message_content

RESPONSE_URL_MAX_POSTS = 5
RESPONSE_URL_TTL = 30 * 60.0


def post(slack: SlackState, url: str, body: Any) -> tuple[int, str | None]:
    """Apply one POST to a ``response_url``; return the HTTP status and the error, if any."""
    hook = slack.response_urls.get(url)
    if hook is None:
        return 404, "no_service"
    if slack.clock() - hook.issued_at > RESPONSE_URL_TTL:
        return 404, "expired_url"
    if hook.posts >= RESPONSE_URL_MAX_POSTS:
        return 404, "used_url"
    if not isinstance(body, dict):
        return 400, "invalid_payload"
    hook.posts += 1
    original = None if hook.message_ts is None else slack.find(hook.channel, hook.message_ts)
    if truthy(body.get("delete_original")):
        if original is not None and not original.deleted:
            original.deleted = True
            return 200, None
        if hook.last_ephemeral is not None:
            slack.ephemerals[hook.last_ephemeral]["deleted"] = True
            return 200, None
        return 404, "message_not_found"
    try:
        content = message_content(body, required=True)
    except ApiError as exc:
        return 400, exc.error
    if truthy(body.get("replace_original")):
        if original is not None and not original.deleted:
            slack.apply_update(original, content)
            return 200, None
        if hook.last_ephemeral is not None:
            slack.ephemerals[hook.last_ephemeral].update(content)
            return 200, None
    if body.get("response_type") == "in_channel":
        ts = slack.new_ts()
        data = slack.bot_message(ts, content)
        thread_ts = body.get("thread_ts")
        if isinstance(thread_ts, str) and slack.find(hook.channel, thread_ts) is not None:
            data["thread_ts"] = thread_ts
        slack.store(Message(hook.channel, ts, data, versions=[copy.deepcopy(data)]))
        return 200, None
    slack.ephemerals.append(
        {
            "channel": hook.channel,
            "user": hook.user,
            "message_ts": slack.new_ts(),
            "thread_ts": body.get("thread_ts"),
            "via": "response_url",
            "response_url": url,
            "text": content.get("text", ""),
            **{k: v for k, v in content.items() if k != "text"},
        }
    )
    hook.last_ephemeral = len(slack.ephemerals) - 1
    return 200, None
