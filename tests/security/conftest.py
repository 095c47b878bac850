"""Fixtures for the security tests: kubectl as admin (or as someone else), hostile objects.

Every test here runs against the real API server with the CRD from manifests/ installed
(the ``crd`` fixture), so a refusal is the API server's own, worded as a person sees it.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from sandbox.controlplane import ControlPlane
from tests.deploy.kubectl import Kubectl, create_namespace

NEW = "stefanprodan/podinfo:6.0.3"

# A release the API server and the models accept: every hostile case is this with one
# value changed, so a refusal can only be about that value.
VALID: dict[str, Any] = {
    "apiVersion": "canarybot.io/v1alpha1",
    "kind": "CanaryRelease",
    "metadata": {"name": "podinfo"},
    "spec": {
        "targetRef": {"name": "podinfo"},
        "ingressRef": {"name": "podinfo"},
        "images": {"podinfod": NEW},
        "service": {"port": 80, "targetPort": 9898},
        "progressDeadlineSeconds": 60,
        "analysis": {
            "interval": "10s",
            "threshold": 5,
            "maxWeight": 50,
            "stepWeight": 10,
            "metrics": [
                {"name": "request-success-rate", "interval": "1m", "thresholdRange": {"min": 99}}
            ],
            "webhooks": [{"name": "load-test", "url": "http://loadtester.test/", "timeout": "5s"}],
        },
    },
}


def release(name: str = "podinfo", **spec: Any) -> dict[str, Any]:
    """``VALID`` named ``name`` with top-level spec fields replaced."""
    body = copy.deepcopy(VALID)
    body["metadata"]["name"] = name
    body["spec"].update(spec)
    return body


def with_value(path: str, value: Any, name: str = "podinfo") -> dict[str, Any]:
    """``VALID`` with the value at ``path`` (``spec.analysis.metrics.0.interval``) set."""
    body = copy.deepcopy(VALID)
    body["metadata"]["name"] = name
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane, crd: None) -> Kubectl:
    """The control plane's kubectl as cluster admin, with the CRD installed."""
    return Kubectl(control_plane.bin_dir / "kubectl", control_plane.kubeconfig)


def apply(kubectl: Kubectl, namespace: str, obj: dict[str, Any], *, user: str | None = None) -> Any:
    """``kubectl create`` of ``obj`` (as ``user`` through impersonation); the result."""
    args = ["create", "-n", namespace, "-f", "-"]
    if user is not None:
        args.insert(0, f"--as={user}")
    return kubectl.run(*args, stdin=json.dumps(obj), check=False)


@pytest.fixture
def second_namespace(kube_api_client: k8s.ApiClient, namespace: str) -> Iterator[str]:
    """Another fresh namespace, named to sort after ``namespace`` (list order)."""
    name = f"{namespace[:50]}-z{uuid.uuid4().hex[:4]}"
    create_namespace(kube_api_client, name)
    try:
        yield name
    finally:
        try:
            k8s.CoreV1Api(kube_api_client).delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
