"""Text canary-bot did not write, made safe for Slack's mrkdwn: the one place it happens.

Slack reads ``<…>`` in message text as markup: ``<!channel>`` notifies a whole channel,
``<@U…>`` mentions a person, ``<https://x|label>`` disguises a link. Release names,
reasons, requester names, status and event messages, webhook and metric messages and
image names all come from people or the cluster, so every rendering into Slack text
passes them through ``escape`` (Slack's own rule: ``&``, ``<`` and ``>`` as entities,
which Slack shows as the plain characters). Mentions are built only by ``mention``, and
only from ids that look like Slack user ids.

Plain-text fields (headers, buttons, form labels) are not parsed for markup and take the
text as it is; so does the console.
"""

from __future__ import annotations

import re

# Slack user ids: U… for users, W… for Enterprise Grid users.
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


def escape(text: str) -> str:
    """``text`` with ``&``, ``<`` and ``>`` as Slack's entities: shown as typed, never markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def is_user_id(value: str) -> bool:
    """Whether ``value`` is a well-formed Slack user id (``U012ABCDE``, ``W012ABCDE``)."""
    return _USER_ID.match(value) is not None


def mention(user: str, fallback: str = "") -> str:
    """``<@U…>`` for a valid user id; anything else as escaped plain text.

    ``fallback`` (e.g. the user name) is shown when ``user`` is not an id; with neither,
    the result is empty.
    """
    if is_user_id(user):
        return f"<@{user}>"
    return escape(fallback or user)


def code(text: str) -> str:
    """``text`` as inline code: escaped, and without backticks that would end the span."""
    return "`" + escape(text.replace("`", "'")) + "`"
