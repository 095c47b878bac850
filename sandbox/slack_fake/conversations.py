"""The ``conversations.*`` family (``conversations.info``)."""

from __future__ import annotations

from sandbox import slack_requests
from sandbox.slack_fake.params import truthy
from sandbox.slack_fake.records import JSON
from sandbox.slack_fake.state import SlackState, WebApiMethod


def info(slack: SlackState, params: JSON) -> JSON:
    """``conversations.info``: a channel as the bot sees it."""
    channel = slack.channel(params)
    created = 1_700_000_000
    info: JSON = {
        "id": channel.id,
        "name": channel.name,
        "name_normalized": channel.name,
        "is_channel": not channel.is_private,
        "is_group": channel.is_private,
        "is_im": False,
        "is_mpim": False,
        "is_private": channel.is_private,
        "is_archived": channel.is_archived,
        "is_general": False,
        "is_shared": False,
        "is_ext_shared": False,
        "is_org_shared": False,
        "is_member": channel.bot_is_member,
        "created": created,
        "creator": slack_requests.DEFAULT_USER_ID,
        "topic": {"value": channel.topic, "creator": "", "last_set": 0},
        "purpose": {"value": channel.purpose, "creator": "", "last_set": 0},
    }
    if truthy(params.get("include_num_members")):
        members = channel.members if channel.members is not None else slack.users.keys()
        info["num_members"] = len(members)
    return {"channel": info}


METHODS: dict[str, WebApiMethod] = {"conversations.info": info}
