"""The tutorial's podinfo app: Deployment, Service and Ingress, as the user would apply them.

Used by the sandbox (``make run``) and by end-to-end tests. Pods never really run here
(kwok marks them Ready); the traffic simulator stands in for the app's requests.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

PODINFO_IMAGE = "stefanprodan/podinfo:6.0.0"


def podinfo_manifests(
    namespace: str,
    name: str = "podinfo",
    image: str = PODINFO_IMAGE,
    replicas: int = 2,
    host: str = "app.example.com",
) -> list[dict[str, Any]]:
    """Deployment ``name`` (container ``podinfod``, port 9898), Service (80 -> 9898), Ingress."""
    labels = {"app": name}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "podinfod",
                                "image": image,
                                "ports": [{"name": "http", "containerPort": 9898}],
                                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9898}},
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": 9898, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "annotations": {"kubernetes.io/ingress.class": "nginx"},
            },
            "spec": {
                "ingressClassName": "nginx",
                "rules": [
                    {
                        "host": host,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": name, "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        },
    ]


def deploy_podinfo(api: k8s.ApiClient, namespace: str, **options: Any) -> None:
    """Create (or leave in place) the podinfo objects in ``namespace``."""
    apps, core, net = k8s.AppsV1Api(api), k8s.CoreV1Api(api), k8s.NetworkingV1Api(api)
    creators = {
        "Deployment": lambda body: apps.create_namespaced_deployment(namespace, body),
        "Service": lambda body: core.create_namespaced_service(namespace, body),
        "Ingress": lambda body: net.create_namespaced_ingress(namespace, body),
    }
    for manifest in podinfo_manifests(namespace, **options):
        try:
            creators[manifest["kind"]](manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
