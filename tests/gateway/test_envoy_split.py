"""End to end on real Envoy: the weights GatewayRouter writes are the split Envoy delivers.

Real HTTP requests go to Envoy's Gateway listener on 127.0.0.1; Contour has programmed
Envoy from the HTTPRoute; the backends answer on the kwok pods' IPs. Counted twice: by
the version in each response (what a client sees) and by the backends (per pod).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client as k8s

from rollout.kube import Kube
from rollout.models import CanaryRelease
from rollout.routers.gateway import GatewayRouter, RouteRef
from sandbox.controlplane import ControlPlane
from sandbox.gateway.backends import BackendSimulator
from sandbox.gateway.dataplane import DataPlane
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import SideSettings
from tests.fixtures.gateway import BackendsFactory
from tests.gateway.helpers import (
    create_app,
    create_route,
    get_route,
    release,
    service,
    user_route,
    user_visible,
)

pytestmark = pytest.mark.cluster

HOST = "web.example.com"
_FAST = SideSettings(latency_ms=0.0, jitter_ms=0.0)


@pytest.fixture
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    """The product's API client."""
    client = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
    try:
        yield client
    finally:
        client.close()


def send(
    url: str,
    count: int,
    timeout: float = 120.0,
    path: str = "/",
    headers: dict[str, str] | None = None,
) -> Counter[str]:
    """``count`` GETs through Envoy on one keep-alive connection: versions seen.

    Bounded by ``count`` and ``timeout``; a status other than 200 counts as ``<status>``.
    """
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                raise AssertionError(f"only {sum(seen.values())} of {count} requests in {timeout}s")
            conn.request("GET", path, headers={"Host": HOST, **(headers or {})})
            response = conn.getresponse()
            body = response.read()
            if response.status == 200:
                seen[json.loads(body)["version"]] += 1
            else:
                seen[str(response.status)] += 1
    finally:
        conn.close()
    return seen


def until_canary_answers(
    url: str, timeout: float = 60.0, headers: dict[str, str] | None = None
) -> None:
    """Envoy has the new route config once a canary pod answers (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if send(url, 20, headers=headers)["6.0.1"]:
            return
    raise AssertionError(f"no canary answer through Envoy within {timeout:.0f}s")


async def _start(
    kube: Kube,
    api: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    backends: BackendsFactory,
    weight: int,
    rel: CanaryRelease | None = None,
    probe: dict[str, str] | None = None,
) -> tuple[GatewayRouter, CanaryRelease, BackendSimulator, dict[str, Any]]:
    """The app, its backends and the user's route at ``weight``, in force in Envoy
    (``probe``: the headers with which a canary answer proves it). Also returns what
    the user sees of the route before canary-bot touched it."""
    create_app(api, namespace)
    # The route's second rule sends /api there; without it the route is not resolved.
    k8s.CoreV1Api(api).create_namespaced_service(namespace, service("api", "api"))
    sim = backends(namespace, {"web": "stable", "web-canary": "canary"}, stable=_FAST, canary=_FAST)
    sim.wait_serving({"stable": 2, "canary": 1})
    original = user_visible(create_route(api, user_route(namespace, gateway.parent_ref)))
    router = GatewayRouter(kube, RouteRef("web"))
    rel = rel or release(namespace)
    await router.reconcile(rel, weight)
    deadline = time.monotonic() + 60
    while not (readiness := await router.ready(rel)).ready:
        assert time.monotonic() < deadline, readiness.waiting_for
        await asyncio.sleep(0.1)
    await asyncio.to_thread(until_canary_answers, gateway.url, 60.0, probe)
    return router, rel, sim, original


@pytest.mark.parametrize(("weight", "requests"), [(5, 2000), (20, 2000), (50, 3000)])
async def test_envoy_delivers_the_route_weights(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    backends: BackendsFactory,
    weight: int,
    requests: int,
) -> None:
    router, rel, sim, original = await _start(
        kube, kube_api_client, namespace, gateway, backends, weight
    )
    before = sim.counts()
    seen = await asyncio.to_thread(send, gateway.url, requests)
    after = sim.counts()
    served = {side: after[side] - before[side] for side in after}

    assert set(seen) == {"6.0.0", "6.0.1"}, seen
    assert served == {"stable": seen["6.0.0"], "canary": seen["6.0.1"]}
    share = 100 * served["canary"] / requests
    print(f"weight {weight}: canary served {share:.2f} % of {requests}", file=sys.stderr)
    # Envoy picks per request at random: 3 points is 3+ standard deviations here.
    assert abs(share - weight) <= 3, f"canary got {share:.2f} % at weight {weight}"
    pods = sim.state()["stable"]["pods"]
    assert len(pods) == 2 and all(p["requests"] > 0 for p in pods.values()), pods

    await router.reconcile(rel, 0)
    deadline = time.monotonic() + 60
    while not (await router.ready(rel)).ready:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await router.finalize(rel)
    assert user_visible(get_route(kube_api_client, namespace, "web")) == original


async def test_prometheus_sees_envoys_per_service_counts(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    backends: BackendsFactory,
    envoy_metrics: PrometheusServer,
) -> None:
    _, _, sim, _ = await _start(kube, kube_api_client, namespace, gateway, backends, 50)
    sim.set_side("canary", error_rate=0.5)
    await asyncio.to_thread(send, gateway.url, 400)
    errors = sim.state()["canary"]["errors"]
    assert errors > 0
    cluster = f"{namespace}_web-canary_80"
    query = f'sum(envoy_cluster_upstream_rq{{envoy_cluster_name="{cluster}",envoy_response_code="500"}})'
    deadline = time.monotonic() + 30
    while (value := envoy_metrics.query_value(query)) != errors:
        assert time.monotonic() < deadline, f"{query} = {value}, backends counted {errors}"
        await asyncio.sleep(0.5)
    # The latency histogram a request-duration check reads, per backend Service too.
    histogram = f'envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name="{cluster}"}}'
    buckets = envoy_metrics.query(histogram)
    assert {b["metric"]["le"] for b in buckets} >= {"1", "10", "100", "1000", "+Inf"}, buckets


async def test_a_header_match_sends_only_those_requests_to_the_canary(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    backends: BackendsFactory,
) -> None:
    insiders = {"x-canary": "insider"}
    rel = release(
        namespace,
        match=[
            {"headers": {"x-canary": {"exact": "insider"}}},
            {"headers": {"cookie": {"exact": "canary"}}},
        ],
    )
    router, rel, _, original = await _start(
        kube, kube_api_client, namespace, gateway, backends, 0, rel=rel, probe=insiders
    )
    during = user_visible(get_route(kube_api_client, namespace, "web"))
    assert [r.get("name") for r in during["spec"]["rules"]] == [
        "web-canary-match-0",
        None,
        None,
    ]
    assert await asyncio.to_thread(send, gateway.url, 200, headers=insiders) == {"6.0.1": 200}
    cookie = {"Cookie": "theme=dark; canary=always"}
    assert await asyncio.to_thread(send, gateway.url, 100, headers=cookie) == {"6.0.1": 100}
    others = {"x-canary": "outsider", "Cookie": "canary=never"}
    assert await asyncio.to_thread(send, gateway.url, 200, headers=others) == {"6.0.0": 200}
    await router.finalize(rel)
    assert user_visible(get_route(kube_api_client, namespace, "web")) == original
    # Contour drops the canary-only rule from Envoy: insiders reach stable again.
    deadline = time.monotonic() + 60
    while (seen := await asyncio.to_thread(send, gateway.url, 20, headers=insiders)) != {
        "6.0.0": 20
    }:
        assert time.monotonic() < deadline, seen
