"""`kubectl apply -k manifests/overlays/namespaced/`: a bot confined to the `apps` namespace.

Installed after uninstalling anything the base left, so no ClusterRoleBinding can lend
the ServiceAccount rights this overlay does not grant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from rollout.kube import Kube
from rollout.models import Phase
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from sandbox.sample_app import deploy_podinfo
from tests.deploy.kubectl import (
    MANIFESTS,
    NAMESPACE,
    NAMESPACED,
    Kubectl,
    can,
    create_namespace,
    engine,
    lease_holder,
    service_account_kubeconfig,
    uninstall,
    wait_for,
)
from tests.deploy.permissions import CLUSTER_WIDE, IN_BOT_NAMESPACE, IN_RELEASE_NAMESPACE
from tests.engine.test_rollout import NEW, canary_objects, events, target_image, tutorial_spec
from tests.engine.test_rollout import wait_phase as wait_for_phase

pytestmark = pytest.mark.cluster

APPS = "apps"


@pytest.fixture(scope="module")
def namespaced_install(
    kubectl: Kubectl, kube_api_client: k8s.ApiClient, crd: None
) -> Iterator[CompletedProcess[str]]:
    """The overlay applied on a cluster where `apps` exists and the base is not installed."""
    uninstall(kubectl, kube_api_client, MANIFESTS)
    uninstall(kubectl, kube_api_client, NAMESPACED)
    create_namespace(kube_api_client, APPS)
    applied = kubectl.run("apply", "-k", str(NAMESPACED))
    try:
        yield applied
    finally:
        uninstall(kubectl, kube_api_client, NAMESPACED)
        k8s.CoreV1Api(kube_api_client).delete_namespace(APPS, propagation_policy="Background")


def test_overlay_installs_no_cluster_wide_rights(
    namespaced_install: CompletedProcess[str], kube_api_client: k8s.ApiClient
) -> None:
    assert "clusterrole" not in namespaced_install.stdout
    rbac = k8s.RbacAuthorizationV1Api(kube_api_client)
    bound = [
        b.metadata.name
        for b in rbac.list_cluster_role_binding().items
        if any(s.kind == "ServiceAccount" and s.namespace == NAMESPACE for s in b.subjects or [])
    ]
    assert bound == []
    role = rbac.read_namespaced_role("canary-bot", APPS)
    assert role.rules


def test_service_account_may_do_its_work_in_apps_only(
    namespaced_install: CompletedProcess[str], kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    def review(where: str | None, accesses: list[Any]) -> dict[str, bool]:
        return {
            str(a): can(
                kube_api_client,
                a.verb,
                a.resource,
                group=a.group,
                namespace=where,
                subresource=a.subresource,
                name=a.name,
            )
            for a in accesses
        }

    in_apps = review(APPS, IN_RELEASE_NAMESPACE)
    leases = review(NAMESPACE, IN_BOT_NAMESPACE)
    assert [a for a, ok in {**in_apps, **leases}.items() if not ok] == []
    # another application's namespace, and everything cluster-wide, stay out of reach
    for where in (namespace, "default", "kube-system"):
        elsewhere = review(where, IN_RELEASE_NAMESPACE)
        assert [a for a, ok in elsewhere.items() if ok] == [], where
    assert [a for a, ok in review(None, CLUSTER_WIDE).items() if ok] == []


def test_service_account_token_is_refused_outside_apps(
    namespaced_install: CompletedProcess[str],
    kubectl: Kubectl,
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    # The same question asked with a real token rather than a review: a Deployment in
    # another namespace can be neither read nor deleted.
    k8s.AppsV1Api(kube_api_client).create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "other-team"},
            "spec": {
                "selector": {"matchLabels": {"app": "other-team"}},
                "template": {
                    "metadata": {"labels": {"app": "other-team"}},
                    "spec": {"containers": [{"name": "app", "image": "busybox"}]},
                },
            },
        },
    )
    kubeconfig = service_account_kubeconfig(kubectl, control_plane, tmp_path / "sa.kubeconfig")
    bot_client = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    bot = k8s.AppsV1Api(bot_client)
    attempts: list[Callable[[], Any]] = [
        lambda: bot.read_namespaced_deployment("other-team", namespace),
        lambda: bot.delete_namespaced_deployment("other-team", namespace),
        lambda: bot.patch_namespaced_deployment("other-team", namespace, {"spec": {"replicas": 0}}),
    ]
    try:
        for attempt in attempts:
            with pytest.raises(ApiException) as refused:
                attempt()
            assert refused.value.status == 403
    finally:
        bot_client.close()
    assert k8s.AppsV1Api(kube_api_client).read_namespaced_deployment("other-team", namespace)


async def test_engine_limited_to_apps_completes_a_rollout(
    namespaced_install: CompletedProcess[str],
    kubectl: Kubectl,
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    traffic: Any,
    loadtester: Any,
    prometheus: Any,
    tmp_path: Path,
) -> None:
    deploy_podinfo(kube_api_client, APPS)
    apps_api = k8s.AppsV1Api(kube_api_client)
    wait_for(
        lambda: (
            (apps_api.read_namespaced_deployment("podinfo", APPS).status.ready_replicas or 0) == 2
        ),
        60,
        "podinfo to have 2 ready replicas in apps",
    )
    kubeconfig = service_account_kubeconfig(kubectl, control_plane, tmp_path / "sa.kubeconfig")
    traffic(APPS, "podinfo", "podinfo", rps=40)
    bot_kube = Kube.connect(kubeconfig=str(kubeconfig))
    try:
        store = ReleaseStore(bot_kube)
        spec = tutorial_spec(loadtester.url, analysis={"maxWeight": 10, "stepWeight": 5})
        await store.create(APPS, "podinfo", spec)
        with engine(
            kubeconfig, APPS, prometheus.url, tmp_path / "engine.log", "canary-bot-apps-0"
        ) as process:
            wait_for(
                lambda: lease_holder(kube_api_client) == process.identity,
                30,
                f"the engine to take the Lease\n{process.log()}",
            )
            release = await wait_for_phase(store, APPS, {Phase.SUCCEEDED, Phase.FAILED}, 120)
            exit_code = process.stop()
        log = process.log()
    finally:
        bot_kube.close()

    story = events(kube_api_client, APPS)
    assert release.status.phase == Phase.SUCCEEDED, "\n".join(story) + "\n" + log
    assert [m for m in story if m.startswith("Advance podinfo.")] == [
        f"Advance podinfo.{APPS} canary weight 5",
        f"Advance podinfo.{APPS} canary weight 10",
    ], story
    assert target_image(kube_api_client, APPS) == NEW
    assert canary_objects(kube_api_client, APPS) == []
    assert "(403)" not in log and "Forbidden" not in log, log
    assert exit_code == 0, log
