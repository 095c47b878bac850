"""Objects the Gateway API tests share: a release, the app's workloads and a user route."""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from kubernetes import client as k8s

from rollout.models import CanaryRelease

GROUP = "gateway.networking.k8s.io"
STABLE_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.0"
CANARY_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.1"


def release(
    namespace: str, target: str = "web", match: list[dict[str, Any]] | None = None
) -> CanaryRelease:
    """A CanaryRelease for ``target`` (routeRef is given to the router directly)."""
    spec: dict[str, Any] = {
        "targetRef": {"name": target},
        "ingressRef": {"name": target},
        "images": {target: CANARY_IMAGE},
    }
    if match:
        spec["analysis"] = {"match": match, "iterations": 10}
    return CanaryRelease.from_object(
        {
            "metadata": {"name": target, "namespace": namespace, "uid": str(uuid.uuid4())},
            "spec": spec,
        }
    )


def user_route(namespace: str, parent: dict[str, str], stable: str = "web") -> dict[str, Any]:
    """A route as a user writes one: a rule with a match and a filter to the stable
    Service, and a second rule that sends /api to another Service."""
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": stable,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "shop"},
            "annotations": {"team": "checkout"},
        },
        "spec": {
            "parentRefs": [parent],
            "hostnames": [f"{stable}.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"add": [{"name": "x-team", "value": "a"}]},
                        }
                    ],
                    "backendRefs": [{"name": stable, "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                    "backendRefs": [{"name": "api", "port": 80, "weight": 3}],
                },
            ],
        },
    }


def create_route(api: k8s.ApiClient, route: dict[str, Any]) -> dict[str, Any]:
    """Create an HTTPRoute and return it as stored."""
    custom = k8s.CustomObjectsApi(api)
    ns = route["metadata"]["namespace"]
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, "v1", ns, "httproutes", route
    )
    return created


def get_route(api: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The HTTPRoute as stored now."""
    route: dict[str, Any] = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, "v1", namespace, "httproutes", name
    )
    return route


def user_visible(route: dict[str, Any]) -> dict[str, Any]:
    """What the user wrote and reads back: spec, labels and annotations."""
    meta = route["metadata"]
    return copy.deepcopy(
        {
            "spec": route["spec"],
            "labels": meta.get("labels"),
            "annotations": meta.get("annotations"),
        }
    )


def service(name: str, selector: str, target_port: int = 9898) -> k8s.V1Service:
    """A ClusterIP Service on port 80 selecting ``app=<selector>``."""
    return k8s.V1Service(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1ServiceSpec(
            selector={"app": selector},
            ports=[k8s.V1ServicePort(name="http", port=80, target_port=target_port)],
        ),
    )


def deployment(name: str, app: str, image: str, replicas: int) -> k8s.V1Deployment:
    """A Deployment of ``replicas`` podinfo-like pods labelled ``app=<app>``."""
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name),
        spec=k8s.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s.V1LabelSelector(match_labels={"app": app}),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels={"app": app}),
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


def create_app(
    api: k8s.ApiClient, namespace: str, *, canary: bool = True, stable_replicas: int = 2
) -> None:
    """The stable ``web`` Deployment and Service, and (optionally) the canary pair the
    engine would create, ``web-canary``."""
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    core.create_namespaced_service(namespace, service("web", "web"))
    apps.create_namespaced_deployment(
        namespace, deployment("web", "web", STABLE_IMAGE, stable_replicas)
    )
    if canary:
        core.create_namespaced_service(namespace, service("web-canary", "web-canary"))
        apps.create_namespaced_deployment(
            namespace, deployment("web-canary", "web-canary", CANARY_IMAGE, 1)
        )


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout:.0f}s (last: {last!r})")
