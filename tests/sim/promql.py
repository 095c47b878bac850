"""PromQL in the shape Flagger's nginx checks use, plus a polling helper."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sandbox.polling import poll

T = TypeVar("T")

REQUESTS = "nginx_ingress_controller_requests"


def selector(namespace: str, ingress: str, *, canary: bool) -> str:
    """Series of the canary side (``canary!=""``) or the stable side (``canary=""``)."""
    side = 'canary!=""' if canary else 'canary=""'
    return f'namespace="{namespace}",ingress="{ingress}",{side}'


def success_rate(namespace: str, ingress: str, *, canary: bool = True, window: str = "10s") -> str:
    """Non-5xx request rate over all request rate, in percent."""
    sel = selector(namespace, ingress, canary=canary)
    return (
        f'sum(rate({REQUESTS}{{{sel},status!~"5.*"}}[{window}])) / '
        f"sum(rate({REQUESTS}{{{sel}}}[{window}])) * 100"
    )


def canary_share(namespace: str, ingress: str, window: str = "10s") -> str:
    """Fraction of the Ingress's requests served by the canary."""
    sel = f'namespace="{namespace}",ingress="{ingress}"'
    return (
        f'sum(rate({REQUESTS}{{{sel},canary!=""}}[{window}])) / '
        f"sum(rate({REQUESTS}{{{sel}}}[{window}]))"
    )


def p99_seconds(namespace: str, ingress: str, *, canary: bool = True, window: str = "10s") -> str:
    """The 99th percentile request duration from the histogram buckets."""
    sel = selector(namespace, ingress, canary=canary)
    return (
        "histogram_quantile(0.99, sum by (le) (rate("
        f"nginx_ingress_controller_request_duration_seconds_bucket{{{sel}}}[{window}])))"
    )


def mean_response_ms(
    namespace: str, ingress: str, *, canary: bool = True, window: str = "10s"
) -> str:
    """Flagger's request-duration check: mean upstream response time in milliseconds."""
    sel = selector(namespace, ingress, canary=canary)
    metric = "nginx_ingress_controller_response_duration_seconds"
    return (
        f"sum(rate({metric}_sum{{{sel}}}[{window}])) / "
        f"sum(rate({metric}_count{{{sel}}}[{window}])) * 1000"
    )


def eventually(
    probe: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.5,
) -> T:
    """Poll ``probe`` until ``accept`` holds; fail with the last value after ``timeout``."""
    return poll(probe, accept, timeout, what, interval=interval)
