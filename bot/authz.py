"""Who may steer releases where: config rules, Slack user groups, and the refusal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import EXPLICIT_VERBS, Authorization, Verb
from bot.reply import Code, Group, Icon, Reply, Span, reply

log = logging.getLogger("canary_bot.authz")


class GroupDirectory(Protocol):
    """Looks up the members of a Slack user group."""

    async def members(self, group: str) -> frozenset[str]:
        """User ids in ``group`` (empty when it cannot be read)."""
        ...


class SlackGroupDirectory:
    """``usergroups.users.list`` with a short cache: membership changes are rare."""

    def __init__(
        self,
        client: AsyncWebClient,
        ttl_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def members(self, group: str) -> frozenset[str]:
        """Members of ``group``; a failed lookup counts as no members (deny, never allow)."""
        cached = self._cache.get(group)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        try:
            response = await self._client.usergroups_users_list(usergroup=group)
            users = frozenset(str(u) for u in response.get("users") or [])
        except SlackApiError as exc:
            log.warning("cannot read user group %s: %s", group, exc.response.get("error"))
            return frozenset()
        self._cache[group] = (self._clock(), users)
        return users


class Authorizer:
    """Decides per namespace and verb; denies when no rule allows."""

    def __init__(
        self,
        rules: Authorization,
        groups: GroupDirectory,
        cluster: str = "",
        *,
        named: bool = False,
    ) -> None:
        """``cluster``: where the rules are applied (rules may name clusters);
        ``named``: refusals say which cluster (a front serving several)."""
        self._rules = rules
        self._groups = groups
        self._cluster = cluster
        self._named = named

    async def allowed(self, user: str, namespace: str, verb: Verb) -> bool:
        """Whether ``user`` may ``verb`` in ``namespace`` (of this authorizer's cluster)."""
        rules = self._rules.rules_for(namespace, verb, self._cluster)
        if any(user in rule.users for rule in rules):
            return True
        for rule in rules:
            for group in rule.groups:
                if user in await self._groups.members(group):
                    return True
        return False

    async def refusal(self, user: str, namespace: str, verb: Verb) -> Reply | None:
        """None when allowed; else the ephemeral reply that says how to get access."""
        if await self.allowed(user, namespace, verb):
            return None
        return refusal_reply(self._rules, namespace, verb, self._cluster, named=self._named)


def refusal_reply(
    rules: Authorization, namespace: str, verb: Verb, cluster: str = "", *, named: bool = False
) -> Reply:
    """What a refused person reads: what was refused and whom to ask for what.

    ``named`` (a front serving several clusters): the refusal says which cluster."""
    where = f"namespace {namespace} of cluster {cluster}" if named else f"namespace {namespace}"
    groups = sorted({g for rule in rules.rules_for(namespace, verb, cluster) for g in rule.groups})
    ask: list[Span] = ["ask an admin to add you to "]
    if groups:
        ask += [span for g in groups for span in (" or ", Group(g))][1:]
    else:
        ask += [
            "an ",
            Code("authorization.rules"),
            f" entry for {where} and verb {verb} in the canary-bot config",
        ]
        if verb in EXPLICIT_VERBS:
            ask.append(f' (a rule with verbs ["*"] does not grant {verb}: it must be named)')
    doing = _DOING.get(verb, f"{verb} releases")
    return reply(
        "refused",
        Icon(":no_entry:"),
        f"You are not allowed to {doing} in {where}; ",
        *ask,
        ".",
    )


# How a refusal words a verb that is not a plain "<verb> releases".
_DOING: dict[Verb, str] = {"skip-analysis": "start releases that skip the analysis"}
