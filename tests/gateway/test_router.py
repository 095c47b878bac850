"""GatewayRouter against the real API server, with Contour reporting route status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from rollout.cache import engine_cache
from rollout.kube import HTTPROUTES, JsonObject, Kube, Resource
from rollout.routers.gateway import (
    ORIGINAL_ANNOTATION,
    GatewayRouter,
    RouteRef,
    RouterError,
    route_ready,
)
from sandbox.controlplane import ControlPlane
from sandbox.gateway.dataplane import DataPlane
from tests.gateway.helpers import (
    GROUP,
    create_app,
    create_route,
    get_route,
    release,
    service,
    user_route,
    user_visible,
    wait_for,
)

pytestmark = pytest.mark.cluster


@pytest.fixture
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    """The product's API client, on its own connection pool."""
    client = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
    try:
        yield client
    finally:
        client.close()


def _weights(route: dict[str, Any]) -> list[list[tuple[str, int]]]:
    return [
        [(ref["name"], ref.get("weight", 1)) for ref in rule.get("backendRefs", [])]
        for rule in route["spec"]["rules"]
    ]


async def test_weights_then_finalize_gives_the_route_back(
    kube: Kube, kube_api_client: k8s.ApiClient, namespace: str, gateway_crds: DataPlane
) -> None:
    create_route(kube_api_client, user_route(namespace, gateway_crds.parent_ref))
    before = user_visible(get_route(kube_api_client, namespace, "web"))
    rel = release(namespace)
    router = GatewayRouter(kube, RouteRef("web"))
    assert await router.get_weight(rel) is None
    for weight in (0, 20, 50, 100):
        await router.reconcile(rel, weight)
        route = get_route(kube_api_client, namespace, "web")
        assert _weights(route) == [
            [("web", 100 - weight), ("web-canary", weight)],
            [("api", 3)],
        ]
        assert await router.get_weight(rel) == weight
        after_step = user_visible(route)
        assert after_step["spec"]["rules"][0]["filters"] == before["spec"]["rules"][0]["filters"]
        assert after_step["spec"]["rules"][1] == before["spec"]["rules"][1]
        assert after_step["spec"]["parentRefs"] == before["spec"]["parentRefs"]
        assert after_step["spec"]["hostnames"] == before["spec"]["hostnames"]
        assert after_step["labels"] == before["labels"]
    calls = dict(kube.requests.counts)
    await router.reconcile(rel, 0)
    spent = {k: v - calls.get(k, 0) for k, v in kube.requests.counts.items() if v != calls.get(k)}
    assert spent == {("GET", "httproutes"): 1, ("PUT", "httproutes"): 1}, spent
    await router.finalize(rel)
    assert user_visible(get_route(kube_api_client, namespace, "web")) == before
    assert await router.get_weight(rel) is None
    await router.finalize(rel)  # twice is harmless
    assert user_visible(get_route(kube_api_client, namespace, "web")) == before


async def test_a_crash_between_steps_is_restorable_by_a_new_router(
    kube: Kube, kube_api_client: k8s.ApiClient, namespace: str, gateway_crds: DataPlane
) -> None:
    create_route(kube_api_client, user_route(namespace, gateway_crds.parent_ref))
    before = user_visible(get_route(kube_api_client, namespace, "web"))
    rel = release(namespace)
    await GatewayRouter(kube, RouteRef("web")).reconcile(rel, 30)
    # A fresh process knows only the release and what is on the route.
    restarted = GatewayRouter(kube, lambda _release: RouteRef("web"))
    assert await restarted.get_weight(rel) == 30
    await restarted.finalize(rel)
    assert user_visible(get_route(kube_api_client, namespace, "web")) == before


class _EditedBetweenReadAndWrite(Kube):
    """The product's client, except that just before its first write of the route
    someone else changes the route, so that write carries a stale resourceVersion."""

    api_client: k8s.ApiClient
    edits = 0

    async def replace(
        self, resource: Resource, namespace: str, name: str, body: JsonObject, sub: str = ""
    ) -> JsonObject:
        if resource == HTTPROUTES and self.edits == 0:
            self.edits += 1
            k8s.CustomObjectsApi(self.api_client).patch_namespaced_custom_object(
                GROUP,
                "v1",
                namespace,
                "httproutes",
                name,
                {"metadata": {"annotations": {"edited-by": "flux"}}},
            )
        return await super().replace(resource, namespace, name, body, sub)


async def test_a_conflicting_write_is_retried_on_the_new_version(
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway_crds: DataPlane,
) -> None:
    create_route(kube_api_client, user_route(namespace, gateway_crds.parent_ref))
    kube = _EditedBetweenReadAndWrite.connect(kubeconfig=str(control_plane.kubeconfig))
    assert isinstance(kube, _EditedBetweenReadAndWrite)
    kube.api_client = kube_api_client
    try:
        rel = release(namespace)
        await GatewayRouter(kube, RouteRef("web")).reconcile(rel, 20)
        route = get_route(kube_api_client, namespace, "web")
        assert kube.edits == 1
        # Contour's status writes also bump the resourceVersion: more conflicts may come.
        assert kube.requests.errors.get(("httproutes", 409), 0) >= 1, kube.requests.errors
        assert route["metadata"]["annotations"]["edited-by"] == "flux"
        assert _weights(route)[0] == [("web", 80), ("web-canary", 20)]
    finally:
        kube.close()


async def test_refusals_name_the_problem(
    kube: Kube, kube_api_client: k8s.ApiClient, namespace: str, gateway_crds: DataPlane
) -> None:
    route = user_route(namespace, gateway_crds.parent_ref, stable="other")
    create_route(kube_api_client, route)
    rel = release(namespace)
    with pytest.raises(RouterError, match=f"no rule with a backendRef to Service {namespace}/web"):
        await GatewayRouter(kube, RouteRef("other")).reconcile(rel, 10)
    with pytest.raises(RouterError, match=f"HTTPRoute {namespace}/missing not found"):
        await GatewayRouter(kube, RouteRef("missing")).check(rel)
    assert await GatewayRouter(kube, RouteRef("missing")).get_weight(rel) is None
    await GatewayRouter(kube, RouteRef("missing")).finalize(rel)  # nothing to give back
    with pytest.raises(RouterError, match="is not a route canary-bot can shift weights on"):
        await GatewayRouter(kube, RouteRef("other", kind="TLSRoute")).check(rel)
    untouched = get_route(kube_api_client, namespace, "other")
    assert untouched["metadata"]["generation"] == 1, "a refused route is not written"
    assert ORIGINAL_ANNOTATION not in untouched["metadata"]["annotations"]


async def test_a_route_in_another_namespace_needs_a_reference_grant(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway_crds: DataPlane,
) -> None:
    core = k8s.CoreV1Api(kube_api_client)
    edge = f"{namespace}-edge"[:63]
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=edge)))
    try:
        route = user_route(edge, gateway_crds.parent_ref)
        route["spec"]["rules"][0]["backendRefs"][0]["namespace"] = namespace
        create_route(kube_api_client, route)
        rel = release(namespace)
        router = GatewayRouter(kube, RouteRef("web", namespace=edge))
        with pytest.raises(RouterError, match=f"add a ReferenceGrant in {namespace}"):
            await router.reconcile(rel, 10)
        k8s.CustomObjectsApi(kube_api_client).create_namespaced_custom_object(
            GROUP,
            "v1beta1",
            namespace,
            "referencegrants",
            {
                "apiVersion": f"{GROUP}/v1beta1",
                "kind": "ReferenceGrant",
                "metadata": {"name": "edge-routes"},
                "spec": {
                    "from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": edge}],
                    "to": [{"group": "", "kind": "Service"}],
                },
            },
        )
        await router.reconcile(rel, 10)
        refs = get_route(kube_api_client, edge, "web")["spec"]["rules"][0]["backendRefs"]
        assert [(r["name"], r.get("namespace"), r["weight"]) for r in refs] == [
            ("web", namespace, 90),
            ("web-canary", namespace, 10),
        ]
    finally:
        core.delete_namespace(edge, propagation_policy="Background")


async def test_route_ready_reads_contours_status(
    kube: Kube, kube_api_client: k8s.ApiClient, namespace: str, gateway_crds: DataPlane
) -> None:
    create_app(kube_api_client, namespace, canary=False)
    create_route(kube_api_client, user_route(namespace, gateway_crds.parent_ref))
    rel = release(namespace)
    router = GatewayRouter(kube, RouteRef("web"))

    def refused() -> str:
        waiting = route_ready(get_route(kube_api_client, namespace, "web")).waiting_for
        return waiting if "ResolvedRefs is False" in waiting else ""

    # The second rule's Service "api" does not exist: Contour says so.
    waiting = wait_for(refused, "Contour refuses the missing Service api")
    assert waiting.startswith("Gateway projectcontour/contour: ResolvedRefs is False"), waiting
    assert "api" in waiting, waiting
    k8s.CoreV1Api(kube_api_client).create_namespaced_service(namespace, service("api", "api"))
    wait_for(lambda: route_ready(get_route(kube_api_client, namespace, "web")).ready, "ready")
    # The canary Service is not there yet: the new generation is not in force.
    await router.reconcile(rel, 10)
    text = wait_for(refused, "Contour refuses the missing canary Service")
    assert "web-canary" in text, text
    k8s.CoreV1Api(kube_api_client).create_namespaced_service(
        namespace, service("web-canary", "web-canary")
    )
    deadline = time.monotonic() + 60
    while not (readiness := await router.ready(rel)).ready:
        assert time.monotonic() < deadline, f"route not ready: {readiness.waiting_for}"
        await asyncio.sleep(0.1)
    route = get_route(kube_api_client, namespace, "web")
    statuses = route["status"]["parents"]
    assert {c["type"]: c["observedGeneration"] for c in statuses[0]["conditions"]} == {
        "Accepted": route["metadata"]["generation"],
        "ResolvedRefs": route["metadata"]["generation"],
    }


async def test_a_grpcroute_gets_the_same_treatment(
    kube: Kube, kube_api_client: k8s.ApiClient, namespace: str, gateway_crds: DataPlane
) -> None:
    custom = k8s.CustomObjectsApi(kube_api_client)
    route = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "parentRefs": [gateway_crds.parent_ref],
            "rules": [
                {
                    "matches": [{"method": {"service": "shop.Cart", "method": "Add"}}],
                    "backendRefs": [{"name": "web", "port": 80}],
                },
                {"backendRefs": [{"name": "api", "port": 80}]},
            ],
        },
    }
    custom.create_namespaced_custom_object(GROUP, "v1", namespace, "grpcroutes", route)

    def stored() -> dict[str, Any]:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, "v1", namespace, "grpcroutes", "web"
        )
        return obj

    before = user_visible(stored())
    rel = release(namespace)
    router = GatewayRouter(kube, RouteRef("web", kind="GRPCRoute"))
    await router.reconcile(rel, 25)
    assert _weights(stored()) == [[("web", 75), ("web-canary", 25)], [("api", 1)]]
    await router.finalize(rel)
    assert user_visible(stored()) == before


async def test_with_the_watch_cache_a_step_reads_no_route_from_the_server(
    kube: Kube, kube_api_client: k8s.ApiClient, namespace: str, gateway_crds: DataPlane
) -> None:
    create_app(kube_api_client, namespace)
    k8s.CoreV1Api(kube_api_client).create_namespaced_service(namespace, service("api", "api"))
    create_route(kube_api_client, user_route(namespace, gateway_crds.parent_ref))
    rel = release(namespace)
    cache = engine_cache(kube, namespace)
    routes = cache.informer(HTTPROUTES)
    assert routes is not None
    routes.start()
    try:
        assert routes.wait_synced(30), routes.stats
        router = GatewayRouter(kube.cached(cache), RouteRef("web"))

        async def in_force() -> None:
            # as between two steps: Contour has accepted this generation, the watch says so
            deadline = time.monotonic() + 30
            while (waiting := await router.waiting_for(rel)) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not waiting, waiting

        await router.reconcile(rel, 0)
        await in_force()
        spent: dict[tuple[str, str], int] = {}
        for weight in (10, 20):
            calls = dict(kube.requests.counts)
            await router.reconcile(rel, weight)
            assert await router.get_weight(rel) == weight
            for key, count in kube.requests.counts.items():
                if count != calls.get(key, 0):
                    spent[key] = spent.get(key, 0) + count - calls.get(key, 0)
            await in_force()
        # one write per step, no reads: the route comes from the informer, kept current by
        # the write's own result and by the watch (Contour's status updates)
        assert spent == {("PUT", "httproutes"): 2}, spent
        await router.finalize(rel)
        assert await router.get_weight(rel) is None
    finally:
        routes.stop()
