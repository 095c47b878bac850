"""Built-in metric queries per data plane (``spec.provider``)."""

from __future__ import annotations

import pytest

from rollout.analysis import QueryContext, builtin_query
from rollout.models import CanaryReleaseSpec
from rollout.routers.select import provider_problems


def ctx(provider: str | None) -> QueryContext:
    return QueryContext("shop", "web", "", "web", 80, "web-x1", provider=provider, route="web")


def test_nginx_stays_the_default_and_reads_the_main_ingress() -> None:
    query = builtin_query(
        QueryContext("shop", "web", "web", "web", 80, "web-x1"), "request-success-rate", "1m"
    )
    assert query == (
        'sum(rate(nginx_ingress_controller_requests{namespace="shop",ingress="web",'
        'canary!~"|-",status!~"5.."}[1m])) / sum(rate(nginx_ingress_controller_requests'
        '{namespace="shop",ingress="web",canary!~"|-"}[1m])) * 100'
    )


def test_contour_reads_envoys_cluster_of_each_service() -> None:
    canary = builtin_query(ctx("contour"), "request-success-rate", "30s")
    stable = builtin_query(ctx("contour"), "request-success-rate", "30s", stable=True)
    p99 = builtin_query(ctx("contour"), "request-duration", "30s")

    assert canary == (
        'sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name="shop_web-canary_80",'
        'envoy_response_code!~"5.."}[30s])) / sum(rate(envoy_cluster_upstream_rq'
        '{envoy_cluster_name="shop_web-canary_80"}[30s])) * 100'
    )
    assert 'envoy_cluster_name="shop_web_80"' in stable
    # Envoy's upstream_rq_time is in milliseconds already.
    assert p99 == (
        "histogram_quantile(0.99, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket"
        '{envoy_cluster_name="shop_web-canary_80"}[30s])))'
    )


@pytest.mark.parametrize(
    ("provider", "counter", "selector", "histogram"),
    [
        (
            "istio",
            "istio_requests_total",
            'reporter="source",destination_service_namespace="shop",'
            'destination_service_name="web-canary"',
            "istio_request_duration_milliseconds_bucket",
        ),
        (
            "traefik",
            "traefik_service_requests_total",
            'service="shop-web-canary-http-80@kubernetesgateway"',
            "traefik_service_request_duration_seconds_bucket",
        ),
    ],
)
def test_istio_and_traefik_use_their_documented_names(
    provider: str, counter: str, selector: str, histogram: str
) -> None:
    rate = builtin_query(ctx(provider), "request-success-rate", "1m")
    p99 = builtin_query(ctx(provider), "request-duration", "1m")

    assert f"{counter}{{{selector}," in rate and f"{counter}{{{selector}}}[1m]" in rate
    assert f"{histogram}{{{selector}}}[1m]" in p99
    assert p99.endswith(" * 1000") == (provider == "traefik")  # seconds -> ms


@pytest.mark.parametrize(
    ("provider", "says"),
    [(None, "need spec.provider"), ("gatewayapi:v1", "Gateway API defines none")],
)
def test_no_builtin_without_a_data_plane_that_exports_them(provider: str | None, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        builtin_query(ctx(provider), "request-success-rate", "1m")


def spec(**fields: object) -> CanaryReleaseSpec:
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "web"},
            "images": {"web": "ghcr.io/stefanprodan/podinfo:6.0.1"},
            "analysis": {"metrics": [{"name": "request-success-rate"}]},
            **fields,
        }
    )


def test_a_route_release_is_refused_at_start_without_a_provider_for_its_builtins() -> None:
    route = {"routeRef": {"name": "web"}}

    assert provider_problems(spec(**route, provider="contour")) == []
    assert "need spec.provider" in provider_problems(spec(**route))[0]
    assert "provider nginx reads ingress-nginx" in provider_problems(
        spec(**route, provider="nginx")
    )[0]
    assert provider_problems(spec(ingressRef={"name": "web"})) == []


@pytest.mark.parametrize(
    "refs",
    [{}, {"ingressRef": {"name": "web"}, "routeRef": {"name": "web"}}],
)
def test_exactly_one_of_ingress_ref_and_route_ref(refs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="exactly one of ingressRef"):
        spec(**refs)


def test_route_ref_takes_http_and_grpc_routes_only() -> None:
    assert spec(routeRef={"kind": "GRPCRoute", "name": "web"}).route_ref is not None
    with pytest.raises(ValueError, match="HTTPRoute"):
        spec(routeRef={"kind": "Ingress", "name": "web"})
