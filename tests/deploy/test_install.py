"""`kubectl apply -k manifests/` on the real control plane, and what the bot may then do.

The module installs once (server dry run first, then for real) and uninstalls at the end,
keeping the CRD the session's other tests use. The rights are checked twice: by
SubjectAccessReviews for each request the code sends (and for things it must never do),
and by running the engine with the ServiceAccount's token through a whole rollout.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from rollout.kube import Kube
from rollout.models import Phase
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from sandbox.slack_fake import SlackFake
from tests.deploy.kubectl import (
    CRDS,
    MANIFESTS,
    NAMESPACE,
    NAMESPACED,
    BotRun,
    Kubectl,
    Manifest,
    can,
    create_namespace,
    engine,
    http_get,
    lease_holder,
    one,
    rendered_namespace,
    run_as_pod,
    service_account_kubeconfig,
    uninstall,
    wait_for,
)
from tests.deploy.permissions import (
    CLUSTER_WIDE,
    FORBIDDEN,
    FORBIDDEN_LEASES,
    IN_BOT_NAMESPACE,
    IN_RELEASE_NAMESPACE,
    Access,
)
from tests.engine.test_rollout import (
    NEW,
    canary_objects,
    events,
    target_image,
    tutorial_spec,
    wait_phase,
)

pytestmark = pytest.mark.cluster

CRD_NAME = "canaryreleases.canarybot.io"


@dataclass
class Installation:
    """What happened while installing (each test asserts a part of it)."""

    objects: list[Manifest]
    dry_run: CompletedProcess[str]
    present_after_dry_run: str
    # `kubectl apply -k manifests/crds`, then `kubectl apply -k manifests/`
    apply_crds: CompletedProcess[str]
    apply: CompletedProcess[str]
    # A CanaryRelease that existed before the apply re-applied the CRD: (namespace, uid).
    sentinel: tuple[str, str]


def _sentinel_release(api: k8s.ApiClient) -> tuple[str, str]:
    namespace = f"t-crd-sentinel-{uuid.uuid4().hex[:6]}"
    create_namespace(api, namespace)
    body = {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "CanaryRelease",
        "metadata": {"name": "podinfo"},
        "spec": {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": NEW},
        },
    }
    created = k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        "canarybot.io", "v1alpha1", namespace, "canaryreleases", body
    )
    return namespace, created["metadata"]["uid"]


@pytest.fixture(scope="module")
def installation(
    kubectl: Kubectl, kube_api_client: k8s.ApiClient, crd: None
) -> Iterator[Installation]:
    """Install from a clean slate the way the README documents it: CRDs, then the bot."""
    uninstall(kubectl, kube_api_client, NAMESPACED)
    uninstall(kubectl, kube_api_client, MANIFESTS)
    sentinel = _sentinel_release(kube_api_client)
    apply_crds = kubectl.run("apply", "-k", str(CRDS))
    objects = kubectl.render(MANIFESTS)
    # A server-side dry run checks namespaced objects only once their namespace exists.
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(rendered_namespace(objects)))
    dry_run = kubectl.run("apply", "-k", str(MANIFESTS), "--dry-run=server", check=False)
    others = [o for o in objects if o["kind"] not in ("Namespace", "CustomResourceDefinition")]
    present = kubectl.run(
        "get", "--ignore-not-found", "-o", "name", "-f", "-", stdin=yaml.safe_dump_all(others)
    ).stdout
    applied = kubectl.run("apply", "-k", str(MANIFESTS), check=False)
    if applied.returncode != 0:
        pytest.fail(f"kubectl apply -k manifests/ failed:\n{applied.stdout}\n{applied.stderr}")
    try:
        yield Installation(objects, dry_run, present, apply_crds, applied, sentinel)
    finally:
        uninstall(kubectl, kube_api_client, MANIFESTS)
        k8s.CoreV1Api(kube_api_client).delete_namespace(sentinel[0])


def _line_for(output: str, kind: str, name: str) -> str:
    """kubectl's report line for one object: ``<kind>[.<group>]/<name> <what happened>``."""
    lines = []
    for line in output.splitlines():
        resource, _, rest = line.partition("/")
        if resource.split(".")[0] == kind.lower() and rest.split(" ")[0] == name:
            lines.append(line)
    assert len(lines) == 1, f"no single line for {kind}/{name} in:\n{output}"
    return lines[0]


def test_server_dry_run_accepts_every_object_and_changes_nothing(
    installation: Installation,
) -> None:
    result = installation.dry_run
    assert result.returncode == 0, result.stderr
    for obj in installation.objects:
        line = _line_for(result.stdout, obj["kind"], obj["metadata"]["name"])
        assert line.endswith("(server dry run)"), line
    # The namespace's "restricted" Pod Security level warns about a non-compliant pod
    # template here already.
    assert "PodSecurity" not in result.stderr, result.stderr
    assert installation.present_after_dry_run == "", "a dry run must not create anything"


def test_apply_installs_everything_and_a_second_apply_changes_nothing(
    installation: Installation, kubectl: Kubectl
) -> None:
    for obj in installation.objects:
        _line_for(installation.apply.stdout, obj["kind"], obj["metadata"]["name"])
    assert "PodSecurity" not in installation.apply.stderr
    drift = kubectl.run("diff", "-k", str(MANIFESTS), check=False)
    assert drift.returncode == 0, f"kubectl diff after apply:\n{drift.stdout}{drift.stderr}"


def test_reapplying_the_crd_keeps_it_serving_and_keeps_existing_releases(
    installation: Installation, kube_api_client: k8s.ApiClient
) -> None:
    # the crd fixture created it before the apply; kustomize applied it again
    line = _line_for(installation.apply_crds.stdout, "CustomResourceDefinition", CRD_NAME)
    assert "created" not in line, line
    crd = k8s.ApiextensionsV1Api(kube_api_client).read_custom_resource_definition(CRD_NAME)
    assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)
    assert [(v.name, v.served, v.storage) for v in crd.spec.versions] == [("v1alpha1", True, True)]
    namespace, uid = installation.sentinel
    release = k8s.CustomObjectsApi(kube_api_client).get_namespaced_custom_object(
        "canarybot.io", "v1alpha1", namespace, "canaryreleases", "podinfo"
    )
    assert release["metadata"]["uid"] == uid
    assert release["spec"]["images"] == {"podinfod": NEW}


def test_replicas_run_under_the_restricted_pod_security_level(
    installation: Installation, kubectl: Kubectl, kube_api_client: k8s.ApiClient
) -> None:
    labels = k8s.CoreV1Api(kube_api_client).read_namespace(NAMESPACE).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # the level is enforced: a pod without the hardening is refused...
    refused = kubectl.run(
        "run", "unhardened", "-n", NAMESPACE, "--image=busybox", "--dry-run=server", check=False
    )
    assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr
    # ...while both of the Deployment's pods were admitted and became available
    apps = k8s.AppsV1Api(kube_api_client)

    def available() -> int:
        status = apps.read_namespaced_deployment("canary-bot", NAMESPACE).status
        return int(status.available_replicas or 0)

    wait_for(lambda: available() == 2, 60, "2 available canary-bot replicas")


def _review(api: k8s.ApiClient, accesses: list[Access], namespace: str | None) -> dict[str, bool]:
    return {
        str(a): can(
            api,
            a.verb,
            a.resource,
            group=a.group,
            namespace=namespace,
            subresource=a.subresource,
            name=a.name,
        )
        for a in accesses
    }


def test_service_account_may_send_every_request_the_bot_sends(
    installation: Installation, kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    in_release_namespace = _review(kube_api_client, IN_RELEASE_NAMESPACE, namespace)
    cluster_wide = _review(kube_api_client, CLUSTER_WIDE, None)
    leases = _review(kube_api_client, IN_BOT_NAMESPACE, NAMESPACE)
    denied = [
        f"{access} ({where})"
        for where, reviews in (
            (namespace, in_release_namespace),
            ("all namespaces", cluster_wide),
            (NAMESPACE, leases),
        )
        for access, allowed in reviews.items()
        if not allowed
    ]
    assert denied == []


def test_service_account_cannot_touch_secrets_rbac_namespaces_or_other_leases(
    installation: Installation, kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    allowed = [
        f"{access} ({where or 'cluster'})"
        for where in (namespace, NAMESPACE, "kube-system", None)
        for access, ok in _review(kube_api_client, FORBIDDEN, where).items()
        if ok
    ]
    allowed += [
        f"{access} ({where})"
        for where in (NAMESPACE, "kube-system")
        for access, ok in _review(kube_api_client, FORBIDDEN_LEASES, where).items()
        if ok
    ]
    # its own Lease, but in another namespace
    allowed += [
        f"{access} (kube-system)"
        for access, ok in _review(kube_api_client, IN_BOT_NAMESPACE, "kube-system").items()
        if ok
    ]
    assert allowed == []


async def test_engine_as_the_service_account_completes_the_tutorial_rollout(
    installation: Installation,
    kubectl: Kubectl,
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: Any,
    prometheus: Any,
    tmp_path: Path,
) -> None:
    namespace = podinfo
    kubeconfig = service_account_kubeconfig(kubectl, control_plane, tmp_path / "sa.kubeconfig")
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    bot_kube = Kube.connect(kubeconfig=str(kubeconfig))
    try:
        # created with the bot's rights, as `/canary start` would
        store = ReleaseStore(bot_kube)
        await store.create(namespace, "podinfo", tutorial_spec(loadtester.url))
        with engine(
            kubeconfig, namespace, prometheus.url, tmp_path / "engine.log", "canary-bot-test-0"
        ) as process:
            wait_for(
                lambda: lease_holder(kube_api_client) == process.identity,
                30,
                f"the engine to take the Lease\n{process.log()}",
            )
            release = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 180)
            # the canary goes right after the outcome is stored: wait for it before the stop
            wait_for(
                lambda: not canary_objects(kube_api_client, namespace),
                30,
                f"the canary to be deleted\n{process.log()}",
            )
            exit_code = process.stop()
        log = process.log()
    finally:
        bot_kube.close()

    story = events(kube_api_client, namespace)
    assert release.status.phase == Phase.SUCCEEDED, "\n".join(story) + "\n" + log
    advances = [int(m.rsplit(" ", 1)[1]) for m in story if m.startswith("Advance podinfo.")]
    assert advances == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50], story
    assert story[-1] == f"Promotion completed! podinfo.{namespace} now runs {NEW}"
    assert target_image(kube_api_client, namespace) == NEW
    assert canary_objects(kube_api_client, namespace) == []
    assert sim.current_weight == 0
    # nothing it tried was refused (Event and Lease failures are only logged)
    assert "(403)" not in log and "Forbidden" not in log, log
    # SIGTERM: a clean exit that hands the Lease back for the other replica
    assert exit_code == 0, log
    assert lease_holder(kube_api_client) == ""


@pytest.fixture
def bot_process(
    installation: Installation,
    kubectl: Kubectl,
    control_plane: ControlPlane,
    prometheus: Any,
    slack_fake: SlackFake,
    signing_secret: str,
    tmp_path: Path,
) -> Iterator[BotRun]:
    """``canary-bot run`` as the Pod runs it: the Deployment's args, the ServiceAccount's
    token, the ConfigMap's config file and Slack credentials for HTTP mode (the fake)."""
    kubeconfig = service_account_kubeconfig(kubectl, control_plane, tmp_path / "sa.kubeconfig")
    env = {
        "PROMETHEUS_URL": prometheus.url,
        "SLACK_API_URL": slack_fake.api_url,
        "SLACK_BOT_TOKEN": slack_fake.bot_token,
        "SLACK_SIGNING_SECRET": signing_secret,
    }
    deployment = one(installation.objects, "Deployment", "canary-bot")
    configmap = one(installation.objects, "ConfigMap")
    with run_as_pod(deployment, configmap, kubeconfig, env, tmp_path) as bot:
        yield bot


def test_bot_process_serves_probes_and_metrics_on_the_metrics_port_only(
    bot_process: BotRun,
) -> None:
    bot = bot_process
    metrics, slack = bot.metrics_port, bot.port
    wait_for(lambda: http_get(metrics, "/healthz")[0] == 200, 30, f"/healthz\n{bot.log()}")
    wait_for(lambda: http_get(metrics, "/readyz")[0] == 200, 30, f"/readyz\n{bot.log()}")
    status, page = http_get(metrics, "/metrics")
    assert status == 200 and "# TYPE" in page
    # the Slack port, the one the Service exposes, tells nothing about the process
    assert http_get(slack, "/metrics")[0] == 404
    assert http_get(slack, "/readyz")[0] == 404
    assert http_get(slack, "/healthz")[0] == 200


def test_bot_process_leads_with_the_clusters_one_lease(
    bot_process: BotRun, kube_api_client: k8s.ApiClient
) -> None:
    bot = bot_process
    wait_for(lambda: http_get(bot.metrics_port, "/healthz")[0] == 200, 30, bot.log())
    hostname = socket.gethostname()
    wait_for(
        lambda: (lease_holder(kube_api_client) or "").startswith(hostname),
        20,
        f"canary-bot run to hold the Lease {NAMESPACE}/canary-bot-leader\n{bot.log()}",
    )
    assert "(403)" not in bot.log()


def test_plain_uninstall_keeps_the_crd_and_every_release(
    installation: Installation, kubectl: Kubectl, kube_api_client: k8s.ApiClient
) -> None:
    # last in this module: it takes the installation down the way an operator would
    kubectl.run("delete", "-k", str(MANIFESTS), "--wait=false")
    ext = k8s.ApiextensionsV1Api(kube_api_client)
    assert ext.read_custom_resource_definition(CRD_NAME).metadata.deletion_timestamp is None
    namespace, uid = installation.sentinel
    release = k8s.CustomObjectsApi(kube_api_client).get_namespaced_custom_object(
        "canarybot.io", "v1alpha1", namespace, "canaryreleases", "podinfo"
    )
    assert release["metadata"]["uid"] == uid
    assert release["metadata"].get("deletionTimestamp") is None
