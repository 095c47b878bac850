"""Runs canary-bot in-process against the Slack fake, and sends it Slack's requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bot.config import BotConfig, Environment, parse_config
from bot.process import BotProcess
from rollout.kube import Kube
from sandbox.slack_fake import SlackFake
from sandbox.slack_requests import SignedRequest

ALICE = "U0ALICE"  # admin in the fake workspace, member of @sre (S0SRE)
BOB = "U0BOB"  # member of @devs (S0DEVS): may pause and resume only
MALLORY = "U0MALLORY"  # nobody


def config_for(namespace: str, extra: str = "") -> BotConfig:
    """Alice (through @sre) may do everything in ``namespace``; @devs may pause/resume."""
    return parse_config(
        f"""
cluster: sandbox
channels:
  default: C0DEPLOYS
authorization:
  rules:
    - namespaces: ["{namespace}"]
      verbs: ["*"]
      groups: [S0SRE]
    - namespaces: ["{namespace}"]
      verbs: [pause, resume]
      groups: [S0DEVS]
defaults:
  namespace: {namespace}
  profile: quick
  progressDeadlineSeconds: 60
  targetPort: 9898
profiles:
  quick:
    interval: 2s
    threshold: 3
    maxWeight: 30
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange: {{min: 99}}
        interval: 10s
{extra}
"""
    )


def environment(
    fake: SlackFake,
    *,
    signing_secret: str | None = None,
    socket_mode: bool = False,
    kubeconfig: str | None = None,
    prometheus_url: str | None = None,
) -> Environment:
    """Settings as the process would read them from its environment."""
    return Environment(
        slack_bot_token=SecretStr(fake.bot_token),
        slack_app_token=SecretStr(fake.app_token) if socket_mode else None,
        slack_signing_secret=SecretStr(signing_secret) if signing_secret else None,
        slack_api_url=fake.api_url,
        kubeconfig=kubeconfig,
        prometheus_url=prometheus_url,
        canary_bot_config=None,
    )


@asynccontextmanager
async def running_bot(
    env: Environment,
    config: BotConfig,
    kube: Kube,
    *,
    run_engine: bool = False,
    namespace: str | None = None,
) -> AsyncIterator[BotProcess]:
    """A started canary-bot process on a free port; stopped on exit."""
    process = BotProcess(
        env=env,
        config=config,
        registry=CollectorRegistry(),
        port=0,
        metrics_port=0,
        host="127.0.0.1",
        run_engine=run_engine,
        leader_election=False,
        identity="test-bot",
        kube=kube,
        namespace=namespace,
    )
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


async def post_signed(port: int, request: SignedRequest) -> tuple[int, str]:
    """POST a signed Slack request to ``/slack/events``; the HTTP status and body."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/slack/events", data=request.body, headers=request.headers
        ) as response,
    ):
        return response.status, await response.text()


def ephemeral_texts(fake: SlackFake, user: str) -> list[str]:
    """What ``user`` was told privately (response URLs and chat.postEphemeral)."""
    return [str(e.get("text", "")) for e in fake.ephemerals(user=user)]


def first(items: list[Any], predicate: Callable[[Any], bool]) -> Any:
    """The first item matching, or None."""
    return next((item for item in items if predicate(item)), None)
