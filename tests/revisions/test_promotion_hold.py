"""A template change while canary-bot promotes a managed Deployment, on the real control
plane (API server, Deployment controller, kwok pods).

The promotion is held open by ``minReadySeconds`` (each new pod counts as available only
after it), so the change lands while the Deployment is unpaused for the analysed
revision:

- without the admission policy, canary-bot pauses the Deployment first, supersedes the
  release and releases the newest template after its own analysis;
- with ``canary-bot-promotion-hold``, the change is refused until the promotion
  completes; retried as a GitOps tool would, it becomes a release of its own, and no pod
  of the user's Deployment ever runs it before that release's promotion.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from rollout.controller import Controller, EngineSettings
from rollout.kube import Kube
from rollout.notify import LoggingNotifier
from sandbox.controlplane import ControlPlane
from tests.deploy.kubectl import Kubectl
from tests.fixtures.engine import ControllerFactory
from tests.revisions.conftest import OLD, Cluster, canary_manifest
from tests.revisions.hold import (
    Timeline,
    bot_identity,
    hold_installed,
    image_of,
    promoting,
    refusal,
)

pytestmark = [pytest.mark.cluster]

NEW = "stefanprodan/podinfo:6.0.3"
NEWER = "stefanprodan/podinfo:6.0.5"
# analysed: two steps of 25 % at 1 s (no metrics: the steps and their webhooks only)
ANALYSED = {"skipAnalysis": False}
HOLD_OPEN = '{"spec": {"minReadySeconds": 8}}'  # not a template change: not a revision


async def kubectl(cluster: Cluster, *args: str, check: bool = True) -> Any:
    if check:
        return await asyncio.to_thread(cluster.kubectl, *args)
    runner = Kubectl(Path(cluster.kubectl_bin), Path(cluster.kubeconfig))
    return await asyncio.to_thread(runner.run, "-n", cluster.namespace, *args, check=False)


async def release_in(
    cluster: Cluster, phases: tuple[str, ...], index: int = 0, timeout: float = 120
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        releases = cluster.releases()
        if len(releases) > index and cluster.phase(releases[index]) in phases:
            return releases[index]
        return None

    found: dict[str, Any] = await cluster.wait(reached, f"release {index} in {phases}", timeout)
    return found


def set_image(api: k8s.ApiClient, namespace: str, image: str) -> float:
    """What ``kubectl set image`` sends; the monotonic time its answer arrived."""
    body = {"spec": {"template": {"spec": {"containers": [{"name": "podinfod", "image": image}]}}}}
    k8s.AppsV1Api(api).patch_namespaced_deployment(
        "podinfo", namespace, body, field_manager="kubectl-set"
    )
    return time.monotonic()


async def promoting_first(cluster: Cluster) -> dict[str, Any]:
    """Adopted podinfo under an analysed Canary; NEW released up to its promotion."""
    await asyncio.to_thread(cluster.kubectl, "apply", "-f", "-", stdin=canary_manifest(**ANALYSED))
    await cluster.wait(lambda: cluster.canary_status().get("stableHash"), "adoption")
    await kubectl(cluster, "patch", "deployment/podinfo", "-p", HOLD_OPEN)
    await kubectl(cluster, "set", "image", "deployment/podinfo", f"podinfod={NEW}")
    first = await release_in(cluster, ("Promoting",))
    name = first["metadata"]["name"]
    await cluster.wait(
        lambda: promoting(cluster.deployment()) == name and not cluster.deployment().spec.paused,
        "the promotion to unpause podinfo, marked with its release",
    )
    return first


async def test_a_change_during_promotion_is_paused_first_then_released_after_analysis(
    cluster: Cluster, controller_factory: ControllerFactory, kube_api_client: k8s.ApiClient
) -> None:
    # the default poll (2 s): the Deployment's watch event is what wakes the loop
    await controller_factory(namespace=cluster.namespace)
    first = await promoting_first(cluster)

    with Timeline(kube_api_client, cluster.namespace) as timeline:
        answered = await asyncio.to_thread(set_image, kube_api_client, cluster.namespace, NEWER)
        await cluster.wait(
            lambda: cluster.deployment().spec.paused and image_of(cluster.deployment()) == NEWER,
            "podinfo to be paused again",
        )
        ended = await release_in(cluster, ("Failed",))
        second = await release_in(cluster, ("Progressing",), index=1)  # its analysis runs
        done = await release_in(cluster, ("Succeeded", "Failed"), index=1, timeout=180)
        second_name = second["metadata"]["name"]
        promoted_at = timeline.first_deployment(lambda d: promoting(d) == second_name)

    assert ended["metadata"]["name"] == first["metadata"]["name"]
    assert "superseded by revision" in ended["status"]["reason"]
    assert second["spec"]["images"] == {"podinfod": NEWER}
    assert cluster.phase(done) == "Succeeded"
    stored = timeline.first_deployment(lambda d: image_of(d) == NEWER)
    paused = timeline.first_deployment(lambda d: image_of(d) == NEWER and d.spec.paused)
    assert stored is not None and paused is not None and promoted_at is not None
    early = timeline.pods_created(NEWER, before=promoted_at)
    # The window is measured, not bounded here (no timed assertions under shared CPU).
    print(
        f"\npromotion hold: PATCH answered -> paused seen {1000 * (paused - answered):.0f} ms, "
        f"change seen -> paused seen {1000 * (paused - stored):.0f} ms, "
        f"pods of the unanalysed revision created before its promotion: {len(early)} {early}"
    )
    status = await cluster.wait(
        lambda: (s := cluster.canary_status()).get("lastRevision", {}).get("outcome")
        == "Succeeded"
        and s,
        "the Canary to record the newest release",
    )
    assert status["stableImages"] == {"podinfod": NEWER}
    assert cluster.deployment().spec.paused is True and promoting(cluster.deployment()) == ""


@pytest.fixture
def bot_kube(cluster: Cluster, control_plane: ControlPlane) -> Iterator[Kube]:
    """canary-bot's ServiceAccount, with the promotion hold in force in the namespace."""
    admin = Kubectl(control_plane.bin_dir / "kubectl", control_plane.kubeconfig)
    with hold_installed(admin, cluster.namespace), bot_identity(
        admin, control_plane.kubeconfig, cluster.namespace
    ) as kube:
        yield kube


@pytest.fixture
async def bot_controller(
    bot_kube: Kube, cluster: Cluster, prometheus: Any
) -> AsyncIterator[Callable[[], Any]]:
    """Starts the controller as canary-bot's ServiceAccount; stops it afterwards."""
    started: list[Controller] = []

    async def start() -> Controller:
        settings = EngineSettings(
            prometheus_url=prometheus.url,
            namespace=cluster.namespace,
            leader_election=False,
            max_tick_seconds=1.0,
            revision_interval_seconds=0.5,
        )
        controller = Controller(bot_kube, LoggingNotifier(), settings, "test")
        await controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        await controller.stop()


async def test_with_the_hold_a_change_waits_for_the_promotion_and_no_pod_runs_it_early(
    cluster: Cluster, bot_controller: Callable[[], Any], kube_api_client: k8s.ApiClient
) -> None:
    await bot_controller()
    with Timeline(kube_api_client, cluster.namespace) as timeline:
        first = await promoting_first(cluster)
        name = first["metadata"]["name"]

        refused = await kubectl(
            cluster, "set", "image", "deployment/podinfo", f"podinfod={NEWER}", check=False
        )
        assert refused.returncode != 0
        assert refusal(name) in refused.stderr, refused.stderr

        async def retried() -> Any:  # as Flux or Argo CD would, until it is accepted
            while True:
                done = await kubectl(
                    cluster, "set", "image", "deployment/podinfo", f"podinfod={NEWER}", check=False
                )
                if done.returncode == 0:
                    return done
                assert refusal(name) in done.stderr, done.stderr
                await asyncio.sleep(0.5)

        await asyncio.wait_for(retried(), 120)
        # accepted only once the promotion completed
        assert cluster.phase(cluster.releases()[0]) == "Succeeded"
        second = await release_in(cluster, ("Progressing",), index=1)
        done = await release_in(cluster, ("Succeeded", "Failed"), index=1, timeout=180)
        promoted_at = timeline.first_deployment(
            lambda d: promoting(d) == second["metadata"]["name"]
        )

    assert second["spec"]["images"] == {"podinfod": NEWER}
    assert cluster.phase(done) == "Succeeded"
    assert promoted_at is not None
    assert timeline.pods_created(NEWER, before=promoted_at) == []
    assert timeline.pods_created(NEWER) != []  # the promotion itself did roll it out
    assert image_of(cluster.deployment()) == NEWER
    assert cluster.canary_status()["stableImages"] != {"podinfod": OLD}
