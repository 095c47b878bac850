"""The simulator following real canary Ingresses on the local control plane."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from sandbox.controlplane import ControlPlane
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import ANNOTATION_PREFIX, TrafficSimulator
from tests.fixtures.prometheus import TrafficFactory
from tests.sim.promql import canary_share, eventually, p99_seconds, success_rate

pytestmark = pytest.mark.cluster


def ingress(name: str, service: str, annotations: dict[str, str] | None = None) -> k8s.V1Ingress:
    """An nginx Ingress for ``app.example.com/`` with ``service:80`` as its backend."""
    backend = k8s.V1IngressBackend(
        service=k8s.V1IngressServiceBackend(name=service, port=k8s.V1ServiceBackendPort(number=80))
    )
    path = k8s.V1HTTPIngressPath(path="/", path_type="Prefix", backend=backend)
    return k8s.V1Ingress(
        metadata=k8s.V1ObjectMeta(name=name, annotations=annotations),
        spec=k8s.V1IngressSpec(
            ingress_class_name="nginx",
            rules=[
                k8s.V1IngressRule(
                    host="app.example.com", http=k8s.V1HTTPIngressRuleValue(paths=[path])
                )
            ],
        ),
    )


def canary_annotations(weight: int, **extra: str) -> dict[str, str]:
    values = {"canary": "true", "canary-weight": str(weight), **extra}
    return {ANNOTATION_PREFIX + key: value for key, value in values.items()}


@pytest.fixture
def networking(kube_api_client: k8s.ApiClient) -> k8s.NetworkingV1Api:
    return k8s.NetworkingV1Api(kube_api_client)


@pytest.fixture
def podinfo_ingress(networking: k8s.NetworkingV1Api, namespace: str) -> str:
    """The tutorial's main Ingress ``podinfo`` (backend Service ``podinfo``)."""
    networking.create_namespaced_ingress(namespace, ingress("podinfo", "podinfo"))
    return "podinfo"


def set_canary(
    networking: k8s.NetworkingV1Api, namespace: str, annotations: dict[str, str]
) -> None:
    """Create or update ``podinfo-canary`` the way Flagger's nginx router does."""
    existing = networking.list_namespaced_ingress(
        namespace, field_selector="metadata.name=podinfo-canary"
    )
    if not existing.items:
        body = ingress("podinfo-canary", "podinfo-canary", annotations)
        networking.create_namespaced_ingress(namespace, body)
        return
    networking.patch_namespaced_ingress(
        "podinfo-canary", namespace, {"metadata": {"annotations": annotations}}
    )


@pytest.fixture
def bare_simulator(
    control_plane: ControlPlane, namespace: str, podinfo_ingress: str
) -> Iterator[TrafficSimulator]:
    """A simulator reading this namespace's Ingresses, not scraped by Prometheus."""
    with TrafficSimulator(
        namespace, podinfo_ingress, "podinfo", kubeconfig=control_plane.kubeconfig, tick=0.1
    ) as sim:
        yield sim


def test_weight_from_a_real_canary_ingress_reaches_prometheus(
    prometheus: PrometheusServer,
    traffic: TrafficFactory,
    networking: k8s.NetworkingV1Api,
    namespace: str,
    podinfo_ingress: str,
) -> None:
    set_canary(networking, namespace, canary_annotations(20))
    sim = traffic(
        namespace,
        podinfo_ingress,
        "podinfo",
        rps=50,
        stable={"latency_ms": 20, "jitter_ms": 2},
        canary={"error_rate": 0.5, "latency_ms": 300, "jitter_ms": 10},
    )
    sim.wait_for_weight(20, timeout=10)
    assert sim.source == "kubernetes"

    def value(query: str) -> float | None:
        return prometheus.query_value(query)

    eventually(
        lambda: value(success_rate(namespace, "podinfo", canary=True)),
        lambda v: v is not None and 45 <= v <= 55,
        timeout=30,
        what="canary success rate with a 50 % error rate",
    )
    assert value(success_rate(namespace, "podinfo", canary=False)) == pytest.approx(100.0)
    eventually(
        lambda: value(canary_share(namespace, "podinfo")),
        lambda v: v is not None and 0.18 <= v <= 0.22,
        timeout=15,
        what="canary share at weight 20",
    )
    p99 = value(p99_seconds(namespace, "podinfo", canary=True))
    assert p99 is not None and 0.25 < p99 <= 0.5
    series = prometheus.query(
        "count by (canary, ingress, service) "
        f'(nginx_ingress_controller_requests{{namespace="{namespace}"}})'
    )
    seen = {(s["metric"].get("canary", ""), s["metric"]["ingress"]) for s in series}
    # Both sides carry the main Ingress; only the canary label tells them apart.
    assert seen == {("", "podinfo"), (f"{namespace}-podinfo-canary-80", "podinfo")}
    assert {s["metric"]["service"] for s in series} == {"podinfo"}


def test_weight_changes_reach_the_split_within_a_couple_of_ticks(
    prometheus: PrometheusServer,
    traffic: TrafficFactory,
    networking: k8s.NetworkingV1Api,
    namespace: str,
    podinfo_ingress: str,
) -> None:
    set_canary(networking, namespace, canary_annotations(10))
    sim = traffic(namespace, podinfo_ingress, "podinfo", rps=40)
    sim.wait_for_weight(10, timeout=10)

    ticks_before = sim.ticks
    set_canary(networking, namespace, canary_annotations(45))
    sim.wait_for_weight(45, timeout=10)
    # The tick in flight may have read the Ingress just before the patch; the next
    # one must see it.
    assert sim.routing_changed_at_tick - ticks_before <= 2

    before = sim.totals()
    eventually(
        lambda: (
            sum(sum(side.values()) for side in sim.totals().values())
            - sum(sum(side.values()) for side in before.values())
        ),
        lambda served: served >= 200,
        timeout=20,
        what="requests served after the change",
    )
    after = sim.totals()
    canary = sum(after["canary"].values()) - sum(before["canary"].values())
    total = canary + sum(after["stable"].values()) - sum(before["stable"].values())
    assert canary / total == pytest.approx(0.45, abs=0.01)
    eventually(
        lambda: prometheus.query_value(canary_share(namespace, "podinfo", window="5s")),
        lambda v: v is not None and 0.42 <= v <= 0.48,
        timeout=20,
        what="canary share in Prometheus after the weight moved to 45",
    )


def test_without_an_enabled_canary_ingress_everything_goes_to_stable(
    bare_simulator: TrafficSimulator, networking: k8s.NetworkingV1Api, namespace: str
) -> None:
    sim = bare_simulator
    eventually(lambda: sim.ticks, lambda t: t >= 2, timeout=10, what="ticks")
    assert sim.current_weight == 0 and not sim.routing.enabled
    assert sim.last_error is None  # a missing canary Ingress is not an error

    set_canary(networking, namespace, canary_annotations(30, canary="false"))
    # Give the simulator a tick that certainly read the new object.
    ticks = sim.ticks
    eventually(lambda: sim.ticks, lambda t: t >= ticks + 2, timeout=10, what="ticks")
    assert sim.current_weight == 0

    set_canary(networking, namespace, canary_annotations(30))
    sim.wait_for_weight(30, timeout=10)

    networking.delete_namespaced_ingress("podinfo-canary", namespace)
    sim.wait_for_weight(0, timeout=10)


def test_header_and_cookie_annotations_on_the_ingress(
    bare_simulator: TrafficSimulator, networking: k8s.NetworkingV1Api, namespace: str
) -> None:
    sim = bare_simulator
    sim.set_header_share(0.5)
    sim.set_cookie_share(0.5)
    set_canary(networking, namespace, canary_annotations(0, **{"canary-by-header": "X-Canary"}))
    sim.wait_for_weight(50, timeout=10)  # the header alone: half the requests
    set_canary(
        networking,
        namespace,
        canary_annotations(0, **{"canary-by-header": "X-Canary", "canary-by-cookie": "canary"}),
    )
    sim.wait_for_weight(75, timeout=10)  # then half of the rest by cookie
    assert sim.routing.header == "X-Canary" and sim.routing.cookie == "canary"
