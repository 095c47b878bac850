"""A Canary protects podinfo: adoption, `kubectl set image` as a release, promotion by
unpausing, changes that are not revisions, and the Canary's deletion. Real API server,
Deployment controller and kubectl; the analysis is skipped (the analysed story is
test_tutorial.py)."""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures.engine import ControllerFactory
from tests.revisions.conftest import OLD, Cluster, canary_manifest
from tests.revisions.hold import promoting

pytestmark = [pytest.mark.cluster]

NEW = "stefanprodan/podinfo:6.0.3"


def paused_owner(cluster: Cluster) -> list[str]:
    """Field managers that own spec.paused of podinfo."""
    owners = []
    for entry in cluster.deployment().metadata.managed_fields or []:
        if "f:paused" in (entry.fields_v1 or {}).get("f:spec", {}):
            owners.append(f"{entry.manager}/{entry.operation}")
    return owners


async def adopted(cluster: Cluster, controller_factory: ControllerFactory) -> None:
    await controller_factory(
        namespace=cluster.namespace, revision_interval_seconds=0.3, cluster="prod-eu-1"
    )
    await asyncio.to_thread(cluster.kubectl, "apply", "-f", "-", stdin=canary_manifest())
    await cluster.wait(lambda: cluster.canary_status().get("stableHash"), "the Canary to adopt podinfo")


async def test_adoption_pauses_the_deployment_and_records_what_pods_run(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    await adopted(cluster, controller_factory)
    waited = await asyncio.to_thread(
        cluster.kubectl, "wait", "--for=condition=Ready", "canary/podinfo", "--timeout=30s"
    )

    assert waited.strip() == "canary.canarybot.io/podinfo condition met"
    status = cluster.canary_status()
    (condition,) = status["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Ready", "True", "Idle")
    assert condition["message"] == status["message"]
    assert status["state"] == "Idle"
    assert status["stableImages"] == {"podinfod": OLD}
    assert cluster.deployment().spec.paused is True
    assert paused_owner(cluster) == ["canary-bot/Apply"]
    assert "canarybot.io/revisions" in cluster.canary()["metadata"]["finalizers"]
    assert cluster.releases() == []


async def test_set_image_runs_a_release_and_promotion_rolls_the_deployment(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    await adopted(cluster, controller_factory)
    before_promotion: set[str] = set()

    await asyncio.to_thread(cluster.kubectl, "set", "image", "deployment/podinfo", f"podinfod={NEW}")
    # one look while the change is surely not promoted yet (the audit below cannot pass
    # having seen nothing; the release may promote within seconds)
    for images in cluster.pod_images().values():
        before_promotion.update(images)

    (release,) = await cluster.wait(cluster.releases, "a release for the new revision")
    assert release["spec"]["images"] == {"podinfod": NEW}
    assert release["spec"]["changedBy"] == "kubectl-set"
    assert release["spec"]["canaryRef"] == {"name": "podinfo"}
    # named with the engine's cluster, so its card says where it runs
    assert release["spec"]["cluster"] == "prod-eu-1"
    assert release["metadata"]["labels"]["canarybot.io/canary"] == "podinfo"

    def finished() -> str:
        (current,) = cluster.releases()
        # the promotion's unpause marks the Deployment in the same write, a moment before
        # the engine stores Promoting: a marked Deployment is promoting
        marked = promoting(cluster.deployment())
        if cluster.phase(current) not in ("Promoting", "Finalising", "Succeeded") and not marked:
            for pod, images in cluster.pod_images().items():
                if not pod.startswith("podinfo-canary-"):
                    before_promotion.update(images)
        return cluster.phase(current) if cluster.phase(current) in ("Succeeded", "Failed") else ""

    finished()

    assert await cluster.wait(finished, "the release to end", timeout=120) == "Succeeded"
    # Until promotion, no pod of the user's Deployment ran the new image.
    assert before_promotion == {OLD}
    await cluster.wait(
        lambda: cluster.canary_status().get("lastRevision", {}).get("outcome") == "Succeeded",
        "the Canary to record the outcome",
    )
    status = cluster.canary_status()
    assert status["stableImages"] == {"podinfod": NEW}
    assert status["lastImages"] == f"podinfod={NEW}"
    assert cluster.deployment().spec.paused is True
    dep = cluster.deployment()
    assert dep.status.updated_replicas == dep.spec.replicas
    table = cluster.kubectl("get", "canaries").splitlines()
    assert table[1].split()[1:5] == ["podinfo", "Idle", f"podinfod={NEW}", "Succeeded"]


async def test_scaling_and_edits_outside_the_template_are_not_revisions(
    cluster: Cluster, controller_factory: ControllerFactory
) -> None:
    await adopted(cluster, controller_factory)

    await asyncio.to_thread(cluster.kubectl, "scale", "deployment/podinfo", "--replicas=3")
    await asyncio.to_thread(cluster.kubectl, "label", "deployment/podinfo", "team=web")
    await asyncio.to_thread(cluster.kubectl, "annotate", "deployment/podinfo", "owner=platform")
    await cluster.wait(
        lambda: (cluster.deployment().status.ready_replicas or 0) == 3,
        "scaling to work while paused",
    )
    await cluster.wait(
        lambda: cluster.canary_status().get("observedGeneration") is not None,
        "another pass of the revision loop",
    )
    # a marker change that is a revision proves the loop kept running meanwhile
    await asyncio.to_thread(cluster.kubectl, "set", "image", "deployment/podinfo", f"podinfod={NEW}")
    releases = await cluster.wait(cluster.releases, "the real revision's release")
    assert [r["spec"]["images"] for r in releases] == [{"podinfod": NEW}]
