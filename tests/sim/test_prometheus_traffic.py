"""The simulator scraped by a real Prometheus, with the canary weight supplied by a
callable (no API server): what the analysis will see when it runs Flagger's queries."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from sandbox.prometheus import PrometheusServer
from tests.fixtures.prometheus import TrafficFactory
from tests.sim.promql import (
    canary_share,
    eventually,
    mean_response_ms,
    p99_seconds,
    success_rate,
)

pytestmark = pytest.mark.prometheus


def unique_namespace() -> str:
    return f"sim-{uuid.uuid4().hex[:8]}"


def between(low: float, high: float) -> Callable[[float | None], bool]:
    """A predicate: the query returned a value within [low, high]."""

    def check(value: float | None) -> bool:
        return value is not None and low <= value <= high

    return check


def test_success_rate_split_and_latency_as_prometheus_sees_them(
    prometheus: PrometheusServer, traffic: TrafficFactory
) -> None:
    ns = unique_namespace()
    traffic(
        ns,
        "podinfo",
        "podinfo",
        weight=lambda: 20.0,
        rps=50,
        stable={"latency_ms": 20, "jitter_ms": 2},
        canary={"error_rate": 0.5, "latency_ms": 300, "jitter_ms": 10},
    )

    def value(query: str) -> float | None:
        return prometheus.query_value(query)

    canary_success = eventually(
        lambda: value(success_rate(ns, "podinfo", canary=True)),
        between(45, 55),
        timeout=30,
        what="canary success rate with a 50 % error rate",
    )
    assert canary_success is not None
    stable_success = value(success_rate(ns, "podinfo", canary=False))
    assert stable_success == pytest.approx(100.0)
    eventually(
        lambda: value(canary_share(ns, "podinfo")),
        between(0.18, 0.22),
        timeout=15,
        what="share of requests on the canary at weight 20",
    )
    # histogram_quantile interpolates inside the bucket holding the latency:
    # 300 ms lies in (0.25, 0.5], 20 ms in (0.01, 0.025].
    canary_p99 = value(p99_seconds(ns, "podinfo", canary=True))
    assert canary_p99 is not None and 0.25 < canary_p99 <= 0.5
    stable_p99 = value(p99_seconds(ns, "podinfo", canary=False))
    assert stable_p99 is not None and 0.01 < stable_p99 <= 0.025
    mean_ms = value(mean_response_ms(ns, "podinfo", canary=True))
    assert mean_ms == pytest.approx(300, abs=5)


def test_no_traffic_means_no_value_and_traffic_brings_one(
    prometheus: PrometheusServer, traffic: TrafficFactory
) -> None:
    ns = unique_namespace()
    sim = traffic(ns, "web", "web", weight=lambda: 50.0, rps=0)
    query = success_rate(ns, "web", canary=True, window="5s")
    # The fixture returned after a scrape of this simulator: there is nothing to find.
    assert prometheus.query_value(query) is None
    assert prometheus.query(f'nginx_ingress_controller_requests{{namespace="{ns}"}}') == []

    sim.set_rps(20)
    eventually(
        lambda: prometheus.query_value(query),
        between(99.9, 100.1),
        timeout=20,
        what="success rate once traffic flows",
    )

    # Traffic stops: once the window holds no increase, 0/0 gives NaN, which Flagger
    # reports as "no values found" just like an empty result.
    sim.set_rps(0)
    eventually(
        lambda: prometheus.query_value(query),
        lambda v: v is None,
        timeout=20,
        what="success rate after traffic stopped",
    )


def test_runtime_changes_reach_prometheus(
    prometheus: PrometheusServer, traffic: TrafficFactory
) -> None:
    ns = unique_namespace()
    weight = {"value": 0.0}
    sim = traffic(ns, "web", "web", weight=lambda: weight["value"], rps=40, tick=0.1)
    eventually(
        lambda: prometheus.query_value(success_rate(ns, "web", canary=False, window="5s")),
        between(99.9, 100.1),
        timeout=20,
        what="stable success rate",
    )
    # (At a 100 % error rate the non-5xx series would not exist and the ratio would be
    # empty, as it is against real ingress-nginx; 90 % keeps a value to compare.)
    weight["value"] = 100.0
    sim.set_side("canary", error_rate=0.9, error_status=503)
    eventually(
        lambda: prometheus.query_value(success_rate(ns, "web", canary=True, window="5s")),
        between(8, 12),
        timeout=20,
        what="canary success rate with 90 % of requests failing",
    )
    statuses = prometheus.query(
        f'sum by (status) (nginx_ingress_controller_requests{{namespace="{ns}",canary!=""}})'
    )
    assert {s["metric"]["status"] for s in statuses} == {"200", "503"}
