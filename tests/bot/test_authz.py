"""Authorization: per namespace and verb, users and user groups, deny by default."""

from __future__ import annotations

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.authz import Authorizer, SlackGroupDirectory
from bot.config import parse_config
from bot.render.slack_reply import slack_text
from sandbox.slack_fake import SlackFake

RULES = parse_config(
    """
authorization:
  rules:
    - namespaces: ["test", "staging-*"]
      verbs: [start, abort, promote]
      users: [U0BOB]
    - namespaces: ["*"]
      verbs: ["*"]
      groups: [S0SRE]
    - namespaces: ["test"]
      verbs: [pause, resume]
      groups: [S0DEVS]
"""
).authorization


class Groups:
    """A directory that counts lookups."""

    def __init__(self, members: dict[str, frozenset[str]]) -> None:
        self.members_of = members
        self.lookups: list[str] = []

    async def members(self, group: str) -> frozenset[str]:
        self.lookups.append(group)
        return self.members_of.get(group, frozenset())


GROUPS = {"S0SRE": frozenset({"U0ALICE"}), "S0DEVS": frozenset({"U0CAROL"})}


@pytest.mark.parametrize(
    ("user", "namespace", "verb", "allowed"),
    [
        ("U0BOB", "test", "abort", True),
        ("U0BOB", "staging-eu", "start", True),
        ("U0BOB", "test", "approve", False),
        ("U0BOB", "prod", "abort", False),
        ("U0ALICE", "prod", "approve", True),
        ("U0CAROL", "test", "pause", True),
        ("U0CAROL", "test", "abort", False),
        ("U0CAROL", "staging-eu", "pause", False),
        ("U0MALLORY", "test", "pause", False),
    ],
)
async def test_rules(user: str, namespace: str, verb: str, allowed: bool) -> None:
    authorizer = Authorizer(RULES, Groups(GROUPS))
    assert await authorizer.allowed(user, namespace, verb) is allowed  # type: ignore[arg-type]


async def test_nothing_configured_denies_everything() -> None:
    authorizer = Authorizer(parse_config("").authorization, Groups(GROUPS))
    refused = await authorizer.refusal("U0ALICE", "test", "abort")
    assert refused is not None
    refusal = slack_text(refused)
    assert "not allowed to abort releases in namespace test" in refusal
    assert "authorization.rules" in refusal


async def test_a_listed_user_needs_no_group_lookup() -> None:
    groups = Groups(GROUPS)
    assert await Authorizer(RULES, groups).allowed("U0BOB", "test", "abort")
    assert groups.lookups == []


async def test_refusal_names_the_groups_to_join() -> None:
    refused = await Authorizer(RULES, Groups(GROUPS)).refusal("U0MALLORY", "test", "pause")
    assert refused is not None
    refusal = slack_text(refused)
    assert "<!subteam^S0DEVS>" in refusal and "<!subteam^S0SRE>" in refusal


async def test_slack_group_membership_is_read_and_cached(slack_fake: SlackFake) -> None:
    client = AsyncWebClient(token=slack_fake.bot_token, base_url=slack_fake.api_url)
    directory = SlackGroupDirectory(client)
    assert "U0ALICE" in await directory.members("S0SRE")
    assert "U0ALICE" in await directory.members("S0SRE")
    assert len(slack_fake.calls("usergroups.users.list")) == 1
    assert await directory.members("S0NOSUCH") == frozenset()


async def test_a_star_rule_does_not_grant_skip_analysis() -> None:
    rules = parse_config(
        """
authorization:
  rules:
    - namespaces: ["*"]
      verbs: ["*"]
      groups: [S0SRE]
    - namespaces: ["test"]
      verbs: [skip-analysis]
      users: [U0BOB]
"""
    ).authorization
    authorizer = Authorizer(rules, Groups(GROUPS))
    assert await authorizer.allowed("U0ALICE", "test", "start")
    assert not await authorizer.allowed("U0ALICE", "test", "skip-analysis")
    assert await authorizer.allowed("U0BOB", "test", "skip-analysis")
    assert not await authorizer.allowed("U0BOB", "prod", "skip-analysis")
    refused = await authorizer.refusal("U0ALICE", "prod", "skip-analysis")
    assert refused is not None
    assert slack_text(refused) == (
        ":no_entry: You are not allowed to start releases that skip the analysis in namespace "
        "prod; ask an admin to add you to an `authorization.rules` entry for namespace prod "
        'and verb skip-analysis in the canary-bot config (a rule with verbs ["*"] does not '
        "grant skip-analysis: it must be named)."
    )
