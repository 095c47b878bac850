"""Promotion on the real control plane: a slow rollout completes, a stuck one rolls back.

A rollback during promotion routes all traffic to the target's Service, reverts the
target's images and deletes the canary. The Service only sends traffic to Ready pods, and
the target keeps its Ready pods through all of it (maxUnavailable 0, as podinfo ships).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from rollout.kube import Kube
from rollout.models import CanaryReleaseSpec, Phase
from rollout.store import ReleaseStore
from tests.engine.test_rollout import (
    NEW,
    OLD,
    canary_deleted,
    events,
    target_image,
    wait_phase,
)
from tests.fixtures.engine import ControllerFactory, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


def straight_to_promotion(deadline: int) -> CanaryReleaseSpec:
    """One step to maxWeight 50, no metrics or hooks: promotion starts after two ticks."""
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": NEW},
            "service": {"port": 80, "targetPort": 9898},
            "progressDeadlineSeconds": deadline,
            "analysis": {"interval": "2s", "maxWeight": 50, "stepWeight": 50},
        }
    )


@dataclass(frozen=True)
class Sample:
    """What traffic would see at one moment."""

    phase: str
    weight: int | None  # None: no canary Ingress
    target_available: int
    ready_endpoints: int
    not_ready_endpoints: int


def sample(api: k8s.ApiClient, namespace: str, phase: str) -> Sample:
    try:
        ingress = k8s.NetworkingV1Api(api).read_namespaced_ingress("podinfo-canary", namespace)
        weight: int | None = int(ingress.metadata.annotations[WEIGHT])
    except ApiException as exc:
        if exc.status != 404:
            raise
        weight = None
    status = k8s.AppsV1Api(api).read_namespaced_deployment("podinfo", namespace).status
    slices = k8s.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=podinfo"
    )
    endpoints = [e for s in slices.items for e in (s.endpoints or [])]
    ready = sum(1 for e in endpoints if e.conditions and e.conditions.ready)
    return Sample(phase, weight, int(status.available_replicas or 0), ready, len(endpoints) - ready)


def serving_from_two_pods(api: k8s.ApiClient, namespace: str) -> None:
    """The precondition of the traffic check: the stable Service has its two Ready
    endpoints (the EndpointSlice may trail the Deployment's available count)."""
    wait_for(
        lambda: sample(api, namespace, "").ready_endpoints >= 2,
        30,
        "the podinfo Service to have two ready endpoints",
    )


async def watch_until_final(
    store: ReleaseStore, api: k8s.ApiClient, namespace: str, timeout: float
) -> list[Sample]:
    samples: list[Sample] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        release = await store.get(namespace, "podinfo")
        assert release is not None
        samples.append(sample(api, namespace, release.status.phase.value))
        if release.status.phase.is_final:
            return samples
        await asyncio.sleep(0.1)
    pytest.fail(f"no final phase within {timeout:.0f}s; last sample {samples[-1:]}")


def assert_traffic_only_reached_ready_pods(samples: list[Sample]) -> None:
    for s in samples:
        if s.weight is None or s.weight < 100:
            # the stable side gets traffic: its Service sends it only to Ready endpoints,
            # and there are always two of them (the target's full size)
            assert s.ready_endpoints >= 2, s


async def test_a_stuck_promotion_rolls_back_without_sending_traffic_to_unready_pods(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    # two stable pods and the one-pod canary fit; the target's surge pod does not
    k8s.CoreV1Api(kube_api_client).create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "three-pods"}, "spec": {"hard": {"pods": "3"}}}
    )
    serving_from_two_pods(kube_api_client, namespace)
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", straight_to_promotion(deadline=10))
    await controller_factory(namespace)

    samples = await watch_until_final(store, kube_api_client, namespace, 120)
    release = await wait_phase(store, namespace, {Phase.FAILED}, 5)
    story = events(kube_api_client, namespace)
    assert release.status.reason.startswith("promotion failed: target made no progress for 10s")
    promoting = [s for s in samples if s.phase == "Promoting"]
    assert promoting, story
    # while the target tried to roll out, the canary kept its weight; the rollback then
    # moved it to 0 and removed the canary Ingress (its actions run before the status
    # write, so the last "Promoting" samples may already see that)
    weights = [s.weight for s in promoting]
    held = weights.index(None) if None in weights else len(weights)
    assert weights[0] == 50 and set(weights[:held]) <= {50, 0}, weights
    assert 50 not in weights[weights.index(0) :] if 0 in weights else True, weights
    assert_traffic_only_reached_ready_pods(samples)
    # afterwards: the target runs its old image on Ready pods and the canary is gone
    assert target_image(kube_api_client, namespace) == OLD
    # the outcome is stored first, the canary deleted right after
    await canary_deleted(kube_api_client, namespace)

    def settled() -> Sample | None:
        now = sample(kube_api_client, namespace, "Failed")
        return now if now.ready_endpoints == 2 and now.not_ready_endpoints == 0 else None

    wait_for(settled, 30, "the reverted target to serve from 2 Ready pods")


async def test_a_slow_promotion_that_keeps_progressing_completes(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    apps = k8s.AppsV1Api(kube_api_client)
    # each new pod needs 6 s to count as available: the two-pod rollout takes longer than
    # the 10 s deadline but never stalls
    apps.patch_namespaced_deployment("podinfo", namespace, {"spec": {"minReadySeconds": 6}})

    def available() -> bool:
        d = apps.read_namespaced_deployment("podinfo", namespace)
        observed = d.status.observed_generation >= d.metadata.generation
        return bool(observed and (d.status.available_replicas or 0) == 2)

    wait_for(available, 30, "podinfo to be available again with minReadySeconds 6")
    serving_from_two_pods(kube_api_client, namespace)
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", straight_to_promotion(deadline=10))
    await controller_factory(namespace)

    samples = await watch_until_final(store, kube_api_client, namespace, 180)
    release = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 5)
    assert release.status.phase == Phase.SUCCEEDED, events(kube_api_client, namespace)
    # the scenario holds: the promotion took longer than the 10 s deadline
    [started] = [e for e in release.status.events if e.type == "Promoting"]
    assert release.status.finished_at is not None
    assert (release.status.finished_at - started.at).total_seconds() > 10
    assert_traffic_only_reached_ready_pods(samples)
    assert target_image(kube_api_client, namespace) == NEW
    await canary_deleted(kube_api_client, namespace)  # deleted after the outcome is stored
