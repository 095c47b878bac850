"""The ``chat.*`` family: post, update and delete messages, ephemerals and permalinks."""

from __future__ import annotations

import copy

from sandbox.slack_fake.errors import ApiError
from sandbox.slack_fake.params import str_param, truthy
from sandbox.slack_fake.records import JSON, Message
from sandbox.slack_fake.state import SlackState, WebApiMethod, message_content
from sandbox.slack_fake.workspace import SlackChannel


def post_message(slack: SlackState, params: JSON) -> JSON:
    """``chat.postMessage``: a message in a channel or a thread."""
    channel = slack.postable_channel(params)
    content = message_content(params, required=True)
    root = slack.thread_root(channel.id, str_param(params, "thread_ts"))
    ts = slack.new_ts()
    data = slack.bot_message(ts, content)
    if root is not None:
        data["thread_ts"] = root.ts
        data["parent_user_id"] = root.data.get("user")
        if truthy(params.get("reply_broadcast")):
            data["subtype"] = "thread_broadcast"
    if isinstance(params.get("metadata"), dict):
        data["metadata"] = params["metadata"]
    slack.store(Message(channel.id, ts, data, versions=[copy.deepcopy(data)]))
    return {"channel": channel.id, "ts": ts, "message": copy.deepcopy(data)}


def _own_message(slack: SlackState, channel: SlackChannel, params: JSON, not_ours: str) -> Message:
    ts = str_param(params, "ts")
    msg = None if ts is None else slack.find(channel.id, ts)
    if msg is None or msg.deleted:
        raise ApiError("message_not_found")
    if msg.data.get("bot_id") != slack.bot_id:
        raise ApiError(not_ours)
    return msg


def update(slack: SlackState, params: JSON) -> JSON:
    """``chat.update``: change one of the bot's messages."""
    channel = slack.channel(params)
    msg = _own_message(slack, channel, params, "cant_update_message")
    slack.apply_update(msg, message_content(params, required=True))
    return {
        "channel": channel.id,
        "ts": msg.ts,
        "text": msg.data.get("text", ""),
        "message": {k: copy.deepcopy(v) for k, v in msg.data.items() if k != "ts"},
    }


def delete(slack: SlackState, params: JSON) -> JSON:
    """``chat.delete``: delete one of the bot's messages."""
    channel = slack.channel(params)
    msg = _own_message(slack, channel, params, "cant_delete_message")
    msg.deleted = True
    return {"channel": channel.id, "ts": msg.ts}


def post_ephemeral(slack: SlackState, params: JSON) -> JSON:
    """``chat.postEphemeral``: a message only one member of the channel sees."""
    channel = slack.postable_channel(params)
    user_id = str_param(params, "user")
    if user_id is None or user_id not in slack.users:
        raise ApiError("user_not_found")
    if channel.members is not None and user_id not in channel.members:
        raise ApiError("user_not_in_channel")
    content = message_content(params, required=True)
    ts = slack.new_ts()
    slack.ephemerals.append(
        {
            "channel": channel.id,
            "user": user_id,
            "message_ts": ts,
            "thread_ts": str_param(params, "thread_ts"),
            "via": "chat.postEphemeral",
            "text": content.get("text", ""),
            **{k: v for k, v in content.items() if k != "text"},
        }
    )
    return {"message_ts": ts}


def get_permalink(slack: SlackState, params: JSON) -> JSON:
    """``chat.getPermalink``: a message's link, with the thread for a reply."""
    channel = slack.channel(params)
    ts = str_param(params, "message_ts")
    msg = None if ts is None else slack.find(channel.id, ts)
    if msg is None or msg.deleted:
        raise ApiError("message_not_found")
    link = f"https://{slack.team_domain}.slack.com/archives/{channel.id}/p{msg.ts.replace('.', '')}"
    if msg.thread_ts is not None and msg.thread_ts != msg.ts:
        link += f"?thread_ts={msg.thread_ts}&cid={channel.id}"
    return {"channel": channel.id, "permalink": link}


METHODS: dict[str, WebApiMethod] = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "chat.postEphemeral": post_ephemeral,
    "chat.getPermalink": get_permalink,
}
