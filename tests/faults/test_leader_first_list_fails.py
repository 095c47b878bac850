"""The engine wins the Lease, but its first list of CanaryReleases fails; then it may list.

This is what an API server that is still starting (or briefly overloaded) does to a
replica that just became leader: the Lease write succeeds, the LIST that follows does
not. Here the failure is made deterministic with RBAC: the engine's ServiceAccount may
use the Lease but not list CanaryReleases until the test grants it. A leader must keep
trying (or give the Lease up so another replica can lead) and run the rollout once the
list works.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from sandbox.controlplane import ControlPlane
from sandbox.prometheus import PrometheusServer
from tests.faults.conftest import EngineProcess
from tests.faults.helpers import create, lease_holder, releases, spec
from tests.fixtures.engine import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

APP = "app"
ACCOUNT = "canary-bot"


def rules(can_list_releases: bool) -> list[dict[str, Any]]:
    """What the engine needs in one namespace (with or without listing CanaryReleases)."""
    release_verbs = ["get", "watch", "update", "patch"] + (["list"] if can_list_releases else [])
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
        {"apiGroups": ["canarybot.io"], "resources": ["canaryreleases"], "verbs": release_verbs},
        {"apiGroups": ["canarybot.io"], "resources": ["canaryreleases/status"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "delete"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "create", "update", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]  # fmt: skip


def service_account_kubeconfig(
    api: k8s.ApiClient, control_plane: ControlPlane, namespace: str, path: Path
) -> Path:
    """A kubeconfig with a token of ServiceAccount ``ACCOUNT`` (as the engine has in a Pod)."""
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
    path.write_text(json.dumps(config))
    return path


def lease_moved_on(api: k8s.ApiClient, namespace: str, identity: str) -> bool:
    """Whether at least one renew period has passed since ``identity`` acquired the Lease.

    True once the holder renewed it, let it expire, or gave it up: the first LIST (made
    right after acquiring) has certainly been answered by then.
    """
    lease = k8s.CoordinationV1Api(api).read_namespaced_lease("canary-bot-leader", namespace).spec
    if lease.holder_identity != identity:
        return True
    renewed, acquired = lease.renew_time, lease.acquire_time
    if renewed is None or acquired is None:
        return True
    expired = datetime.now(UTC) - renewed > timedelta(seconds=lease.lease_duration_seconds)
    return bool(renewed > acquired or expired)


class NeverRecovered(AssertionError):
    """The leader never ran the rollout after its first LIST failed (the known engine bug)."""


def test_a_leader_whose_first_list_fails_recovers_once_it_can_list(
    kube_api_client: k8s.ApiClient,
    control_plane: ControlPlane,
    prometheus: PrometheusServer,
    crd: None,
    namespace: str,
    apps: Callable[[list[str]], None],
    tmp_path: Path,
) -> None:
    apps([APP])
    rbac = k8s.RbacAuthorizationV1Api(kube_api_client)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": ACCOUNT}, "rules": rules(False)})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
        },
    )
    kubeconfig = service_account_kubeconfig(
        kube_api_client, control_plane, namespace, tmp_path / "engine.kubeconfig"
    )
    engine = EngineProcess(
        "engine",
        [
            "--kubeconfig", str(kubeconfig),
            "--prometheus-url", prometheus.url,
            "--namespace", namespace,
            "--identity", "engine",
            "--lease-namespace", namespace,
            "--lease-seconds", "6",
        ],
        tmp_path,
    )  # fmt: skip
    engine.start()
    try:
        wait_for(lambda: lease_holder(kube_api_client, namespace) == "engine", 30, "the Lease")
        wait_for(
            lambda: lease_moved_on(kube_api_client, namespace, "engine"),
            30,
            "a renew period to pass after the engine took the Lease",
        )
        rbac.replace_namespaced_role(
            ACCOUNT, namespace, {"metadata": {"name": ACCOUNT}, "rules": rules(True)}
        )
        create(kube_api_client, namespace, APP, spec(APP, step_weight=50))
        deadline = time.monotonic() + 25
        while releases(kube_api_client, namespace)[APP].status.phase.value == "Initializing":
            if time.monotonic() > deadline:
                raise NeverRecovered(
                    "the engine did not pick the release up within 25s of being allowed to "
                    f"list CanaryReleases; Lease holder {lease_holder(kube_api_client, namespace)!r}"
                    f"\n{engine.log()[-2000:]}"
                )
            time.sleep(0.5)
    finally:
        engine.stop()
