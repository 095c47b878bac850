"""The edge cases of revision-triggered releases, each on the real control plane.

Releases here wait for approval (``approval: manual``, analysis skipped), so a release
stays running for as long as a test needs it to."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml

from rollout.kube import Kube
from rollout.models import ControlRequest
from rollout.store import ReleaseStore
from sandbox.sample_app import podinfo_manifests
from tests.fixtures.engine import ControllerFactory
from tests.revisions.conftest import OLD, Cluster, canary_manifest

pytestmark = [pytest.mark.cluster]

NEW = "stefanprodan/podinfo:6.0.3"
NEWER = "stefanprodan/podinfo:6.0.4"
HELD = {"approval": "manual"}


async def kubectl(cluster: Cluster, *args: str, stdin: str | None = None) -> str:
    return await asyncio.to_thread(cluster.kubectl, *args, stdin=stdin)


async def start(cluster: Cluster, factory: ControllerFactory, **spec: Any) -> Any:
    controller = await factory(namespace=cluster.namespace, revision_interval_seconds=0.3)
    await kubectl(cluster, "apply", "-f", "-", stdin=canary_manifest(**spec))
    await cluster.wait(lambda: cluster.canary_status().get("stableHash"), "adoption")
    return controller


async def release_in(cluster: Cluster, phase: str, index: int = 0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        releases = cluster.releases()
        if len(releases) > index and cluster.phase(releases[index]) == phase:
            return releases[index]
        return None

    found: dict[str, Any] = await cluster.wait(reached, f"release {index} to be {phase}")
    return found


def ready(status: dict[str, Any]) -> tuple[str, str, str]:
    """The Canary's Ready condition: (status, reason, message)."""
    (found,) = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    return found["status"], found["reason"], found["message"]


def stable_pods_run(cluster: Cluster) -> set[str]:
    images: set[str] = set()
    for pod, found in cluster.pod_images().items():
        if not pod.startswith("podinfo-canary-"):
            images |= found
    return images


async def test_second_change_supersedes_the_running_release(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    await start(cluster, controller_factory, **HELD)
    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={NEW}")
    first = await release_in(cluster, "WaitingPromotion")

    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={NEWER}")

    ended = await release_in(cluster, "Failed")
    assert ended["metadata"]["name"] == first["metadata"]["name"]
    assert "superseded by revision" in ended["status"]["reason"]
    second = await release_in(cluster, "WaitingPromotion", index=1)
    assert second["spec"]["images"] == {"podinfod": NEWER}
    assert stable_pods_run(cluster) == {OLD}
    status = cluster.canary_status()
    assert status["release"] == second["metadata"]["name"]
    assert status["lastRevision"]["images"] == {"podinfod": NEWER}


async def test_change_back_to_stable_cancels_the_running_release(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    await start(cluster, controller_factory, **HELD)
    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={NEW}")
    await release_in(cluster, "WaitingPromotion")

    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={OLD}")

    ended = await release_in(cluster, "Failed")
    assert "back to the stable revision" in ended["status"]["reason"]
    await cluster.wait(
        lambda: cluster.canary_status().get("lastRevision", {}).get("outcome") == "Cancelled",
        "the Canary to record the cancellation",
    )
    assert len(cluster.releases()) == 1
    assert cluster.canary_status()["state"] == "Idle"
    assert cluster.deployment().spec.paused is True


async def test_after_a_rollback_the_spec_stays_and_the_status_says_what_runs(
    cluster: Cluster, controller_factory: ControllerFactory, kube: Kube
) -> None:
    await start(cluster, controller_factory, **HELD)
    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={NEW}")
    release = await release_in(cluster, "WaitingPromotion")
    running = await cluster.wait(
        lambda: (s := cluster.canary_status()).get("state") == "WaitingPromotion" and s,
        "the Canary to show the running release",
    )
    assert ready(running)[:2] == ("False", "Running")

    abort = ControlRequest(id="abort-1", action="abort", user="U1", user_name="alice")
    await ReleaseStore(kube).request_control(cluster.namespace, release["metadata"]["name"], abort)

    await release_in(cluster, "Failed")
    status = await cluster.wait(
        lambda: (s := cluster.canary_status()).get("lastRevision", {}).get("outcome") == "Failed"
        and s,
        "the Canary to record the rollback",
    )
    message = status["message"]
    assert message.startswith(f"spec asks for podinfod={NEW}, pods run podinfod={OLD} (rolled back at")
    assert "aborted by alice" in message and message.endswith("push a fixed revision or revert")
    assert ready(status) == ("False", "LeftPaused", message)
    dep = cluster.deployment()
    assert dep.spec.template.spec.containers[0].image == NEW  # as its owner wrote it
    assert dep.spec.paused is True
    # the same failed template never starts again; a new one does
    await asyncio.sleep(1.5)
    assert len(cluster.releases()) == 1
    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={NEWER}")
    fixed = await release_in(cluster, "WaitingPromotion", index=1)
    assert fixed["spec"]["images"] == {"podinfod": NEWER}
    assert stable_pods_run(cluster) == {OLD}


async def test_deleting_an_idle_canary_unpauses_the_deployment(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    await start(cluster, controller_factory)

    await kubectl(cluster, "delete", "canary", "podinfo", "--wait=false")

    await cluster.wait(lambda: not cluster.custom.list_namespaced_custom_object(
        "canarybot.io", "v1alpha1", cluster.namespace, "canaries")["items"], "the Canary to go")
    dep = cluster.deployment()
    assert not dep.spec.paused
    owners = [e.manager for e in dep.metadata.managed_fields or [] if e.manager == "canary-bot"]
    assert owners == []
    assert stable_pods_run(cluster) == {OLD}


async def test_deleting_a_canary_mid_release_stops_it_and_keeps_serving_stable(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    await start(cluster, controller_factory, **HELD)
    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={NEW}")
    await release_in(cluster, "WaitingPromotion")

    await kubectl(cluster, "delete", "canary", "podinfo", "--wait=false")

    ended = await release_in(cluster, "Failed")
    assert "Canary was deleted" in ended["status"]["reason"]
    await cluster.wait(lambda: not cluster.custom.list_namespaced_custom_object(
        "canarybot.io", "v1alpha1", cluster.namespace, "canaries")["items"], "the Canary to go")
    # the spec asks for a revision that never passed analysis: it stays paused, and says so
    assert cluster.deployment().spec.paused is True
    events = cluster.core.list_namespaced_event(cluster.namespace).items
    left = [e for e in events if e.reason == "LeftPaused"]
    assert left and "kubectl rollout resume deployment/podinfo" in left[0].message
    assert stable_pods_run(cluster) == {OLD}
    assert all(not p.startswith("podinfo-canary-") for p in cluster.pod_images())


async def test_engine_down_when_the_change_lands_nothing_rolls_then_the_release_starts(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    controller = await start(cluster, controller_factory, **HELD)
    await controller.stop()

    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={NEW}")
    await cluster.wait(
        lambda: (d := cluster.deployment()).status.observed_generation == d.metadata.generation,
        "the Deployment controller to see the change",
    )
    await asyncio.sleep(1.0)
    assert stable_pods_run(cluster) == {OLD}
    assert cluster.releases() == []

    await controller_factory(namespace=cluster.namespace, revision_interval_seconds=0.3)
    release = await release_in(cluster, "WaitingPromotion")
    assert release["spec"]["images"] == {"podinfod": NEW}


def deployment_manifest(namespace: str, image: str) -> str:
    (deployment,) = [m for m in podinfo_manifests(namespace) if m["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return yaml.safe_dump(deployment)


async def test_gitops_reapply_neither_unpauses_nor_disturbs_the_release(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    await start(cluster, controller_factory, **HELD)
    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={NEW}")
    release = await release_in(cluster, "WaitingPromotion")
    manifest = deployment_manifest(cluster.namespace, NEW)

    # Flux: server-side apply, taking every conflicting field
    await kubectl(
        cluster,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=kustomize-controller",
        "-f",
        "-",
        stdin=manifest,
    )
    # a person (or Argo CD in client-side mode): kubectl's client-side apply
    await kubectl(cluster, "apply", "-f", "-", stdin=manifest)
    await asyncio.sleep(1.5)

    dep = cluster.deployment()
    assert dep.spec.paused is True
    paused_by = [
        e.manager
        for e in dep.metadata.managed_fields or []
        if "f:paused" in (e.fields_v1 or {}).get("f:spec", {})
    ]
    assert paused_by == ["canary-bot"]
    (same,) = cluster.releases()
    assert same["metadata"]["uid"] == release["metadata"]["uid"]
    assert cluster.phase(same) == "WaitingPromotion"
    assert stable_pods_run(cluster) == {OLD}
    assert cluster.apps.read_namespaced_deployment("podinfo-canary", cluster.namespace)


async def test_adopting_a_deployment_mid_rollout_waits_for_that_rollout(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    await controller_factory(namespace=cluster.namespace, revision_interval_seconds=0.3)
    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={NEW}")
    await kubectl(cluster, "apply", "-f", "-", stdin=canary_manifest())

    status = await cluster.wait(
        lambda: (s := cluster.canary_status()).get("stableHash") and s, "adoption"
    )
    # the rollout that was under way finished first: its template is the stable one
    assert status["stableImages"] == {"podinfod": NEW}
    assert stable_pods_run(cluster) == {NEW}
    await asyncio.sleep(1.0)
    assert cluster.releases() == []


async def test_adopting_a_deployment_with_no_ready_pods(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    await kubectl(cluster, "scale", "deployment/podinfo", "--replicas=0")
    await cluster.wait(lambda: not cluster.deployment().status.replicas, "podinfo at 0 pods")
    await start(cluster, controller_factory)

    status = cluster.canary_status()
    assert status["stableImages"] == {"podinfod": OLD}
    assert "no pod is ready yet" in status["message"]
    assert cluster.deployment().spec.paused is True
