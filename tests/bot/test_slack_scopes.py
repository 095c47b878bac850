"""The Slack app asks for exactly the scopes the bot uses.

bot/slack_scopes.py names every Web API method the bot calls and the scope each needs.
The manifest must request exactly those scopes; an end-to-end rollout (slash command,
card, thread replies, an alert, user-group checks and the chart upload) must call only
methods in that table, so a new call without its scope fails here, not in a workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.slack_scopes import APP_TOKEN_METHODS, METHODS, bot_scopes
from rollout.kube import Kube
from rollout.models import Phase
from rollout.store import ReleaseStore
from sandbox.slack_fake import SlackFake
from tests.bot.harness import config_for, environment, post_signed, running_bot
from tests.fixtures.slack import SlackRequests, eventually

ROOT = Path(__file__).resolve().parents[2]
NEW = "stefanprodan/podinfo:6.0.3"


def manifest_scopes() -> list[str]:
    manifest = yaml.safe_load((ROOT / "manifests" / "slack-app.yaml").read_text())
    scopes: list[str] = manifest["oauth_config"]["scopes"]["bot"]
    return scopes


def test_manifest_requests_exactly_the_scopes_the_bot_needs() -> None:
    requested = manifest_scopes()
    assert len(requested) == len(set(requested)), "a scope is listed twice"
    assert set(requested) - bot_scopes() == set(), "requested but never used"
    assert bot_scopes() - set(requested) == set(), "used but not requested"
    assert "users:read" not in requested


def test_every_scope_is_explained_in_the_slack_docs() -> None:
    text = (ROOT / "docs" / "slack.md").read_text()
    for scope in sorted(bot_scopes() | {"connections:write"}):
        assert f"`{scope}`" in text, f"docs/slack.md does not explain {scope}"


@pytest.mark.cluster
@pytest.mark.prometheus
async def test_a_whole_rollout_calls_only_methods_in_the_scope_table(
    kube: Kube,
    podinfo: str,
    traffic: Any,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    sim.set_side("canary", error_rate=0.5)  # a rollback: the alert path runs too
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with running_bot(
        env, config_for(namespace), kube, run_engine=True, namespace=namespace
    ) as bot:
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        await eventually(slack_fake.files, within=150, interval=0.5, message="no chart uploaded")
    [release] = await ReleaseStore(kube).list_objects(namespace)
    assert release.status.phase == Phase.FAILED

    called = {c.method for c in slack_fake.calls()}
    # the run used the card, its updates, the alert's permalink, groups and the chart
    assert {
        "chat.postMessage",
        "chat.update",
        "chat.getPermalink",
        "usergroups.users.list",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    } <= called
    assert called - set(METHODS) - APP_TOKEN_METHODS == set(), "a method missing from the table"
