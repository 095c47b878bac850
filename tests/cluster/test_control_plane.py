"""The local control plane behaves like a real cluster for what canary-bot relies on:
Deployments roll out with Ready Pods, canary Ingress annotations persist, and the built
kubectl talks to it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import TypeVar

import pytest
from kubernetes import client as k8s

from sandbox.controlplane import NODE_NAME, ControlPlane, pinned_versions
from sandbox.polling import wait_for

pytestmark = pytest.mark.cluster

T = TypeVar("T")
OLD_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.0"
NEW_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.3"


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last
    value seen."""
    found = wait_for(probe, timeout, what, interval=0.2)
    assert found is not None
    return found


def deployment(name: str, image: str, replicas: int = 2) -> k8s.V1Deployment:
    labels = {"app": name}
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s.V1LabelSelector(match_labels=labels),
            strategy=k8s.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=k8s.V1RollingUpdateDeployment(max_surge=1, max_unavailable=0),
            ),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(
                    containers=[
                        k8s.V1Container(
                            name="podinfo",
                            image=image,
                            ports=[k8s.V1ContainerPort(container_port=9898)],
                        )
                    ]
                ),
            ),
        ),
    )


def ready_replicas(apps: k8s.AppsV1Api, name: str, namespace: str) -> int:
    status = apps.read_namespaced_deployment_status(name, namespace).status
    return int(status.ready_replicas or 0)


def test_deployment_pods_become_ready(kube_api_client: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(kube_api_client)
    apps.create_namespaced_deployment(namespace, deployment("podinfo", OLD_IMAGE))

    eventually(
        lambda: ready_replicas(apps, "podinfo", namespace) == 2 or None,
        "deployment podinfo to report readyReplicas == 2",
    )
    core = k8s.CoreV1Api(kube_api_client)
    pods = core.list_namespaced_pod(namespace, label_selector="app=podinfo")
    assert len(pods.items) == 2
    for pod in pods.items:
        assert pod.spec.node_name == NODE_NAME
        assert pod.status.phase == "Running"
        assert pod.status.pod_ip, f"pod {pod.metadata.name} got no IP"


def test_rolling_image_change_completes(kube_api_client: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(kube_api_client)
    core = k8s.CoreV1Api(kube_api_client)
    apps.create_namespaced_deployment(namespace, deployment("podinfo", OLD_IMAGE))
    eventually(
        lambda: ready_replicas(apps, "podinfo", namespace) == 2 or None,
        "the first revision to be ready",
    )

    patched = apps.patch_namespaced_deployment(
        "podinfo",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "podinfo", "image": NEW_IMAGE}]}}}},
    )
    generation = patched.metadata.generation

    def rollout_done() -> k8s.V1Deployment | None:
        d = apps.read_namespaced_deployment_status("podinfo", namespace)
        s = d.status
        done = (
            (s.observed_generation or 0) >= generation
            and s.updated_replicas == 2
            and s.ready_replicas == 2
            and s.available_replicas == 2
            and s.replicas == 2  # no surplus pod of the old revision is left
        )
        return d if done else None

    done = eventually(rollout_done, "the rollout to the new image to complete")
    assert done.status.observed_generation == done.metadata.generation

    replica_sets = apps.list_namespaced_replica_set(namespace, label_selector="app=podinfo").items
    new_rs = [rs for rs in replica_sets if rs.spec.template.spec.containers[0].image == NEW_IMAGE]
    old_rs = [rs for rs in replica_sets if rs.spec.template.spec.containers[0].image == OLD_IMAGE]
    assert len(new_rs) == 1 and len(old_rs) == 1, [rs.metadata.name for rs in replica_sets]
    assert old_rs[0].spec.replicas == 0
    assert new_rs[0].status.ready_replicas == 2

    def pods_all_new() -> list[k8s.V1Pod] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=podinfo").items
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        return pods if len(pods) == 2 and len(live) == 2 else None

    pods = eventually(pods_all_new, "old pods to be gone")
    for pod in pods:
        owners = [o.name for o in pod.metadata.owner_references or []]
        assert owners == [new_rs[0].metadata.name], owners
        assert pod.spec.containers[0].image == NEW_IMAGE
        assert pod.status.container_statuses[0].image == NEW_IMAGE
        ready = {c.type: c.status for c in pod.status.conditions}.get("Ready")
        assert ready == "True", f"pod {pod.metadata.name} Ready={ready}"


def test_canary_ingress_round_trips(kube_api_client: k8s.ApiClient, namespace: str) -> None:
    net = k8s.NetworkingV1Api(kube_api_client)
    ingress = k8s.V1Ingress(
        metadata=k8s.V1ObjectMeta(
            name="podinfo-canary",
            annotations={
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "20",
            },
        ),
        spec=k8s.V1IngressSpec(
            ingress_class_name="nginx",
            rules=[
                k8s.V1IngressRule(
                    host="app.example.com",
                    http=k8s.V1HTTPIngressRuleValue(
                        paths=[
                            k8s.V1HTTPIngressPath(
                                path="/",
                                path_type="Prefix",
                                backend=k8s.V1IngressBackend(
                                    service=k8s.V1IngressServiceBackend(
                                        name="podinfo-canary",
                                        port=k8s.V1ServiceBackendPort(number=80),
                                    )
                                ),
                            )
                        ]
                    ),
                )
            ],
        ),
    )
    net.create_namespaced_ingress(namespace, ingress)

    read = net.read_namespaced_ingress("podinfo-canary", namespace)
    assert read.metadata.annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert read.metadata.annotations["nginx.ingress.kubernetes.io/canary-weight"] == "20"
    backend = read.spec.rules[0].http.paths[0].backend.service
    assert (backend.name, backend.port.number) == ("podinfo-canary", 80)

    net.patch_namespaced_ingress(
        "podinfo-canary",
        namespace,
        {"metadata": {"annotations": {"nginx.ingress.kubernetes.io/canary-weight": "40"}}},
    )
    read = net.read_namespaced_ingress("podinfo-canary", namespace)
    assert read.metadata.annotations["nginx.ingress.kubernetes.io/canary-weight"] == "40"
    assert read.metadata.annotations["nginx.ingress.kubernetes.io/canary"] == "true"


def kubectl(control_plane: ControlPlane, *args: str) -> str:
    result = subprocess.run(
        [str(control_plane.bin_dir / "kubectl"), f"--kubeconfig={control_plane.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def test_built_kubectl_talks_to_the_cluster(control_plane: ControlPlane) -> None:
    nodes = kubectl(control_plane, "get", "nodes", "--no-headers")
    rows = [line.split() for line in nodes.splitlines()]
    assert [row[:2] for row in rows] == [[NODE_NAME, "Ready"]], nodes

    version = json.loads(kubectl(control_plane, "version", "--output=json"))
    expected = pinned_versions()["KUBERNETES_VERSION"]
    assert version["serverVersion"]["gitVersion"] == expected, version
    assert version["clientVersion"]["gitVersion"] == expected, version


def test_service_account_tokens_authenticate(
    control_plane: ControlPlane, kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    """The service-account key pair works end to end: a token issued for the namespace's
    default ServiceAccount authenticates as that account."""
    core = k8s.CoreV1Api(kube_api_client)
    token = core.create_namespaced_service_account_token(
        "default",
        namespace,
        k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token

    config = k8s.Configuration()
    config.host = control_plane.server
    config.ssl_ca_cert = str(control_plane.workdir / "pki" / "ca.crt")
    config.api_key = {"authorization": token}
    config.api_key_prefix = {"authorization": "Bearer"}
    with k8s.ApiClient(config) as as_sa:
        review = k8s.AuthenticationV1Api(as_sa).create_self_subject_review(
            k8s.V1SelfSubjectReview()
        )
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:default"
