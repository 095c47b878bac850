"""Finding 7: nothing a person types or writes into a CanaryRelease becomes Slack markup.

The running bot (HTTP mode, engine on) against the real API server and the Slack fake;
every assertion is on what the fake recorded canary-bot sending.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from rollout.kube import Kube
from rollout.models import CanaryRelease, Phase
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from sandbox.slack_fake import SlackFake
from tests.bot.harness import ALICE, environment, ephemeral_texts, post_signed, running_bot
from tests.deploy.kubectl import Kubectl
from tests.fixtures.slack import SlackRequests, eventually
from tests.security.slack_side import NEW, assert_no_live_markup, bounded_config

pytestmark = pytest.mark.cluster

CHANNEL = "C0DEPLOYS"
ELSEWHERE = "C0ALERTS"  # a real channel the bot is in: picking it would succeed


def roots(fake: SlackFake) -> list[dict[str, Any]]:
    return [m for m in fake.messages(CHANNEL) if str(m.get("text", "")).startswith("Canary ")]


async def final(store: ReleaseStore, namespace: str, name: str) -> CanaryRelease:
    async def done() -> CanaryRelease | None:
        release = await store.get(namespace, name)
        return release if release is not None and release.status.phase.is_final else None

    return await eventually(done, within=60, interval=0.2, message=f"{name} did not finish")


def alerts(fake: SlackFake) -> list[dict[str, Any]]:
    return [m for m in fake.messages(CHANNEL) if ":rotating_light:" in str(m.get("text", ""))]


def replies(fake: SlackFake, ts: str) -> list[str]:
    return [str(m.get("text", "")) for m in fake.thread(CHANNEL, ts)[1:]]


async def test_a_typed_channel_mention_in_an_abort_reason_stays_text(
    kube: Kube,
    podinfo: str,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    config = bounded_config(namespace)
    async with running_bot(env, config, kube, run_engine=True, namespace=namespace) as bot:
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        [root] = await eventually(lambda: roots(slack_fake), within=60, message="no card")
        [release] = await store.list_objects(namespace)
        name = release.metadata.name
        # what Slack sends when someone types: <!channel> wake up <!here> &lt;!everyone&gt; a < b
        typed = "&lt;!channel&gt; wake up &lt;!here&gt; &amp;lt;!everyone&amp;gt; a &lt; b"
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"abort {name} {typed}")
        )
        done = await final(store, namespace, name)
        [alert] = await eventually(lambda: alerts(slack_fake), within=30, message="no alert")
        thread = await eventually(
            lambda: [r for r in replies(slack_fake, root["ts"]) if "Rolling back" in r],
            within=30,
            message="no rollback reply in the thread",
        )
        audit = [r for r in replies(slack_fake, root["ts"]) if r.startswith(":joystick:")]
    assert done.status.phase == Phase.FAILED
    stored = "!channel wake up !here &lt;!everyone&gt; a < b"
    assert done.spec.control_requests[0].reason == stored
    shown = "!channel wake up !here &amp;lt;!everyone&amp;gt; a &lt; b"  # Slack shows `stored`
    assert audit == [f":joystick: aborted by <@{ALICE}>: {shown}"]
    assert f"aborted by alice: {shown}" in thread[0]
    assert f"aborted by alice: {shown}" in json.dumps(alert["blocks"], ensure_ascii=False)
    assert_no_live_markup(slack_fake)


def hostile_release(namespace: str, **requested_by: str) -> str:
    """A CanaryRelease as someone with kubectl might write it."""
    return yaml.safe_dump(
        {
            "apiVersion": "canarybot.io/v1alpha1",
            "kind": "CanaryRelease",
            "metadata": {"name": "podinfo-evil", "namespace": namespace},
            "spec": {
                "targetRef": {"name": "podinfo"},
                "ingressRef": {"name": "podinfo"},
                "images": {"podinfod": NEW},
                "service": {"port": 80, "targetPort": 9898},
                "progressDeadlineSeconds": 60,
                "analysis": {"interval": "20s", "threshold": 3, "maxWeight": 30, "stepWeight": 10},
                "requestedBy": requested_by,
            },
        }
    )


async def test_a_requester_written_with_kubectl_is_plain_text_and_picks_no_channel(
    kube: Kube,
    podinfo: str,
    prometheus: Any,
    control_plane: ControlPlane,
    slack_fake: SlackFake,
    signing_secret: str,
) -> None:
    namespace = podinfo
    kubectl = Kubectl(control_plane.bin_dir / "kubectl", control_plane.kubeconfig)
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    config = bounded_config(namespace)
    async with running_bot(env, config, kube, run_engine=True, namespace=namespace):
        kubectl.run(
            "apply",
            "-f",
            "-",
            stdin=hostile_release(
                namespace, user="U1> <!channel", userName="", channel=ELSEWHERE, source="slack"
            ),
        )
        [root] = await eventually(lambda: roots(slack_fake), within=60, message="no card")
        card = json.dumps(slack_fake.message(CHANNEL, root["ts"])["blocks"], ensure_ascii=False)
        assert "*Requested by*\\nU1&gt; &lt;!channel" in card
        # an abort written into the object: no parser in between, only the rendering
        abort = {
            "id": "kubectl-1",
            "action": "abort",
            "user": "U1> <!channel",
            "userName": "<!here>",
            "reason": "<!channel> <https://evil.example|log in again>",
        }
        kubectl.run(
            "patch",
            "canaryrelease",
            "podinfo-evil",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"controlRequests": [abort]}}),
        )
        done = await final(store, namespace, "podinfo-evil")
        [alert] = await eventually(lambda: alerts(slack_fake), within=30, message="no alert")
        thread = await eventually(
            lambda: [r for r in replies(slack_fake, root["ts"]) if "Rolling back" in r],
            within=30,
            message="no rollback reply in the thread",
        )
    assert done.status.phase == Phase.FAILED
    shown = "aborted by &lt;!here&gt;: &lt;!channel&gt; &lt;https://evil.example|log in again&gt;"
    assert shown in thread[0]
    assert alert["text"].startswith(":rotating_light: U1&gt; &lt;!channel canary ")
    assert shown in alert["text"]
    # requestedBy.channel named a channel the bot could post to; it was never used
    assert [c for c in slack_fake.calls() if c.params.get("channel") == ELSEWHERE] == []
    assert slack_fake.messages(ELSEWHERE) == []
    assert_no_live_markup(slack_fake)


async def test_with_no_route_and_no_default_there_is_no_thread_anywhere(
    kube: Kube,
    podinfo: str,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    channels = '  routes:\n    - namespaces: ["team-nobody-*"]\n      channel: C0DEPLOYS'
    config = bounded_config(namespace, channels=channels)
    async with running_bot(env, config, kube, run_engine=True, namespace=namespace) as bot:
        # typed in ELSEWHERE, so requestedBy.channel is ELSEWHERE too
        await post_signed(
            bot.bound_port,
            slack_requests.slash_command(text=f"start podinfo image={NEW}", channel_id=ELSEWHERE),
        )
        [told] = await eventually(lambda: ephemeral_texts(slack_fake, ALICE), within=20)
        [release] = await store.list_objects(namespace)
        assert release.spec.requested_by.channel == ELSEWHERE

        async def delivered() -> CanaryRelease | None:
            current = await store.get(namespace, release.metadata.name)
            seen = current is not None and current.status.notification.delivered_seq >= 2
            return current if seen else None

        # the engine offered its events and the notifier had nowhere to put them
        current = await eventually(delivered, within=60, interval=0.2, message="no events")
    assert "No channel is configured for this namespace" in told
    assert "so there will be no status thread" in told
    assert current.status.notification.channel == ""
    assert current.status.notification.thread_ts == ""
    assert slack_fake.calls("chat.postMessage") == []
    assert slack_fake.calls("chat.update") == []
    assert slack_fake.messages(ELSEWHERE) == []
