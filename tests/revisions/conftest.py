"""Fixtures for the revision tests: both CRDs, podinfo under a Canary, kubectl, helpers."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from rollout.kube import Kube
from sandbox.controlplane import ControlPlane
from tests.fixtures.engine import async_wait_for, wait_for

ROOT = Path(__file__).resolve().parents[2]
CANARY_CRD = ROOT / "manifests" / "crds" / "canaries.yaml"
GROUP, VERSION = "canarybot.io", "v1alpha1"
OLD = "stefanprodan/podinfo:6.0.0"


@pytest.fixture(scope="session")
def canary_crd(kube_api_client: k8s.ApiClient, crd: None) -> None:
    """The Canary CRD from manifests/crds, installed and served."""
    ext = k8s.ApiextensionsV1Api(kube_api_client)
    body = yaml.safe_load(CANARY_CRD.read_text())
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    custom = k8s.CustomObjectsApi(kube_api_client)

    def serving() -> bool:
        try:
            custom.list_cluster_custom_object(GROUP, VERSION, "canaries", limit=1)
        except ApiException as exc:
            if exc.status in (404, 429):
                return False
            raise
        return True

    wait_for(serving, 30, "the API server to serve Canaries")


class Cluster:
    """The test's view of one namespace: kubectl, the Deployment, Canaries, releases."""

    def __init__(self, control_plane: ControlPlane, api: k8s.ApiClient, namespace: str) -> None:
        self.kubectl_bin = str(control_plane.bin_dir / "kubectl")
        self.kubeconfig = str(control_plane.kubeconfig)
        self.namespace = namespace
        self.apps = k8s.AppsV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        self.core = k8s.CoreV1Api(api)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        """Run the real kubectl in the test namespace; fail with its stderr."""
        done = subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def deployment(self, name: str = "podinfo") -> Any:
        return self.apps.read_namespaced_deployment(name, self.namespace)

    def canary(self, name: str = "podinfo") -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "canaries", name
        )
        return obj

    def canary_status(self, name: str = "podinfo") -> dict[str, Any]:
        return dict(self.canary(name).get("status") or {})

    def releases(self) -> list[dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "canaryreleases"
        )["items"]
        return sorted(items, key=lambda r: r["metadata"]["creationTimestamp"])

    def phase(self, release: dict[str, Any]) -> str:
        return str((release.get("status") or {}).get("phase", ""))

    def pod_images(self) -> dict[str, set[str]]:
        """Pod name -> images, for every pod in the namespace now."""
        pods = self.core.list_namespaced_pod(self.namespace).items
        return {p.metadata.name: {c.image for c in p.spec.containers} for p in pods}

    async def wait(self, condition: Callable[[], Any], what: str, timeout: float = 90) -> Any:
        """Poll ``condition`` (a blocking call, run in a thread) without blocking the
        event loop the engine runs in."""

        async def check() -> Any:
            return await asyncio.to_thread(condition)

        return await async_wait_for(check, timeout, what, interval=0.3)


def canary_manifest(**spec: Any) -> str:
    """A Canary for podinfo (test-sized: skipAnalysis unless told otherwise)."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "nginx",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 80, "targetPort": 9898},
            "skipAnalysis": True,
            "analysis": {"interval": "1s", "threshold": 2, "maxWeight": 50, "stepWeight": 25},
        },
    }
    body["spec"].update(spec)
    return yaml.safe_dump(body)


@pytest.fixture
def cluster(
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    canary_crd: None,
    kube: Kube,
) -> Cluster:
    """podinfo (2 ready pods of 6.0.0) in a fresh namespace, no Canary yet."""
    return Cluster(control_plane, kube_api_client, podinfo)
