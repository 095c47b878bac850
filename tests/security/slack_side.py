"""Shared by the Slack-side security tests: a config with bounds, and what Slack was sent."""

from __future__ import annotations

import json

from bot.config import BotConfig, parse_config
from sandbox.slack_fake import SlackFake

NEW = "stefanprodan/podinfo:6.0.3"
OLD = "stefanprodan/podinfo:6.0.0"

# Broadcast mentions and disguised links: none may ever reach Slack as markup.
LIVE_MARKUP = ("<!channel>", "<!here>", "<!everyone>", "<https://evil", "<@U1>")


def bounded_config(
    namespace: str, *, limits: str = "", rules: str = "", channels: str = ""
) -> BotConfig:
    """Alice (@sre) may use every verb in ``namespace`` through ``"*"``; ``limits`` as given.

    The ``steady`` profile has no metrics, so weights advance on schedule and no
    Prometheus is needed; its 20 s interval keeps a release Progressing while a test acts.
    """
    return parse_config(
        f"""
cluster: sandbox
channels:
{channels or "  default: C0DEPLOYS"}
authorization:
  rules:
    - namespaces: ["{namespace}"]
      verbs: ["*"]
      groups: [S0SRE]
{rules}
defaults:
  namespace: {namespace}
  profile: steady
  progressDeadlineSeconds: 60
  targetPort: 9898
profiles:
  steady: {{interval: 20s, threshold: 3, maxWeight: 30, stepWeight: 10}}
  hasty: {{interval: 5s, threshold: 3, maxWeight: 100, stepWeight: 100}}
limits:
{limits or "  []"}
"""
    )


def posted(fake: SlackFake) -> list[str]:
    """Everything sent to Slack as message content (posts, updates, ephemerals), as JSON."""
    sent = [
        json.dumps(call.params, ensure_ascii=False)
        for call in fake.calls()
        if call.method in ("chat.postMessage", "chat.update", "chat.postEphemeral")
    ]
    sent += [json.dumps(post.body, ensure_ascii=False) for post in fake.response_url_posts()]
    return sent


def assert_no_live_markup(fake: SlackFake) -> None:
    """No message canary-bot sent holds a broadcast mention or a disguised link."""
    for text in posted(fake):
        for live in LIVE_MARKUP:
            assert live not in text, f"{live} reached Slack as markup in {text[:400]}"
