"""The fake workspace: its people, channels and user groups, and the app's identity."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import slack_requests

DEFAULT_BOT_TOKEN = "xoxb-0000000000-fake-canary-bot-token"
DEFAULT_APP_TOKEN = "xapp-1-A0CANARYBOT-0000-fake-app-level-token"
BOT_USER_ID = slack_requests.DEFAULT_BOT_USER_ID
BOT_ID = slack_requests.DEFAULT_BOT_ID
BOT_NAME = "canary-bot"


@dataclass(frozen=True)
class SlackUser:
    """A member of the fake workspace."""

    id: str
    name: str
    real_name: str = ""
    email: str = ""
    is_admin: bool = False
    is_bot: bool = False
    deleted: bool = False
    tz: str = "Europe/Amsterdam"


@dataclass(frozen=True)
class SlackChannel:
    """A conversation. ``members=None`` means every user of the workspace is a member."""

    id: str
    name: str
    is_private: bool = False
    is_archived: bool = False
    bot_is_member: bool = True
    members: frozenset[str] | None = None
    topic: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class SlackUserGroup:
    """A user group (``@handle``); disabled groups only show with ``include_disabled``."""

    id: str
    handle: str
    name: str
    users: tuple[str, ...] = ()
    description: str = ""
    enabled: bool = True


DEFAULT_USERS: tuple[SlackUser, ...] = (
    SlackUser(
        slack_requests.DEFAULT_USER_ID,
        slack_requests.DEFAULT_USER_NAME,
        "Alice Admin",
        "alice@example.com",
        is_admin=True,
    ),
    SlackUser("U0BOB", "bob", "Bob Builder", "bob@example.com"),
    SlackUser("U0CAROL", "carol", "Carol Coder", "carol@example.com"),
    SlackUser("U0MALLORY", "mallory", "Mallory Outsider", "mallory@example.com"),
)
DEFAULT_CHANNELS: tuple[SlackChannel, ...] = (
    SlackChannel(slack_requests.DEFAULT_CHANNEL_ID, slack_requests.DEFAULT_CHANNEL_NAME),
    SlackChannel("C0ALERTS", "alerts"),
    SlackChannel("C0PRIVATE", "sre-private", is_private=True),
    SlackChannel("C0NOBOT", "random", bot_is_member=False),
    SlackChannel("C0ARCHIVED", "old-deploys", is_archived=True),
)
DEFAULT_USERGROUPS: tuple[SlackUserGroup, ...] = (
    SlackUserGroup("S0SRE", "sre", "SRE", (slack_requests.DEFAULT_USER_ID,)),
    SlackUserGroup("S0DEVS", "devs", "Developers", ("U0BOB", "U0CAROL")),
    SlackUserGroup("S0OLD", "old-oncall", "Former on-call", ("U0BOB",), enabled=False),
)
