"""`kubectl apply -k manifests/overlays/namespaced/`: a bot confined to the `apps` namespace.

Installed after uninstalling anything the base left, so no ClusterRoleBinding can lend
the ServiceAccount rights this overlay does not grant.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from rollout.kube import Kube
from rollout.models import CanaryReleaseStatus, Phase
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from sandbox.sample_app import deploy_podinfo
from sandbox.slack_fake import SlackFake
from tests.bot.harness import ALICE, ephemeral_texts, post_signed
from tests.deploy.kubectl import (
    MANIFESTS,
    NAMESPACE,
    NAMESPACED,
    Kubectl,
    can,
    create_namespace,
    engine,
    http_get,
    lease_holder,
    one,
    pod_command,
    run_as_pod,
    service_account_kubeconfig,
    uninstall,
    wait_for,
)
from tests.deploy.permissions import CLUSTER_WIDE, IN_BOT_NAMESPACE, IN_RELEASE_NAMESPACE
from tests.engine.test_rollout import NEW, canary_objects, events, target_image, tutorial_spec
from tests.engine.test_rollout import wait_phase as wait_for_phase
from tests.fixtures.engine import async_wait_for
from tests.fixtures.slack import SlackRequests, eventually

pytestmark = pytest.mark.cluster

APPS = "apps"
SCOPED_IMAGE = "stefanprodan/podinfo:6.0.4"


async def ask(port: int, fake: SlackFake, requests: SlackRequests, text: str) -> str:
    """Send ``/canary <text>`` as Alice; what she is told (privately) in answer."""
    before = len(ephemeral_texts(fake, ALICE))
    status, _ = await post_signed(port, requests.slash_command(text=text))
    assert status == 200
    told = await eventually(lambda: ephemeral_texts(fake, ALICE)[before:], within=15)
    return told[0]


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
        hooks = [
            w.model_dump(by_alias=True) for w in tutorial_spec(loadtester.url).analysis.webhooks
        ]
        hooks.append(
            {
                "name": "notify",
                "type": "post-rollout",
                "url": f"{loadtester.url}/notify",
                "metadata": {"cmd": "echo done"},
            }
        )
        analysis = {"maxWeight": 10, "stepWeight": 5, "webhooks": hooks}
        spec = tutorial_spec(loadtester.url, analysis=analysis)
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
            # the post-rollout hook ran and its record was written under the Role's verbs
            loadtester.wait_for_call(path="/notify", timeout=30)

            async def recorded() -> bool:
                stored = await store.get(APPS, "podinfo")
                return stored is not None and not stored.status.post_rollout_due

            await async_wait_for(recorded, 30, f"postRolloutDue cleared\n{process.log()}")
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


async def test_overlay_bot_runs_a_release_under_its_role_and_shows_only_apps(
    namespaced_install: CompletedProcess[str],
    kubectl: Kubectl,
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    traffic: Any,
    loadtester: Any,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
    tmp_path: Path,
) -> None:
    # `canary-bot run` exactly as the overlay's Deployment runs it (its args, its config,
    # the ServiceAccount's token), in HTTP mode against the Slack fake
    objects = kubectl.render(NAMESPACED)
    deployment = one(objects, "Deployment", "canary-bot")
    assert "--namespace" in pod_command(deployment, 1, 2)
    deploy_podinfo(kube_api_client, APPS)
    apps_api = k8s.AppsV1Api(kube_api_client)
    wait_for(
        lambda: (
            (apps_api.read_namespaced_deployment("podinfo", APPS).status.ready_replicas or 0) == 2
        ),
        60,
        "podinfo to have 2 ready replicas in apps",
    )
    traffic(APPS, "podinfo", "podinfo", rps=40)
    # another team's finished release, which a bot scoped to apps must not show
    admin = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
    try:
        other = await ReleaseStore(admin).create(
            namespace, "other-team", tutorial_spec(loadtester.url)
        )
        await ReleaseStore(admin).write_status(
            other, CanaryReleaseStatus(phase=Phase.SUCCEEDED, finished_at=datetime.now(UTC))
        )
    finally:
        admin.close()

    kubeconfig = service_account_kubeconfig(kubectl, control_plane, tmp_path / "sa.kubeconfig")
    env = {
        "PROMETHEUS_URL": prometheus.url,
        "SLACK_API_URL": slack_fake.api_url,
        "SLACK_BOT_TOKEN": slack_fake.bot_token,
        "SLACK_SIGNING_SECRET": signing_secret,
    }
    bot_kube = Kube.connect(kubeconfig=str(kubeconfig))
    store = ReleaseStore(bot_kube)
    try:
        with run_as_pod(deployment, one(objects, "ConfigMap"), kubeconfig, env, tmp_path) as bot:
            wait_for(lambda: http_get(bot.metrics_port, "/readyz")[0] == 200, 60, bot.log())
            wait_for(
                lambda: (lease_holder(kube_api_client) or "").startswith(socket.gethostname()),
                30,
                f"the scoped bot to take the Lease\n{bot.log()}",
            )
            # an image podinfo does not run yet (an earlier test may have promoted NEW)
            spec = tutorial_spec(
                loadtester.url,
                analysis={"maxWeight": 10, "stepWeight": 5},
                images={"podinfod": SCOPED_IMAGE},
            )
            await store.create(APPS, "podinfo-scoped", spec)
            release = await wait_for_phase(
                store, APPS, {Phase.SUCCEEDED, Phase.FAILED}, 120, name="podinfo-scoped"
            )
            story = events(kube_api_client, APPS)
            assert release.status.phase == Phase.SUCCEEDED, "\n".join(story) + bot.log()

            answers = [
                await ask(bot.port, slack_fake, slack_requests, text)
                for text in ("list", "history", f"history -n {namespace}")
            ]
            log = bot.log()
    finally:
        bot_kube.close()

    listed, history, elsewhere = answers
    assert listed == "No active releases in apps."
    assert history.startswith("*Release history in apps*"), history
    assert "`podinfo-scoped` (apps) Succeeded" in history
    assert "other-team" not in history
    assert elsewhere.startswith(":warning: This canary-bot handles namespace apps only")
    assert f"releases in {namespace}" in elsewhere
    assert target_image(kube_api_client, APPS) == SCOPED_IMAGE
    assert canary_objects(kube_api_client, APPS) == []
    # nothing it sent was refused by its Role
    assert "(403)" not in log and "Forbidden" not in log, log
