"""Finding 1: flags cannot skip the analysis, and promote cannot skip an approval.

Signed Slack requests go to the running bot; the cluster is the real API server. Each
attack is refused with the message the person sees, and nothing is created.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client as k8s

from rollout.kube import Kube
from rollout.models import CanaryReleaseSpec, ControlRequest, Phase
from rollout.store import ReleaseStore
from sandbox.slack_fake import SlackFake
from tests.bot.harness import ALICE, environment, ephemeral_texts, post_signed, running_bot
from tests.engine.test_rollout import target_image, wait_phase
from tests.fixtures.engine import ControllerFactory
from tests.fixtures.slack import SlackRequests, eventually
from tests.security.slack_side import NEW, OLD, bounded_config

pytestmark = pytest.mark.cluster

ATTACK = "--max 100 --step 100 --interval 99999999h --threshold 1000"


def prod_limits(namespace: str) -> str:
    return f"""  - namespaces: ["{namespace}"]
    maxWeight: 50
    maxStepWeight: 10
    interval: {{min: 10s, max: 10m}}
    threshold: {{min: 2, max: 10}}"""


async def names(kube: Kube, namespace: str) -> list[str]:
    return [r.metadata.name for r in await ReleaseStore(kube).list_objects(namespace)]


async def test_the_attack_flags_are_refused_naming_each_bound(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    config = bounded_config(namespace, limits=prod_limits(namespace))
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config, kube) as bot:
        # the review's command: the interval alone is past what any config may allow
        status, body = await post_signed(
            bot.bound_port,
            slack_requests.slash_command(text=f"start podinfo image={NEW} -n {namespace} {ATTACK}"),
        )
        assert status == 200
        assert "--interval must be at most 24h, got `99999999h`" in json.loads(body)["text"]
        # under that hard cap, every bound the config sets is named with its source
        text = f"start podinfo image={NEW} -n {namespace} --max 100 --step 100 --interval 2h"
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=text + " --threshold 1000")
        )
        [told] = await eventually(lambda: ephemeral_texts(slack_fake, ALICE), within=20)
    where = f"for namespace {namespace} (config: limits[0])"
    assert told.startswith(":warning: 4 values are outside the allowed bounds:")
    assert f"• --max 100 is above the limit 50 {where}; use --max 50 or less" in told
    assert f"• --step 100 is above the limit 10 {where}; use --step 10 or less" in told
    assert f"• --interval 2h is above the limit 10m {where}; use --interval 10m or less" in told
    assert f"• --threshold 1000 is above the limit 10 {where}; use --threshold 10 or less" in told
    assert await names(kube, namespace) == []


async def test_built_in_bounds_hold_when_no_limits_are_configured(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, bounded_config(namespace), kube) as bot:
        text = f"start podinfo image={NEW} --max 100 --step 100 --interval 2h --threshold 1000"
        await post_signed(bot.bound_port, slack_requests.slash_command(text=text))
        [told] = await eventually(lambda: ephemeral_texts(slack_fake, ALICE), within=20)
    built_in = "(built-in default; a `limits` entry in the canary-bot config can change it)"
    assert f"--step 100 is above the limit 50 {built_in}" in told
    assert f"--interval 2h is above the limit 1h {built_in}" in told
    assert f"--threshold 1000 is above the limit 100 {built_in}" in told
    assert "--max" not in told.split("outside the allowed bounds:")[1]
    assert await names(kube, namespace) == []


async def test_a_profile_s_bounds_hold_for_typed_flags_and_for_the_form(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    limits = """  - profiles: [steady]
    maxWeight: 30
  - profiles: [hasty]
    maxStepWeight: 20"""
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, bounded_config(namespace, limits=limits), kube) as bot:
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW} --max 60")
        )
        [told] = await eventually(lambda: ephemeral_texts(slack_fake, ALICE), within=20)
        assert told == (
            ":warning: --max 60 is above the limit 30 for profile steady (config: limits[0]); "
            "use --max 30 or less"
        )
        # the form has no flag fields: the profile's own values are bounded there too
        form = {
            "deployment": {"deployment": {"type": "plain_text_input", "value": "podinfo"}},
            "images": {"images": {"type": "plain_text_input", "value": f"image={NEW}"}},
            "namespace": {"namespace": {"type": "plain_text_input", "value": namespace}},
            "profile": {
                "profile": {"type": "static_select", "selected_option": {"value": "hasty"}}
            },
        }
        status, body = await post_signed(
            bot.bound_port, slack_requests.view_submission("canary_start", form)
        )
    assert status == 200
    answer = json.loads(body)
    assert answer["response_action"] == "errors"
    assert answer["errors"]["profile"] == (
        "stepWeight 100 of profile hasty is above the limit 20 for profile hasty "
        "(config: limits[1]); use --step 20 or less"
    )
    assert await names(kube, namespace) == []


async def test_approval_required_is_forced_and_the_start_says_so(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    limits = f"""  - namespaces: ["{namespace}"]
    requireApproval: true"""
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, bounded_config(namespace, limits=limits), kube) as bot:
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        [told] = await eventually(lambda: ephemeral_texts(slack_fake, ALICE), within=20)
    assert told.startswith(":seedling: Started release `podinfo-")
    assert told.endswith(
        f"\nApproval is required for namespace {namespace} (config: limits[0]): the release "
        "waits for `/canary approve` before promotion."
    )
    [release] = await ReleaseStore(kube).list_objects(namespace)
    assert release.spec.approval == "manual"


async def test_skip_analysis_needs_its_own_verb_which_star_does_not_grant(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    start = f"start podinfo image={NEW} --skip-analysis"
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, bounded_config(namespace), kube) as bot:
        await post_signed(bot.bound_port, slack_requests.slash_command(text=start))
        [told] = await eventually(lambda: ephemeral_texts(slack_fake, ALICE), within=20)
    assert told == (
        ":no_entry: You are not allowed to start releases that skip the analysis in namespace "
        f"{namespace}; ask an admin to add you to an `authorization.rules` entry for namespace "
        f"{namespace} and verb skip-analysis in the canary-bot config "
        '(a rule with verbs ["*"] does not grant skip-analysis: it must be named).'
    )
    assert await names(kube, namespace) == []

    granted = f"""    - namespaces: ["{namespace}"]
      verbs: [skip-analysis]
      users: [{ALICE}]"""
    async with running_bot(env, bounded_config(namespace, rules=granted), kube) as bot:
        await post_signed(bot.bound_port, slack_requests.slash_command(text=start))
        told = await eventually(lambda: ephemeral_texts(slack_fake, ALICE)[1:], within=20)
    assert "analysis skipped: goes to promotion as soon as the canary runs" in told[0]
    [release] = await ReleaseStore(kube).list_objects(namespace)
    assert release.spec.skip_analysis is True


def manual_spec() -> CanaryReleaseSpec:
    """No metrics and one step: the release reaches WaitingPromotion within seconds."""
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": NEW},
            "service": {"port": 80, "targetPort": 9898},
            "progressDeadlineSeconds": 60,
            "approval": "manual",
            "analysis": {"interval": "1s", "threshold": 3, "maxWeight": 10, "stepWeight": 10},
        }
    )


async def test_promote_before_approve_is_refused_by_the_engine_with_an_audit_entry(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", manual_spec())
    await controller_factory(namespace)
    waiting = await wait_phase(store, namespace, {Phase.WAITING_PROMOTION, Phase.FAILED}, 60)
    assert waiting.status.phase == Phase.WAITING_PROMOTION, waiting.status.message

    # written straight into the object, as kubectl or a promote-only grant would
    await store.request_control(
        namespace, "podinfo", ControlRequest(id="promote-1", action="promote", user="U0CAROL")
    )

    async def audited() -> Any:
        release = await store.get(namespace, "podinfo")
        return release if release is not None and release.status.audit else None

    refused = await eventually(audited, within=30, message="the promote request was never audited")
    assert [(a.id, a.result, a.message) for a in refused.status.audit] == [
        ("promote-1", "refused", "waiting for approval; approve first")
    ]
    assert refused.status.phase == Phase.WAITING_PROMOTION
    assert target_image(kube_api_client, namespace) == OLD

    await store.request_control(
        namespace, "podinfo", ControlRequest(id="approve-1", action="approve", user="U0ALICE")
    )
    done = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 60)
    assert done.status.phase == Phase.SUCCEEDED, done.status.message
    assert target_image(kube_api_client, namespace) == NEW


async def test_promote_from_slack_before_approve_is_answered_at_once_and_writes_nothing(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", manual_spec())
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    config = bounded_config(namespace)
    async with running_bot(env, config, kube, run_engine=True, namespace=namespace) as bot:
        waiting = await wait_phase(store, namespace, {Phase.WAITING_PROMOTION, Phase.FAILED}, 60)
        assert waiting.status.phase == Phase.WAITING_PROMOTION, waiting.status.message
        await post_signed(bot.bound_port, slack_requests.slash_command(text="promote podinfo"))
        [told] = await eventually(lambda: ephemeral_texts(slack_fake, ALICE), within=20)
        assert told == (
            f":raised_hand: `podinfo` waits for approval; approve first with "
            f"`/canary approve podinfo -n {namespace}` (promote does not replace approval)."
        )
        unchanged = await store.get(namespace, "podinfo")
        assert unchanged is not None and unchanged.spec.control_requests == []
        await post_signed(bot.bound_port, slack_requests.slash_command(text="approve podinfo"))
        done = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 60)
    assert done.status.phase == Phase.SUCCEEDED, done.status.message
    assert [(a.action, a.result) for a in done.status.audit] == [("approve", "applied")]
    assert target_image(kube_api_client, namespace) == NEW
