"""Issue 14, finding 6: the engine writes only to canary objects its release owns.

On the real API server: a second release behind an Ingress that a running release uses is
refused (from Slack and from kubectl) and the running release's canary weight does not
move; a ``<target>-canary`` Service someone else made stops a release before anything is
created, naming the owner; the router and the workloads refuse to write to objects of the
canary names that are not theirs.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from bot.commands import ReleaseOptions
from bot.config import BotConfig
from bot.operations import Actor
from bot.render.slack_reply import slack_text
from rollout.kube import DEPLOYMENTS, INGRESSES, SERVICES, Kube
from rollout.models import CanaryReleaseSpec, Phase
from rollout.owner import NotOwned
from rollout.router import WEIGHT, NginxRouter
from rollout.store import ReleaseStore
from rollout.workloads import CanaryWorkloads
from sandbox.sample_app import deploy_podinfo
from tests.engine.test_rollout import NEW, wait_phase
from tests.fixtures.engine import ControllerFactory, async_wait_for
from tests.security.helpers import USER, allow_everything, operations, recorded


def spec_of(target: str, ingress: str, interval: str = "2s") -> CanaryReleaseSpec:
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": target},
            "ingressRef": {"name": ingress},
            "images": {"podinfod": NEW},
            "service": {"port": 80, "targetPort": 9898},
            "progressDeadlineSeconds": 60,
            "analysis": {"interval": interval, "threshold": 1, "maxWeight": 50, "stepWeight": 10},
        }
    )


def config_for(namespace: str) -> BotConfig:
    return BotConfig.model_validate(
        {
            "authorization": allow_everything(namespace),
            "defaults": {"namespace": namespace, "progressDeadlineSeconds": 60, "targetPort": 9898},
        }
    )


async def canary_weight(kube: Kube, namespace: str, name: str) -> str | None:
    ingress = await kube.get(INGRESSES, namespace, name)
    return None if ingress is None else ingress["metadata"]["annotations"].get(WEIGHT)


@pytest.mark.cluster
@pytest.mark.prometheus
async def test_a_second_release_behind_the_same_ingress_is_refused_and_the_first_keeps_its_weight(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    deploy_podinfo(kube_api_client, namespace, name="web")  # another app, same namespace
    store = ReleaseStore(kube)
    # A: podinfo behind Ingress podinfo, holding at its first step (next one in an hour)
    await store.create(namespace, "podinfo-a", spec_of("podinfo", "podinfo", interval="1h"))
    await controller_factory(namespace)
    await wait_phase(store, namespace, {Phase.PROGRESSING}, 90, name="podinfo-a")

    async def first_step() -> bool:
        return await canary_weight(kube, namespace, "podinfo-canary") == "10"

    await async_wait_for(first_step, 30, "podinfo-a's canary weight 10 on podinfo-canary")
    refusal = (
        f"Ingress podinfo is already used by release podinfo-a of Deployment podinfo "
        f"(Progressing); two releases behind one Ingress would move each other's canary "
        f"weight: wait for podinfo-a or abort it with `/canary abort podinfo-a -n {namespace}`"
    )

    # B from Slack: refused before anything is created
    reply = await operations(kube, config_for(namespace)).start(
        ReleaseOptions("web", image=NEW, ingress="podinfo", namespace=namespace),
        Actor(user=USER, channel="C0DEPLOYS"),
        "trigger-b",
    )
    assert slack_text(reply) == f":warning: Nothing was started:\n• {refusal}"

    # B applied with kubectl: the engine refuses it the same way
    await store.create(namespace, "web-b", spec_of("web", "podinfo"))
    refused = await wait_phase(store, namespace, {Phase.FAILED, Phase.SUCCEEDED}, 60, name="web-b")
    assert refused.status.phase == Phase.FAILED
    assert refused.status.message == refusal
    await recorded(kube_api_client, namespace, f"Refused web.{namespace}: {refusal}")

    # A is untouched: same weight, still progressing, and B made no canary of its own
    assert await canary_weight(kube, namespace, "podinfo-canary") == "10"
    first = await store.get(namespace, "podinfo-a")
    assert first is not None and first.status.phase == Phase.PROGRESSING
    assert first.status.canary_weight == 10
    assert await kube.get(DEPLOYMENTS, namespace, "web-canary") is None
    assert await kube.get(SERVICES, namespace, "web-canary") is None


FOREIGN_SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "podinfo-canary",
        "labels": {"app.kubernetes.io/managed-by": "flagger"},
    },
    "spec": {"selector": {"app": "podinfo-primary"}, "ports": [{"port": 80, "targetPort": 9898}]},
}


@pytest.mark.cluster
@pytest.mark.prometheus
async def test_a_foreign_canary_service_stops_the_release_at_start_naming_its_owner(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    core = k8s.CoreV1Api(kube_api_client)
    core.create_namespaced_service(namespace, FOREIGN_SERVICE)
    before = core.read_namespaced_service("podinfo-canary", namespace)
    refusal = (
        "Service podinfo-canary already exists and was not created by canary-bot (managed by "
        "flagger); canary-bot will neither reuse nor change it: remove it, or release with "
        "the tool that owns it"
    )

    reply = await operations(kube, config_for(namespace)).start(
        ReleaseOptions("podinfo", image=NEW, namespace=namespace),
        Actor(user=USER, channel="C0DEPLOYS"),
        "trigger-1",
    )
    assert slack_text(reply) == f":warning: Nothing was started:\n• {refusal}"

    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", spec_of("podinfo", "podinfo"))
    await controller_factory(namespace)
    release = await wait_phase(store, namespace, {Phase.FAILED, Phase.SUCCEEDED}, 60)

    assert release.status.phase == Phase.FAILED
    assert release.status.message == refusal
    await recorded(kube_api_client, namespace, f"Refused podinfo.{namespace}: {refusal}")
    # nothing was created, and the Service is as its owner left it
    assert await kube.get(DEPLOYMENTS, namespace, "podinfo-canary") is None
    assert await kube.get(INGRESSES, namespace, "podinfo-canary") is None
    after = core.read_namespaced_service("podinfo-canary", namespace)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.metadata.owner_references is None


@pytest.mark.cluster
async def test_router_and_workloads_do_not_write_to_objects_they_do_not_own(
    kube: Kube, kube_api_client: k8s.ApiClient, podinfo: str
) -> None:
    namespace = podinfo
    release = await ReleaseStore(kube).create(namespace, "podinfo", spec_of("podinfo", "podinfo"))
    main = await kube.get(INGRESSES, namespace, "podinfo")
    assert main is not None
    # someone's own canary Ingress, made by hand at 30 %
    foreign = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "podinfo-canary",
            "annotations": {"nginx.ingress.kubernetes.io/canary": "true", WEIGHT: "30"},
        },
        "spec": main["spec"],
    }
    await kube.create(INGRESSES, namespace, foreign)
    router = NginxRouter(kube)

    with pytest.raises(NotOwned) as refused:
        await router.reconcile(release, 50)

    assert refused.value.message == (
        "Ingress podinfo-canary was not created by canary-bot; canary-bot changes only the "
        "objects it created for this release, so it left it alone"
    )
    assert await canary_weight(kube, namespace, "podinfo-canary") == "30"
    assert await router.get_weight(release) is None

    # the same Ingress once it belongs to another release: the uid test in the patch fails
    other = await ReleaseStore(kube).create(namespace, "other", spec_of("podinfo", "podinfo"))
    owner_ref = {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "CanaryRelease",
        "name": "other",
        "uid": other.metadata.uid,
        "controller": True,
    }
    await kube.merge_patch(
        INGRESSES, namespace, "podinfo-canary", {"metadata": {"ownerReferences": [owner_ref]}}
    )
    with pytest.raises(NotOwned, match=r"Ingress podinfo-canary belongs to CanaryRelease other;"):
        await router.reconcile(release, 50)
    assert await canary_weight(kube, namespace, "podinfo-canary") == "30"
    await router.finalize(release)  # not its Ingress: not deleted either
    assert await canary_weight(kube, namespace, "podinfo-canary") == "30"

    # a Deployment of the canary's name made by someone else is not reused either
    target = await kube.get(DEPLOYMENTS, namespace, "podinfo")
    assert target is not None
    stranger = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo-canary", "labels": {"app": "other"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "other"}},
            "template": {
                "metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
            },
        },
    }
    await kube.create(DEPLOYMENTS, namespace, stranger)
    with pytest.raises(NotOwned, match=r"^NotOwned \(409\): Deployment podinfo-canary was not"):
        await CanaryWorkloads(kube).ensure_canary(release, target)
    kept = await kube.get(DEPLOYMENTS, namespace, "podinfo-canary")
    assert kept is not None
    assert kept["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.36"
