"""The fake's state: the workspace, everything posted to it, and the call records.

One :class:`SlackState` is shared by the HTTP handlers and the Web API methods. Its lock
guards every field; the methods here expect the caller to hold it.
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sandbox.slack_fake.blocks import check_blocks
from sandbox.slack_fake.errors import ApiError
from sandbox.slack_fake.faults import Faults
from sandbox.slack_fake.params import str_param
from sandbox.slack_fake.records import (
    JSON,
    Message,
    PendingFile,
    RecordedCall,
    ResponseUrl,
    ResponseUrlPost,
    UploadedFile,
)
from sandbox.slack_fake.workspace import (
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    SlackChannel,
    SlackUser,
    SlackUserGroup,
)
from sandbox.slack_socket_mode import SocketModeEndpoint

MESSAGE_TEXT_LIMIT = 40_000

# A Web API method: the state and the call's parameters in, the fields of an ok answer out.
WebApiMethod = Callable[["SlackState", JSON], JSON]


class SlackState:
    """The workspace and its app, what was posted, and every call (callers hold ``lock``)."""

    def __init__(
        self,
        *,
        users: Iterable[SlackUser],
        channels: Iterable[SlackChannel],
        usergroups: Iterable[SlackUserGroup],
        bot_token: str,
        app_token: str,
        team_id: str,
        team_domain: str,
        app_id: str,
        trigger_ttl: float | None,
        clock: Callable[[], float],
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.team_domain = team_domain
        self.app_id = app_id
        self.bot_user_id = BOT_USER_ID
        self.bot_id = BOT_ID
        self.trigger_ttl = trigger_ttl
        self.clock = clock
        self.users = {u.id: u for u in users}
        self.channels = {c.id: c for c in channels}
        self.usergroups = {g.id: g for g in usergroups}
        self.lock = threading.RLock()
        self.socket_mode = SocketModeEndpoint(app_id=app_id, clock=clock)
        # Set once the server listens; upload and response URLs point at it.
        self.base_url = ""
        self.faults = Faults(clock)
        self.reset()

    def reset(self) -> None:
        """Forget every message, call, fault, view, file and response URL."""
        self.calls: list[RecordedCall] = []
        self.messages: dict[str, list[Message]] = {}
        self.ephemerals: list[JSON] = []
        self.response_urls: dict[str, ResponseUrl] = {}
        self.response_url_posts: list[ResponseUrlPost] = []
        self.views: dict[str, JSON] = {}
        self.used_triggers: set[str] = set()
        self.pending_files: dict[str, PendingFile] = {}
        self.files: dict[str, UploadedFile] = {}
        self.faults.clear()
        self._last_ts_us = 0
        self._id_counter = 0

    # -- ids -----------------------------------------------------------------------------

    def new_ts(self) -> str:
        """A message ts: seconds.microseconds, strictly increasing across the fake."""
        # Slack's ts is unique per channel; keeping it increasing across the whole fake
        # makes ordering by ts ordering by time.
        now_us = int(self.clock() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + 100)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def new_id(self, prefix: str) -> str:
        """A fresh object id such as ``V000000001`` (views) or ``F000000002`` (files)."""
        self._id_counter += 1
        return f"{prefix}0{self._id_counter:08X}"

    # -- channels ------------------------------------------------------------------------

    def resolve_channel_id(self, channel: str) -> str:
        """The id of the channel named by id, name or ``#name`` (unchanged if unknown)."""
        name = channel.lstrip("#")
        for c in self.channels.values():
            if c.id == channel or c.name == name:
                return c.id
        return channel

    def channel(self, params: Mapping[str, Any], key: str = "channel") -> SlackChannel:
        """The channel a call names, as the bot can see it; ``channel_not_found`` if not."""
        value = str_param(params, key)
        if value is None:
            raise ApiError("channel_not_found")
        channel = self.channels.get(self.resolve_channel_id(value))
        # A private channel the bot is not in does not exist as far as the bot can tell.
        if channel is None or (channel.is_private and not channel.bot_is_member):
            raise ApiError("channel_not_found")
        return channel

    def postable_channel(self, params: Mapping[str, Any], key: str = "channel") -> SlackChannel:
        """The channel a call names, if the bot may post there."""
        channel = self.channel(params, key)
        if channel.is_archived:
            raise ApiError("is_archived")
        if not channel.bot_is_member:
            raise ApiError("not_in_channel")
        return channel

    # -- messages ------------------------------------------------------------------------

    def find(self, channel_id: str, ts: str) -> Message | None:
        """The message ``ts`` in the channel, deleted or not."""
        for msg in self.messages.get(channel_id, []):
            if msg.ts == ts:
                return msg
        return None

    def store(self, msg: Message) -> None:
        """Add a message to its channel."""
        self.messages.setdefault(msg.channel, []).append(msg)

    def replies(self, root: Message) -> list[Message]:
        """The replies in the thread ``root`` starts, oldest first."""
        return [
            m
            for m in self.messages.get(root.channel, [])
            if m.thread_ts == root.ts and m.ts != root.ts and not m.deleted
        ]

    def render(self, msg: Message) -> JSON:
        """A copy of the message as ``conversations.history`` would return it."""
        data = copy.deepcopy(msg.data)
        replies = self.replies(msg)
        if replies:
            # Thread roots carry the thread summary, as conversations.history shows it.
            data["thread_ts"] = msg.ts
            data["reply_count"] = len(replies)
            data["reply_users"] = sorted({str(r.data.get("user")) for r in replies})
            data["reply_users_count"] = len(data["reply_users"])
            data["latest_reply"] = replies[-1].ts
        return data

    def thread_root(self, channel_id: str, thread_ts: str | None) -> Message | None:
        """The root of the thread ``thread_ts`` names; ``thread_not_found`` if none."""
        if thread_ts is None:
            return None
        root = self.find(channel_id, thread_ts)
        if root is None or root.deleted:
            raise ApiError("thread_not_found")
        # A reply's ts names the same thread as its root's.
        if root.thread_ts is not None and root.thread_ts != root.ts:
            parent = self.find(channel_id, root.thread_ts)
            if parent is not None:
                return parent
        return root

    def bot_message(self, ts: str, content: JSON) -> JSON:
        """A message the bot posts, with the fields Slack adds."""
        return {
            "user": self.bot_user_id,
            "type": "message",
            "ts": ts,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": content.get("text", ""),
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": BOT_NAME,
                "deleted": False,
                "team_id": self.team_id,
            },
            **{k: v for k, v in content.items() if k != "text"},
        }

    def apply_update(self, msg: Message, content: JSON) -> None:
        """Update a message in place and keep the new version."""
        # Fields not given keep their value, as chat.update keeps unspecified blocks.
        msg.data.update(content)
        msg.data["edited"] = {"user": self.bot_user_id, "ts": self.new_ts()}
        msg.versions.append(copy.deepcopy(msg.data))


def message_content(params: Mapping[str, Any], *, required: bool) -> JSON:
    """Validate text/blocks/attachments; return those given."""
    content: JSON = {}
    text = params.get("text")
    if text is not None:
        if not isinstance(text, str):
            text = str(text)
        if len(text) > MESSAGE_TEXT_LIMIT:
            raise ApiError("msg_too_long")
        content["text"] = text
    if "blocks" in params and params["blocks"] is not None:
        blocks = params["blocks"]
        if not isinstance(blocks, list):
            raise ApiError("invalid_blocks_format")
        check_blocks(blocks)
        content["blocks"] = [with_block_id(b) for b in blocks]
    if "attachments" in params and params["attachments"] is not None:
        attachments = params["attachments"]
        if not isinstance(attachments, list):
            raise ApiError("invalid_attachments")
        if len(attachments) > 100:
            raise ApiError("too_many_attachments")
        for a in attachments:
            if isinstance(a, dict) and "blocks" in a:
                check_blocks(a["blocks"])
        content["attachments"] = attachments
    if required and not (
        content.get("text") or content.get("blocks") or content.get("attachments")
    ):
        raise ApiError("no_text")
    return content


def with_block_id(block: Any) -> Any:
    """The block with a ``block_id``: Slack fills one in for blocks sent without."""
    if isinstance(block, dict) and "block_id" not in block:
        return {**block, "block_id": secrets.token_urlsafe(4)}
    return block
