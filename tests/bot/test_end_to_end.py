"""The whole process: signed Slack requests in, real control plane and Prometheus,
simulated traffic, and the thread people read in the Slack fake."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s

from rollout.kube import Kube
from rollout.models import CanaryRelease, Phase
from rollout.store import ReleaseStore
from sandbox.slack_fake import SlackFake
from tests.bot.harness import config_for, environment, post_signed, running_bot
from tests.fixtures.slack import SlackRequests, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

CHANNEL = "C0DEPLOYS"
NEW = "stefanprodan/podinfo:6.0.3"


async def only_release(store: ReleaseStore, namespace: str) -> CanaryRelease:
    releases = await eventually(lambda: store.list_objects(namespace), message="no release")
    assert len(releases) == 1
    return releases[0]


async def finished(store: ReleaseStore, namespace: str, name: str, within: float) -> CanaryRelease:
    async def final() -> CanaryRelease | None:
        release = await store.get(namespace, name)
        return release if release is not None and release.status.phase.is_final else None

    return await eventually(final, within=within, interval=0.2, message=f"{name} did not finish")


def thread_of(fake: SlackFake) -> tuple[str, list[dict[str, Any]]]:
    """The one card in the channel (roots only) and its thread."""
    roots = [m for m in fake.messages(CHANNEL) if m.get("text", "").startswith("Canary ")]
    assert len(roots) == 1, [m.get("text") for m in fake.messages(CHANNEL)]
    return roots[0]["ts"], fake.thread(CHANNEL, roots[0]["ts"])


def card_says(fake: SlackFake, ts: str, *words: str) -> bool:
    card = json.dumps(fake.message(CHANNEL, ts), ensure_ascii=False)
    return all(word in card for word in words)


async def test_slash_command_release_promotes_with_one_threaded_card(
    kube: Kube,
    podinfo: str,
    traffic: Any,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    traffic(namespace, "podinfo", "podinfo", rps=40)
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with running_bot(
        env, config_for(namespace), kube, run_engine=True, namespace=namespace
    ) as bot:
        status, _ = await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        assert status == 200
        release = await only_release(store, namespace)
        release = await finished(store, namespace, release.metadata.name, within=120)
        assert release.status.phase == Phase.SUCCEEDED, release.status.message
        ts, thread = thread_of(slack_fake)
        await eventually(
            lambda: card_says(slack_fake, ts, "Succeeded", "took "),
            message="the final card does not say Succeeded with its duration",
        )
    replies = [m["text"] for m in thread[1:]]
    assert replies, "no event replies in the thread"
    assert slack_fake.updates_of(CHANNEL, ts), "the card was never updated in place"
    # every reply is in the one thread; nothing else went to the channel
    assert [m["ts"] for m in slack_fake.messages(CHANNEL)] == [ts]
    assert not card_says(slack_fake, ts, '"actions"'), "a finished card still has buttons"


async def test_http_500s_roll_back_and_alert_the_channel(
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
    sim.set_side("canary", error_rate=0.5)
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with running_bot(
        env, config_for(namespace), kube, run_engine=True, namespace=namespace
    ) as bot:
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        release = await only_release(store, namespace)
        release = await finished(store, namespace, release.metadata.name, within=120)
        assert release.status.phase == Phase.FAILED

        def alerts() -> list[dict[str, Any]]:
            return [
                m for m in slack_fake.messages(CHANNEL) if ":rotating_light:" in m.get("text", "")
            ]

        [alert] = await eventually(alerts, message="no failure alert in the channel")
        ts, thread = thread_of(slack_fake)
        await eventually(lambda: card_says(slack_fake, ts, "Failed"))
    assert "<@U0ALICE>" in alert["text"]
    assert "/archives/" in json.dumps(alert["blocks"]), "the alert does not link the thread"
    replies = "\n".join(m["text"] for m in thread[1:])
    assert "request-success-rate" in replies, replies
    measured = next(m for m in release.status.metrics if m.name == "request-success-rate")
    assert measured.value is not None
    assert f"{measured.value:.4g}"[:2] in replies, "the measured success rate is not shown"


@pytest.mark.parametrize(
    ("button", "final"), [("abort", Phase.FAILED), ("promote", Phase.SUCCEEDED)]
)
async def test_card_buttons_steer_the_release(
    button: str,
    final: Phase,
    kube: Kube,
    podinfo: str,
    traffic: Any,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    traffic(namespace, "podinfo", "podinfo", rps=40)
    store = ReleaseStore(kube)
    slow = config_for(namespace).model_copy(deep=True)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with running_bot(env, slow, kube, run_engine=True, namespace=namespace) as bot:
        await post_signed(
            bot.bound_port,
            slack_requests.slash_command(text=f"start podinfo image={NEW} --max 90 --interval 5s"),
        )
        release = await only_release(store, namespace)

        async def progressing() -> bool:
            current = await store.get(namespace, release.metadata.name)
            return current is not None and current.status.phase == Phase.PROGRESSING

        # promote is offered from the start but refused until the canary runs
        await eventually(progressing, within=60, message="the release never progressed")

        def card_with_button() -> str | None:
            roots = [
                m for m in slack_fake.messages(CHANNEL) if m.get("text", "").startswith("Canary ")
            ]
            if roots and f"canary_{button}" in json.dumps(roots[0].get("blocks")):
                return str(roots[0]["ts"])
            return None

        ts = await eventually(card_with_button, within=60, message=f"no {button} button")
        value = next(
            e["value"]
            for b in slack_fake.message(CHANNEL, ts)["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == f"canary_{button}"
        )
        click = slack_requests.block_actions(f"canary_{button}", value, message_ts=ts)
        assert (await post_signed(bot.bound_port, click))[0] == 200
        release = await finished(store, namespace, release.metadata.name, within=90)
        verb = {"abort": "aborted", "promote": "promoted"}[button]
        audit = f":joystick: {verb} by <@U0ALICE>"

        def audit_line() -> list[str] | None:
            # posted by the click's handler, paced per channel: it may follow the end
            replies = [m["text"] for m in slack_fake.thread(CHANNEL, ts)[1:]]
            return replies if audit in replies else None

        await eventually(audit_line, within=30, message=f"no audit line {audit!r} in the thread")
    assert release.status.phase == final, release.status.message
    assert [a.action for a in release.status.audit] == [button]


async def test_promote_clicked_before_the_canary_runs_is_refused_in_the_thread(
    kube: Kube,
    kube_api_client: Any,
    podinfo: str,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    # the namespace may run only the two stable pods: the canary never becomes ready
    k8s.CoreV1Api(kube_api_client).create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "two-pods"}, "spec": {"hard": {"pods": "2"}}}
    )
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with running_bot(
        env, config_for(namespace), kube, run_engine=True, namespace=namespace
    ) as bot:
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        release = await only_release(store, namespace)

        def card_ts() -> str | None:
            roots = [
                m for m in slack_fake.messages(CHANNEL) if m.get("text", "").startswith("Canary ")
            ]
            blocks = json.dumps(roots[0].get("blocks")) if roots else ""
            return str(roots[0]["ts"]) if "canary_promote" in blocks else None

        ts = await eventually(card_ts, within=60, message="no promote button")
        value = next(
            e["value"]
            for b in slack_fake.message(CHANNEL, ts)["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == "canary_promote"
        )
        click = slack_requests.block_actions("canary_promote", value, message_ts=ts)
        assert (await post_signed(bot.bound_port, click))[0] == 200

        refused = "refused: the canary is not ready yet; try again once it runs"

        def told() -> bool:
            replies = [m["text"] for m in slack_fake.thread(CHANNEL, ts)[1:]]
            return any(t.startswith("Promote by ") and refused in t for t in replies)

        await eventually(told, within=60, message=f"no {refused!r} in the thread")
        current = await store.get(namespace, release.metadata.name)
        assert current is not None and not current.status.phase.is_final
        assert [(a.action, a.result) for a in current.status.audit] == [("promote", "refused")]


async def test_approve_clicked_during_the_analysis_pre_approves_the_promotion(
    kube: Kube,
    podinfo: str,
    traffic: Any,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    traffic(namespace, "podinfo", "podinfo", rps=40)
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with running_bot(
        env, config_for(namespace), kube, run_engine=True, namespace=namespace
    ) as bot:
        await post_signed(
            bot.bound_port,
            slack_requests.slash_command(
                text=f"start podinfo image={NEW} --approval --max 30 --interval 5s"
            ),
        )
        release = await only_release(store, namespace)

        async def progressing() -> bool:
            current = await store.get(namespace, release.metadata.name)
            return current is not None and current.status.phase == Phase.PROGRESSING

        await eventually(progressing, within=60, message="the release never progressed")

        def approve_value() -> str | None:
            roots = [
                m for m in slack_fake.messages(CHANNEL) if m.get("text", "").startswith("Canary ")
            ]
            for block in roots[0].get("blocks", []) if roots else []:
                for element in block.get("elements", []) if block["type"] == "actions" else []:
                    if element["action_id"] == "canary_approve":
                        return str(element["value"])
            return None

        value = await eventually(approve_value, within=30, message="no approve button")
        ts = thread_of(slack_fake)[0]
        click = slack_requests.block_actions("canary_approve", value, message_ts=ts)
        assert (await post_signed(bot.bound_port, click))[0] == 200
        done = await finished(store, namespace, release.metadata.name, within=120)
    assert done.status.phase == Phase.SUCCEEDED, done.status.message
    [entry] = done.status.audit
    assert (entry.action, entry.result) == ("approve", "applied")
    assert entry.message.startswith("pre-approved by ")
    # it promoted when the analysis passed, without waiting for another approval
    assert not any(e.type == "WaitingApproval" for e in done.status.events)
