"""SIGKILL after every step of a supersede: the fourth ending of the crash-point sweep.

podinfo is managed by a ``Canary``; ``kubectl set image`` opens release 1, and while it
progresses a second ``kubectl set image`` makes the revision loop ask the engine to abort
it ("superseded by revision ...") and, once it has ended, open release 2 for the newest
template. The engine (the revision loop runs in the same process) dies right after one
action of release 1's ending, or right after the revision loop stored its abort request
(``revisions:AbortRequested``). The restarted engine must finish the story: release 1
Failed with the supersede reason, release 2 for the newest template Succeeded, the
Deployment running the newest image, no canary objects, traffic on stable, each
post-rollout hook called once; and, watched for the whole test, no pod outside the
canary Deployment ran release 1's image, or release 2's before its promotion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from rollout.hold import PROMOTING_ANNOTATION
from rollout.models import CanaryRelease, Phase
from rollout.revisions import HASH_LABEL, template_hash
from sandbox.controlplane import ControlPlane
from sandbox.loadtester import LoadTester
from sandbox.prometheus import PrometheusServer
from tests.faults.conftest import EngineFactory, TrafficFor
from tests.faults.helpers import (
    NEW,
    canary_objects,
    canary_weight_on_ingress,
    killed_at_failpoint,
    outbox_problems,
    releases,
    restart_without_failpoint,
    story,
)
from tests.fixtures.engine import wait_for
from tests.revisions.conftest import Cluster, canary_manifest
from tests.revisions.conftest import canary_crd as canary_crd  # the Canary CRD, installed
from tests.revisions.test_tutorial import Watcher

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.usefixtures("canary_crd")]

APP = "podinfo"
NEWER = "stefanprodan/podinfo:6.0.4"
SUPERSEDED = "aborted by canary-bot: superseded by revision"
PROMOTED = (Phase.PROMOTING.value, Phase.FINALISING.value, Phase.SUCCEEDED.value)
# Release 1's ending (the abort the revision loop asks for), then the revision loop's own
# point between that request and release 2.
POINTS = [f"Failed:{step}" for step in ("SetWeight", "StoreDecision", "DeleteCanary", "NotifyHooks")]
POINTS.append("revisions:AbortRequested")


def managed_canary(loadtester_url: str) -> str:
    """podinfo's Canary: analysed, ten 5 % steps of 1 s, a post-rollout hook, and a
    confirm-promotion gate (closed until the test opens it, so release 1 cannot reach
    promotion, when the Deployment is unpaused, before the second change lands)."""
    return canary_manifest(
        skipAnalysis=False,
        analysis={
            "interval": "1s",
            "threshold": 5,
            "stepWeight": 5,
            "maxWeight": 50,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}
            ],
            "webhooks": [
                {"name": "gate", "type": "confirm-promotion", "url": f"{loadtester_url}/gate/check"},
                {
                    "name": "notify",
                    "type": "post-rollout",
                    "url": f"{loadtester_url}/notify",
                    "timeout": "10s",
                    "metadata": {"cmd": "echo done"},
                }
            ],
        },
    )


def release_of(api: k8s.ApiClient, namespace: str, image: str) -> CanaryRelease | None:
    """The release that rolls out ``image`` (None before the revision loop opened it)."""
    for release in releases(api, namespace).values():
        if release.spec.images == {"podinfod": image}:
            return release
    return None


class PodAudit:
    """Every pod of the namespace, as watched: those outside the canary Deployment that
    ran release 1's image, or release 2's while release 2 was not yet promoting."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.early: list[str] = []
        self.canary_ran: set[str] = set()  # images the canary Deployment's pods ran
        self.promoted: set[str] = set()  # the target's pods on release 2's image, in time

    def seen(self, pod: Any) -> None:
        images = {c.image for c in pod.spec.containers}
        owners = [o.name for o in pod.metadata.owner_references or []]
        if owners and all(name.startswith(f"{APP}-canary-") for name in owners):
            self.canary_ran |= images
            return
        what = (
            f"{pod.metadata.name} (owners {owners}, images {sorted(images)}, "
            f"created {pod.metadata.creation_timestamp})"
        )
        if NEW in images:
            self.early.append(f"{what}: release 1 was never promoted")
        if NEWER in images:
            # read after the pod was seen: a pod made before the promotion fails here
            second = release_of(self.api, self.namespace, NEWER)
            phase = second.status.phase.value if second else "no release yet"
            # the promotion's unpause marks the Deployment with the release in the same
            # write, a moment before the engine stores Promoting
            target = k8s.AppsV1Api(self.api).read_namespaced_deployment(APP, self.namespace)
            marked = (target.metadata.annotations or {}).get(PROMOTING_ANNOTATION)
            if phase in PROMOTED or (second is not None and marked == second.metadata.name):
                self.promoted.add(pod.metadata.name)
            else:
                first = release_of(self.api, self.namespace, NEW)
                was = first.status.phase.value if first else "missing"
                self.early.append(f"{what}: release 2 was {phase}, release 1 {was}")


def supersede_when_progressing(cluster: Cluster, api: k8s.ApiClient) -> str:
    """Wait for release 1's canary to get traffic, change the template again; returns the
    newest template's hash (the revision the supersede reason names)."""

    def progressing() -> bool:
        first = release_of(api, cluster.namespace, NEW)
        return first is not None and first.status.canary_weight >= 5

    wait_for(progressing, 90, "release 1's canary to get traffic", interval=0.2)
    cluster.kubectl("set", "image", f"deployment/{APP}", f"podinfod={NEWER}")
    template = api.sanitize_for_serialization(cluster.deployment(APP).spec.template)
    return template_hash(template)


def check_at_kill(api: k8s.ApiClient, namespace: str, point: str, revision: str) -> None:
    """What a crash at ``point`` leaves: traffic on stable once the ending started, the
    outcome stored from ``StoreDecision`` on, and no release 2 before release 1 ended."""
    first = release_of(api, namespace, NEW)
    assert first is not None
    if not first.status.phase.is_final:
        assert release_of(api, namespace, NEWER) is None, story(first)
    if point == "revisions:AbortRequested":
        reasons = [r.reason for r in first.spec.control_requests if r.action == "abort"]
        assert reasons == [f"superseded by revision {revision}"], (reasons, story(first))
        return
    assert canary_weight_on_ingress(api, namespace, APP) in (0, None), story(first)
    if point == "Failed:SetWeight":
        assert not first.status.phase.is_final, story(first)
    else:
        assert first.status.phase == Phase.FAILED, story(first)
        assert first.status.reason.startswith(f"{SUPERSEDED} {revision}"), story(first)


@pytest.mark.parametrize("point", [pytest.param(p, id=f"supersede-{p}") for p in POINTS])
def test_a_kill_during_a_supersede_still_rolls_out_the_newest_revision(
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    apps: Callable[[list[str]], None],
    traffic_for: TrafficFor,
    prometheus: PrometheusServer,
    loadtester: LoadTester,
    engines: EngineFactory,
    point: str,
) -> None:
    apps([APP])
    cluster = Cluster(control_plane, kube_api_client, namespace)
    traffic_for(prometheus, namespace, [APP], rps=40, tick=0.5)
    audit = PodAudit(kube_api_client, namespace)
    with Watcher(cluster.core.list_namespaced_pod, namespace, audit.seen) as pods:
        engine = engines("engine", namespace=namespace, env={"CANARY_BOT_CRASH_AT": point})
        cluster.kubectl("apply", "-f", "-", stdin=managed_canary(loadtester.url))
        wait_for(lambda: cluster.canary_status(APP).get("stableHash"), 60, "the adoption")
        cluster.kubectl("set", "image", f"deployment/{APP}", f"podinfod={NEW}")
        revision = supersede_when_progressing(cluster, kube_api_client)

        killed_at_failpoint(engine, point)
        check_at_kill(kube_api_client, namespace, point, revision)

        restart_without_failpoint(engine)
        first, second = finish(cluster, kube_api_client, loadtester)
        engine.stop()

    assert not pods.errors, pods.errors
    assert audit.early == [], audit.early
    assert audit.canary_ran == {NEW, NEWER}, audit.canary_ran  # each release had its canary
    assert audit.promoted, "no pod of the Deployment was seen running the newest image"
    assert first.status.phase == Phase.FAILED, story(first)
    assert first.status.reason.startswith(f"{SUPERSEDED} {revision}"), story(first)
    assert second.metadata.labels[HASH_LABEL] == revision
    assert second.status.phase == Phase.SUCCEEDED, (second.status.reason, story(second))
    check_final(cluster, kube_api_client, loadtester)


def finish(
    cluster: Cluster, api: k8s.ApiClient, loadtester: LoadTester
) -> tuple[CanaryRelease, CanaryRelease]:
    """After the restart: release 1 ends, then (gate opened) release 2 is promoted and
    the Deployment rolls out; returns both releases once everything has settled."""
    wait_for(
        lambda: (r := release_of(api, cluster.namespace, NEW)) and r.status.phase.is_final,
        90,
        "release 1 to end after the restart",
    )
    loadtester.open_gate(APP, cluster.namespace)  # release 2 may now be promoted
    pair = wait_for(lambda: ended_pair(api, cluster.namespace), 180, "release 2 to end")
    wait_for(lambda: settled(cluster, api), 120, "the newest image to run everywhere")
    return pair


def check_final(cluster: Cluster, api: k8s.ApiClient, loadtester: LoadTester) -> None:
    """Traffic on stable, nothing of either canary left, the newest image everywhere,
    the Canary on its new stable revision, one post-rollout call per release."""
    for release in releases(api, cluster.namespace).values():
        assert release.status.canary_weight == 0, story(release)
        assert not outbox_problems(release), (outbox_problems(release), story(release))
    assert canary_weight_on_ingress(api, cluster.namespace, APP) is None
    assert canary_objects(api, cluster.namespace) == []
    deployment = cluster.deployment(APP)
    assert [c.image for c in deployment.spec.template.spec.containers] == [NEWER]
    assert set().union(*cluster.pod_images().values()) == {NEWER}
    status = cluster.canary_status(APP)
    assert status["stableImages"] == {"podinfod": NEWER}, status
    assert status["lastRevision"]["outcome"] == "Succeeded", status
    # each release's post-rollout hook ran once, with its final phase, release 1's first
    hooks = [(c.name, c.phase) for c in loadtester.calls(path="/notify")]
    assert hooks == [(APP, "Failed"), (APP, "Succeeded")], hooks


def ended_pair(api: k8s.ApiClient, namespace: str) -> tuple[CanaryRelease, CanaryRelease] | None:
    """Release 1 and release 2, once both have ended."""
    first, second = release_of(api, namespace, NEW), release_of(api, namespace, NEWER)
    if first is None or second is None:
        return None
    if not (first.status.phase.is_final and second.status.phase.is_final):
        return None
    return first, second


def settled(cluster: Cluster, api: k8s.ApiClient) -> bool:
    """Every pod runs the newest image, the Canary recorded the promotion and is idle
    (its Deployment paused again), the canary is gone and every event was delivered."""
    if set().union(*cluster.pod_images().values()) != {NEWER}:
        return False
    status = cluster.canary_status(APP)
    if status.get("state") != "Idle" or status.get("lastRevision", {}).get("outcome") != "Succeeded":
        return False
    if cluster.deployment(APP).spec.paused is not True:
        return False
    delivered = all(
        r.status.notification.delivered_seq == r.status.event_seq
        for r in releases(api, cluster.namespace).values()
    )
    return delivered and not canary_objects(api, cluster.namespace)
