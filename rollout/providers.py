"""Built-in metrics by data plane: the PromQL of ``request-success-rate`` and
``request-duration`` for each ``spec.provider`` (Flagger's provider names).

Every provider answers the same two questions for one side of the split (canary or
stable): the share of non-5xx responses in percent, and the real 99th percentile of the
request duration in milliseconds (``histogram_quantile`` over the data plane's own
histogram, so it is only as fine as that histogram's buckets).

- ``nginx`` (the default with ``ingressRef``): ingress-nginx's
  ``nginx_ingress_controller_requests`` and ``…_request_duration_seconds_bucket`` for the
  MAIN Ingress, the side told apart by the ``canary`` label (empty or ``-`` on the stable
  side, depending on the controller's version).
- ``contour``: the Envoy that Contour programs keeps one upstream cluster per backend
  Service, its stats named ``<namespace>_<service>_<port>``:
  ``envoy_cluster_upstream_rq{envoy_cluster_name, envoy_response_code}`` and
  ``envoy_cluster_upstream_rq_time_bucket`` (milliseconds). Checked against the stats a
  real Envoy exports in tests/gateway/.
- ``istio``: ``istio_requests_total{reporter="source", destination_service_name,
  destination_service_namespace, response_code}`` and
  ``istio_request_duration_milliseconds_bucket``, as Istio's standard metrics
  documentation names them (not run here).
- ``traefik``: ``traefik_service_requests_total{service, code}`` and
  ``traefik_service_request_duration_seconds_bucket`` with ``addServicesLabels: true``;
  a Gateway API backend's service label is ``<namespace>-<service>-http-<port>@
  kubernetesgateway``, as Traefik's metrics and Kubernetes Gateway provider
  documentation give them (not run here).
- ``gatewayapi:v1``: Gateway API itself defines no metrics, so there are no built-ins;
  name the implementation instead, or give the metric a ``query`` or ``templateRef``.
  Envoy Gateway is not offered: it makes one Envoy cluster per route rule, so the
  canary's and the stable side's requests share one series.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

REQUEST_SUCCESS_RATE = "request-success-rate"
REQUEST_DURATION = "request-duration"
BUILTIN_METRICS = (REQUEST_SUCCESS_RATE, REQUEST_DURATION)
PROVIDERS = ("nginx", "contour", "gatewayapi:v1", "istio", "traefik")


@dataclass(frozen=True)
class Side:
    """Where one side's requests show up: the release's namespace, the main Ingress (for
    nginx), the Service of this side and its port, and which side it is."""

    namespace: str
    ingress: str
    service: str
    port: int
    canary: bool


@dataclass(frozen=True)
class BuiltinSet:
    """One data plane's built-in queries and what to check when they return nothing."""

    selector: Callable[[Side], str]
    requests: str  # the request counter
    code_5xx: str  # matcher of the counter's 5xx series
    buckets: str  # the duration histogram's buckets
    to_ms: str  # what turns the histogram's unit into milliseconds
    hint: str

    def success_rate(self, side: Side, window: str) -> str:
        """Non-5xx requests / all requests x 100, in percent."""
        sel = self.selector(side)
        return (
            f"sum(rate({self.requests}{{{sel},{self.code_5xx}}}[{window}]))"
            f" / sum(rate({self.requests}{{{sel}}}[{window}])) * 100"
        )

    def duration_p99(self, side: Side, window: str) -> str:
        """The 99th percentile of the request duration, in milliseconds."""
        sel = self.selector(side)
        return (
            f"histogram_quantile(0.99, sum by (le) (rate({self.buckets}{{{sel}}}[{window}])))"
            f"{self.to_ms}"
        )


def _nginx(side: Side) -> str:
    # A Prometheus regex matcher is anchored, so "|-" means exactly "" or "-".
    marker = 'canary!~"|-"' if side.canary else 'canary=~"|-"'
    return f'namespace="{side.namespace}",ingress="{side.ingress}",{marker}'


def _contour(side: Side) -> str:
    return f'envoy_cluster_name="{side.namespace}_{side.service}_{side.port}"'


def _istio(side: Side) -> str:
    return (
        f'reporter="source",destination_service_namespace="{side.namespace}",'
        f'destination_service_name="{side.service}"'
    )


def _traefik(side: Side) -> str:
    return f'service="{side.namespace}-{side.service}-http-{side.port}@kubernetesgateway"'


BUILTINS: dict[str, BuiltinSet] = {
    "nginx": BuiltinSet(
        _nginx,
        "nginx_ingress_controller_requests",
        'status!~"5.."',
        "nginx_ingress_controller_request_duration_seconds_bucket",
        " * 1000",
        "check that Prometheus scrapes the ingress-nginx controller's metrics",
    ),
    "contour": BuiltinSet(
        _contour,
        "envoy_cluster_upstream_rq",
        'envoy_response_code!~"5.."',
        "envoy_cluster_upstream_rq_time_bucket",
        "",
        "check that Prometheus scrapes Envoy's /stats/prometheus (Contour's Envoy pods)",
    ),
    "istio": BuiltinSet(
        _istio,
        "istio_requests_total",
        'response_code!~"5.."',
        "istio_request_duration_milliseconds_bucket",
        "",
        "check that Prometheus scrapes the Istio gateway's and sidecars' metrics",
    ),
    "traefik": BuiltinSet(
        _traefik,
        "traefik_service_requests_total",
        'code!~"5.."',
        "traefik_service_request_duration_seconds_bucket",
        " * 1000",
        "check that Prometheus scrapes Traefik with metrics.prometheus.addServicesLabels",
    ),
}


def builtins_of(provider: str | None) -> BuiltinSet:
    """The built-in queries of ``provider``; ``ValueError`` says what to set instead."""
    if provider is None:
        raise ValueError(
            "built-in metrics with a routeRef need spec.provider naming the Gateway API "
            "implementation (contour, istio or traefik); or give the metric a query"
        )
    found = BUILTINS.get(provider)
    if found is None:
        if provider == "gatewayapi:v1":
            raise ValueError(
                "provider gatewayapi:v1 has no built-in metrics (Gateway API defines none); "
                "set spec.provider to the implementation (contour, istio or traefik) or "
                "give the metric a query or templateRef"
            )
        raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    return found


def builtin_query(provider: str | None, side: Side, name: str, interval: str) -> str:
    """The PromQL of built-in metric ``name`` for one side, as ``provider`` exports it."""
    queries = builtins_of(provider)
    if name == REQUEST_SUCCESS_RATE:
        return queries.success_rate(side, interval)
    if name == REQUEST_DURATION:
        return queries.duration_p99(side, interval)
    raise ValueError(f"{name!r} is not a built-in metric; built-ins: {', '.join(BUILTIN_METRICS)}")


def no_values_hint(provider: str | None) -> str:
    """What to check when a built-in metric of ``provider`` has no data."""
    found = BUILTINS.get(provider or "")
    return found.hint if found is not None else "check spec.provider"
