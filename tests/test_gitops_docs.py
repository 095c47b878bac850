"""The README's Flux section says what kstatus reports for a paused Deployment; this checks
the Deployment controller's side of it on the real control plane: while paused, the
``Progressing`` condition has reason ``DeploymentPaused`` (never the
``NewReplicaSetAvailable`` kstatus needs for Current), and a new template is not rolled
out (``updatedReplicas`` stays below ``replicas``: kstatus says ``Updated: 0/N``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from sandbox.sample_app import deploy_podinfo

ROOT = Path(__file__).resolve().parents[1]
README = " ".join((ROOT / "README.md").read_text().split())


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _progressing(apps: k8s.AppsV1Api, namespace: str) -> Any:
    status = apps.read_namespaced_deployment("podinfo", namespace).status
    return next((c for c in status.conditions or [] if c.type == "Progressing"), None)


def test_readme_states_the_kstatus_facts() -> None:
    for claim in ("`InProgress`", "`DeploymentPaused`", "`NewReplicaSetAvailable`", "`Updated: 0/N`"):
        assert claim in README


@pytest.mark.cluster
def test_a_paused_deployment_reports_what_the_readme_says(
    kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    deploy_podinfo(kube_api_client, namespace)
    apps = k8s.AppsV1Api(kube_api_client)
    _wait(
        lambda: (c := _progressing(apps, namespace)) and c.reason == "NewReplicaSetAvailable",
        60,
        "podinfo to roll out",
    )
    apps.patch_namespaced_deployment("podinfo", namespace, {"spec": {"paused": True}})
    paused = _wait(
        lambda: (c := _progressing(apps, namespace)) and c.reason == "DeploymentPaused" and c,
        60,
        "the DeploymentPaused condition",
    )
    assert paused.status == "Unknown"
    body = {"spec": {"template": {"spec": {"containers": [
        {"name": "podinfod", "image": "stefanprodan/podinfo:6.0.3"}
    ]}}}}  # fmt: skip
    apps.patch_namespaced_deployment("podinfo", namespace, body)
    deployment = _wait(
        lambda: (d := apps.read_namespaced_deployment("podinfo", namespace)).status.observed_generation
        == d.metadata.generation
        and d,
        60,
        "the controller to observe the new template",
    )
    assert (deployment.status.updated_replicas or 0) < deployment.spec.replicas
    assert _progressing(apps, namespace).reason == "DeploymentPaused"
