"""What the fault tests check after the dust settles, written once."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from rollout.models import CanaryRelease, CanaryReleaseSpec, new_object
from sandbox.controlplane import ControlPlane
from tests.faults.conftest import EngineProcess
from tests.fixtures.engine import wait_for

OLD = "stefanprodan/podinfo:6.0.0"
NEW = "stefanprodan/podinfo:6.0.3"
FINAL = ("Succeeded", "Failed")
RELEASE_LABEL = "canarybot.io/release"


def spec(
    app: str,
    *,
    interval: str = "1s",
    threshold: int = 5,
    step_weight: int = 25,
    max_weight: int = 50,
    deadline: int = 120,
) -> CanaryReleaseSpec:
    """The tutorial's release with test-sized numbers (1 s interval, 10 s rate window)."""
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": app},
            "ingressRef": {"name": app},
            "images": {"podinfod": NEW},
            "service": {"port": 80, "targetPort": 9898},
            "progressDeadlineSeconds": deadline,
            "analysis": {
                "interval": interval,
                "threshold": threshold,
                "maxWeight": max_weight,
                "stepWeight": step_weight,
                "metrics": [
                    {
                        "name": "request-success-rate",
                        "thresholdRange": {"min": 99},
                        "interval": "10s",
                    }
                ],
            },
        }
    )


def create(api: k8s.ApiClient, namespace: str, name: str, release: CanaryReleaseSpec) -> None:
    """Create a CanaryRelease the way kubectl would."""
    k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        "canarybot.io",
        "v1alpha1",
        namespace,
        "canaryreleases",
        new_object(name, namespace, release),
    )


def releases(api: k8s.ApiClient, namespace: str) -> dict[str, CanaryRelease]:
    """Every CanaryRelease in the namespace, by name."""
    items = k8s.CustomObjectsApi(api).list_namespaced_custom_object(
        "canarybot.io", "v1alpha1", namespace, "canaryreleases"
    )["items"]
    return {i["metadata"]["name"]: CanaryRelease.from_object(i) for i in items}


def phases(api: k8s.ApiClient, namespace: str) -> dict[str, str]:
    """Phase of every release, by name."""
    return {name: r.status.phase.value for name, r in releases(api, namespace).items()}


def all_final(api: k8s.ApiClient, namespace: str, names: list[str]) -> dict[str, str] | None:
    """The phases once every release in ``names`` has ended, else None."""
    current = phases(api, namespace)
    if all(current.get(n) in FINAL for n in names):
        return current
    return None


def image_of(api: k8s.ApiClient, namespace: str, app: str) -> str:
    """The image the app's Deployment runs."""
    deployment = k8s.AppsV1Api(api).read_namespaced_deployment(app, namespace)
    return str(deployment.spec.template.spec.containers[0].image)


def canary_objects(api: k8s.ApiClient, namespace: str) -> list[str]:
    """Canary Deployments, Services and Ingresses still present (not being deleted).

    Found both by the engine's label and by the ``-canary`` name, so an object that lost
    its label would not hide.
    """
    listings: list[tuple[str, Any]] = [
        ("deployment", k8s.AppsV1Api(api).list_namespaced_deployment(namespace).items),
        ("service", k8s.CoreV1Api(api).list_namespaced_service(namespace).items),
        ("ingress", k8s.NetworkingV1Api(api).list_namespaced_ingress(namespace).items),
    ]
    found = []
    for kind, items in listings:
        for obj in items:
            labels = obj.metadata.labels or {}
            if obj.metadata.deletion_timestamp is not None:
                continue
            if RELEASE_LABEL in labels or obj.metadata.name.endswith("-canary"):
                found.append(f"{kind}/{obj.metadata.name}")
    return sorted(found)


def canary_weight_on_ingress(api: k8s.ApiClient, namespace: str, app: str) -> int | None:
    """The weight annotation of ``app``'s canary Ingress (None when the Ingress is gone)."""
    try:
        ingress = k8s.NetworkingV1Api(api).read_namespaced_ingress(f"{app}-canary", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    if ingress.metadata.deletion_timestamp is not None:
        return None
    annotations = ingress.metadata.annotations or {}
    return int(annotations.get("nginx.ingress.kubernetes.io/canary-weight", "0"))


def canary_leftovers(api: k8s.ApiClient, namespace: str, timeout: float = 30.0) -> list[str]:
    """Canary objects still present ``timeout`` s from now (an ending stores its outcome
    first and deletes the canary right after, so they may take a moment to go)."""
    deadline = time.monotonic() + timeout
    while (found := canary_objects(api, namespace)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def outbox_problems(release: CanaryRelease) -> list[str]:
    """What is wrong with a release's event outbox (empty when all is well).

    Sequence numbers are contiguous and end at ``eventSeq`` (nothing lost or repeated),
    start at 1 unless the bounded list dropped the oldest, every event was delivered,
    and the story has one start and at most one ending.
    """
    status = release.status
    seqs = [e.seq for e in status.events]
    problems = []
    if not seqs:
        return [f"{release.metadata.name}: no events at all"]
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        problems.append(f"{release.metadata.name}: event seqs not contiguous: {seqs}")
    if seqs[-1] != status.event_seq:
        problems.append(
            f"{release.metadata.name}: last seq {seqs[-1]} != eventSeq {status.event_seq}"
        )
    if seqs[0] != 1 and len(seqs) < 40:
        problems.append(f"{release.metadata.name}: events start at seq {seqs[0]}: {seqs}")
    if status.notification.delivered_seq != status.event_seq:
        problems.append(
            f"{release.metadata.name}: delivered up to {status.notification.delivered_seq} "
            f"of {status.event_seq}"
        )
    types = [e.type for e in status.events]
    if seqs[0] == 1 and types.count("Started") != 1:
        problems.append(
            f"{release.metadata.name}: {types.count('Started')} Started events: {types}"
        )
    endings = types.count("Promoted") + types.count("RolledBack")
    if endings > 1:
        problems.append(f"{release.metadata.name}: {endings} ending events: {types}")
    return problems


def lease_holder(api: k8s.ApiClient, namespace: str, name: str = "canary-bot-leader") -> str:
    """The Lease's holderIdentity ('' when nobody holds it or it does not exist)."""
    try:
        lease = k8s.CoordinationV1Api(api).read_namespaced_lease(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


def story(release: CanaryRelease) -> str:
    """The release's events as lines, for failure messages."""
    return "\n".join(f"  {e.seq:>3} {e.type:<13} {e.message}" for e in release.status.events)


# -- an engine with exactly the rights it needs, which a test can take away -----------------

ACCOUNT = "canary-bot"


def rules(can_list_releases: bool = True, can_renew_lease: bool = True) -> list[dict[str, Any]]:
    """What the engine needs in one namespace, optionally without listing or Lease updates."""
    release_verbs = ["get", "watch", "update", "patch"] + (["list"] if can_list_releases else [])
    lease_verbs = ["get", "create"] + (["update"] if can_renew_lease else [])
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": lease_verbs},
        {"apiGroups": ["canarybot.io"], "resources": ["canaryreleases"], "verbs": release_verbs},
        {"apiGroups": ["canarybot.io"], "resources": ["canaryreleases/status"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["canarybot.io"], "resources": ["canaries"], "verbs": ["get", "list", "watch", "update"]},
        {"apiGroups": ["canarybot.io"], "resources": ["canaries/status"], "verbs": ["update"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "create", "delete"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["get", "list", "create", "delete"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]  # fmt: skip


def set_rules(api: k8s.ApiClient, namespace: str, granted: list[dict[str, Any]]) -> None:
    """Replace what ServiceAccount ``ACCOUNT`` may do (RBAC applies it within moments)."""
    k8s.RbacAuthorizationV1Api(api).replace_namespaced_role(
        ACCOUNT, namespace, {"metadata": {"name": ACCOUNT}, "rules": granted}
    )


def restricted_engine(
    api: k8s.ApiClient,
    control_plane: ControlPlane,
    prometheus_url: str,
    namespace: str,
    log_dir: Path,
    granted: list[dict[str, Any]],
) -> EngineProcess:
    """An engine (not started, leader election on) running as ServiceAccount ``ACCOUNT``.

    The account gets a Role with ``granted`` and a token, as the engine has in a Pod.
    """
    rbac = k8s.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": ACCOUNT}, "rules": granted})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
        },
    )
    core = k8s.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": ACCOUNT}})
    token = core.create_namespaced_service_account_token(
        ACCOUNT, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    ca = admin["clusters"][0]["cluster"]["certificate-authority-data"]
    base64.b64decode(ca)  # fail here, not in the engine, if the admin kubeconfig changes shape
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": control_plane.server, "certificate-authority-data": ca},
            }
        ],
        "users": [{"name": ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": ACCOUNT}}],
        "current-context": "local",
    }
    kubeconfig = log_dir / "engine.kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    args = [
        "--kubeconfig", str(kubeconfig),
        "--prometheus-url", prometheus_url,
        "--namespace", namespace,
        "--identity", "engine",
        "--lease-namespace", namespace,
        "--lease-seconds", "6",
    ]  # fmt: skip
    return EngineProcess("engine", args, log_dir)


# -- engines with their own identity, whose requests the API server counts ---------------

ENGINE_ROLE = "canary-bot-engine"
WRITE_VERBS = ["create", "update", "patch", "delete", "deletecollection"]
READ_VERBS = ["get", "list", "watch"]


def counted_engine_account(
    api: k8s.ApiClient, control_plane: ControlPlane, namespace: str, name: str, server: str
) -> tuple[Any, list[str]]:
    """ServiceAccount ``name`` with the engine's rights, a kubeconfig reaching the API
    server at ``server`` (e.g. through a proxy), and two FlowSchemas: the API server
    counts that account's writes under ``flow_schemas[0]`` and its reads under ``[1]``
    (``apiserver_flowcontrol_dispatched_requests_total``). Returns the kubeconfig's
    contents and the FlowSchema names (delete them with ``delete_flow_schemas``)."""
    rbac = k8s.RbacAuthorizationV1Api(api)
    try:
        rbac.create_namespaced_role(
            namespace, {"metadata": {"name": ENGINE_ROLE}, "rules": rules()}
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": ENGINE_ROLE,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )
    core = k8s.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    ca = admin["clusters"][0]["cluster"]["certificate-authority-data"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": name}}],
        "current-context": "local",
    }
    schemas = []
    for kind, verbs in (("writes", WRITE_VERBS), ("reads", READ_VERBS)):
        schema = f"{namespace}-{name}-{kind}"
        _create_flow_schema(api, schema, namespace, name, verbs)
        schemas.append(schema)
    return config, schemas


def _create_flow_schema(
    api: k8s.ApiClient, schema: str, namespace: str, account: str, verbs: list[str]
) -> None:
    # exempt priority level: counted, never queued, so counting changes nothing
    body = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": schema},
        "spec": {
            "matchingPrecedence": 500,
            "priorityLevelConfiguration": {"name": "exempt"},
            "rules": [
                {
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {"name": account, "namespace": namespace},
                        }
                    ],
                    "resourceRules": [
                        {
                            "verbs": verbs,
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                }
            ],
        },
    }
    k8s.CustomObjectsApi(api).create_cluster_custom_object(
        "flowcontrol.apiserver.k8s.io", "v1", "flowschemas", body
    )


def delete_flow_schemas(api: k8s.ApiClient, schemas: list[str]) -> None:
    """Remove FlowSchemas made by ``counted_engine_account`` (they are cluster-wide)."""
    for schema in schemas:
        try:
            k8s.CustomObjectsApi(api).delete_cluster_custom_object(
                "flowcontrol.apiserver.k8s.io", "v1", "flowschemas", schema
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


def dispatched(api: k8s.ApiClient, schema: str) -> int:
    """Requests the API server has dispatched under FlowSchema ``schema`` so far."""
    response = api.call_api(
        "/metrics",
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    text = response.data.decode()
    label = f'flow_schema="{schema}"'
    count = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_flowcontrol_dispatched_requests_total{") and label in line:
            count += float(line.rsplit(" ", 1)[1])
    return int(count)


def killed_at_failpoint(engine: EngineProcess, point: str) -> None:
    """Wait until ``engine`` killed itself (SIGKILL) at failpoint ``point``."""
    code = wait_for(
        lambda: None if engine.alive else engine.wait_exit(1),
        120,
        f"the engine to die at failpoint {point}",
        interval=0.2,
    )
    assert code == -9, f"the engine exited with {code}, not SIGKILL:\n{engine.log()}"
    assert f"failpoint {point}" in engine.current_log(), engine.log()


def restart_without_failpoint(engine: EngineProcess) -> None:
    """Start ``engine`` again, as it runs in production (no failpoint armed)."""
    engine.env.pop("CANARY_BOT_CRASH_AT")
    engine.start()
