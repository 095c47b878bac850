"""The canary's size on the real control plane: maxWeight of the target's pods, its own HPA."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from rollout.kube import Kube
from rollout.models import CanaryReleaseSpec, ControlRequest, Phase
from rollout.store import ReleaseStore
from tests.engine.test_rollout import NEW, events, wait_phase
from tests.fixtures.engine import ControllerFactory, async_wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

CPU = [
    {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    }
]


def quiet_spec(**overrides: Any) -> CanaryReleaseSpec:
    """No metrics or hooks and a long interval: the release sits at its first step."""
    body: dict[str, Any] = {
        "targetRef": {"name": "podinfo"},
        "ingressRef": {"name": "podinfo"},
        "images": {"podinfod": NEW},
        "service": {"port": 80, "targetPort": 9898},
        "analysis": {"interval": "1m", "maxWeight": 50, "stepWeight": 10},
        **overrides,
    }
    return CanaryReleaseSpec.model_validate(body)


def scale_with_hpa(api: k8s.ApiClient, namespace: str, replicas: int, lo: int, hi: int) -> None:
    k8s.AppsV1Api(api).patch_namespaced_deployment(
        "podinfo", namespace, {"spec": {"replicas": replicas}}
    )
    k8s.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "podinfo-autoscaler"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "minReplicas": lo,
                "maxReplicas": hi,
                "metrics": CPU,
            },
        },
    )


def read_hpa(api: k8s.ApiClient, namespace: str, name: str) -> Any:
    try:
        return k8s.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def canary_deployment(api: k8s.ApiClient, namespace: str) -> Any:
    try:
        return k8s.AppsV1Api(api).read_namespaced_deployment("podinfo-canary", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


async def _async(value: Any) -> Any:
    return value


async def test_canary_runs_max_weight_of_the_pods_and_mirrors_the_targets_hpa(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    scale_with_hpa(kube_api_client, namespace, replicas=10, lo=4, hi=10)
    store = ReleaseStore(kube)
    created = await store.create(namespace, "podinfo", quiet_spec())
    await controller_factory(namespace)

    hpa = await async_wait_for(
        lambda: _async(read_hpa(kube_api_client, namespace, "podinfo-canary")),
        60,
        "the canary HPA",
    )
    canary = canary_deployment(kube_api_client, namespace)
    assert canary.spec.replicas == 5  # ceil(10 x 50 / 100), not a second set of 10
    assert hpa.spec.scale_target_ref.name == "podinfo-canary"
    assert hpa.spec.scale_target_ref.kind == "Deployment"
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 5)
    [metric] = hpa.spec.metrics
    assert metric.resource.name == "cpu" and metric.resource.target.average_utilization == 70
    [owner] = hpa.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("CanaryRelease", "podinfo", created.metadata.uid)
    # the target's own HPA is left alone
    target_hpa = read_hpa(kube_api_client, namespace, "podinfo-autoscaler")
    assert (target_hpa.spec.min_replicas, target_hpa.spec.max_replicas) == (4, 10)

    await store.request_control(
        namespace, "podinfo", ControlRequest(id="abort-1", action="abort", user="U1")
    )
    release = await wait_phase(store, namespace, {Phase.FAILED}, 60)
    assert release.status.reason.startswith("aborted by U1"), events(kube_api_client, namespace)
    await async_wait_for(
        lambda: _async(read_hpa(kube_api_client, namespace, "podinfo-canary") is None),
        30,
        "the canary HPA to be deleted with the canary",
    )
    assert canary_deployment(kube_api_client, namespace) is None
    assert read_hpa(kube_api_client, namespace, "podinfo-autoscaler") is not None


async def test_an_explicit_canary_size_is_kept_and_gets_no_hpa(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    scale_with_hpa(kube_api_client, namespace, replicas=4, lo=2, hi=8)
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", quiet_spec(canaryReplicas=3))
    await controller_factory(namespace)

    await wait_phase(store, namespace, {Phase.PROGRESSING}, 60)
    canary = canary_deployment(kube_api_client, namespace)
    assert canary.spec.replicas == 3
    assert (canary.status.ready_replicas or 0) == 3
    assert read_hpa(kube_api_client, namespace, "podinfo-canary") is None


async def test_without_an_hpa_the_tutorials_two_pods_get_a_one_pod_canary(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", quiet_spec())
    await controller_factory(namespace)

    await wait_phase(store, namespace, {Phase.PROGRESSING}, 60)
    canary = canary_deployment(kube_api_client, namespace)
    assert canary.spec.replicas == 1
    assert read_hpa(kube_api_client, namespace, "podinfo-canary") is None
