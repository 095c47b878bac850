"""PrometheusProvider against a real Prometheus scraping the ingress-nginx simulator.

The simulator's canary weight comes from a callable, so no API server is needed; every
test uses its own namespace label so series from other tests never mix in.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from rollout.analysis import PrometheusProvider, QueryContext, run_checks
from rollout.decision import Measurement
from rollout.models import Metric
from sandbox.prometheus import PrometheusServer
from tests.fixtures.prometheus import TrafficFactory

pytestmark = pytest.mark.prometheus

INGRESS = "podinfo"
# Short windows keep the tests quick; the rate needs two scrapes (1 s apart) to exist.
WINDOW = "15s"


@pytest.fixture
def ctx() -> QueryContext:
    namespace = f"an-{uuid.uuid4().hex[:8]}"
    return QueryContext(
        namespace=namespace,
        target="podinfo",
        ingress=INGRESS,
        service="podinfo",
        port=80,
        release="podinfo",
    )


@pytest.fixture
async def provider(prometheus: PrometheusServer) -> AsyncIterator[PrometheusProvider]:
    prov = PrometheusProvider(
        prometheus.url,
        templates={
            "error-rate": (
                'sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",'
                'ingress="{{ ingress }}",canary="{{ canary }}",status=~"{{ variables.codes }}"}'
                "[{{ interval }}]))"
                ' / sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",'
                'ingress="{{ ingress }}",canary="{{ canary }}"}[{{ interval }}])) * 100'
            )
        },
    )
    yield prov
    prov.close()


async def measure_until(
    provider: PrometheusProvider,
    ctx: QueryContext,
    metric: Metric,
    accept: Callable[[Measurement], bool],
    *,
    what: str,
    timeout: float = 30,
) -> Measurement:
    """Measure until ``accept`` holds (Prometheus needs a few scrapes of new series)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await provider.measure(ctx, metric)
        if accept(result):
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: last result after {timeout:g}s: {result}")
        await asyncio.sleep(0.5)


def has_value(result: Measurement) -> bool:
    return result.value is not None


@pytest.fixture
def fifty_fifty() -> Callable[[], float]:
    return lambda: 50.0


def success_rate(min_: float = 99, **extra: object) -> Metric:
    return Metric.model_validate(
        {
            "name": "request-success-rate",
            "interval": WINDOW,
            "thresholdRange": {"min": min_},
            **extra,
        }
    )


def duration(max_: float, **extra: object) -> Metric:
    return Metric.model_validate(
        {"name": "request-duration", "interval": WINDOW, "thresholdRange": {"max": max_}, **extra}
    )


async def test_failing_canary_reads_about_half_and_fails(
    provider: PrometheusProvider, ctx: QueryContext, traffic: TrafficFactory
) -> None:
    traffic(
        ctx.namespace, INGRESS, "podinfo", weight=lambda: 50.0, rps=40, canary={"error_rate": 0.5}
    )

    result = await measure_until(
        provider, ctx, success_rate(), has_value, what="canary success rate"
    )

    assert result.value == pytest.approx(50, abs=5)
    assert not result.ok
    assert result.message == f"request-success-rate {result.value:.2f}% (threshold >= 99)"


async def test_healthy_canary_reads_about_100_and_passes(
    provider: PrometheusProvider, ctx: QueryContext, traffic: TrafficFactory
) -> None:
    # 10 % errors on the stable side must not leak into the canary's number.
    traffic(
        ctx.namespace, INGRESS, "podinfo", weight=lambda: 30.0, rps=40, stable={"error_rate": 0.1}
    )

    result = await measure_until(
        provider, ctx, success_rate(), has_value, what="canary success rate"
    )

    assert result.value == pytest.approx(100)
    assert result.ok
    assert result.message == "request-success-rate 100.00% (threshold >= 99)"


async def test_p99_of_a_300ms_canary_is_in_its_bucket_and_judged_by_threshold(
    provider: PrometheusProvider, ctx: QueryContext, traffic: TrafficFactory
) -> None:
    traffic(
        ctx.namespace,
        INGRESS,
        "podinfo",
        weight=lambda: 50.0,
        rps=40,
        stable={"latency_ms": 20, "jitter_ms": 2},
        canary={"latency_ms": 300, "jitter_ms": 10},
    )

    relaxed = await measure_until(provider, ctx, duration(1000), has_value, what="canary p99")
    strict = await provider.measure(ctx, duration(200))

    # ingress-nginx's default buckets put 300 ms in (250, 500]; histogram_quantile
    # interpolates inside that bucket, so the p99 reads within it (not a mean of 300).
    assert relaxed.value is not None and 250 < relaxed.value <= 500
    assert relaxed.ok
    assert relaxed.message.endswith("ms (threshold <= 1000)")
    assert strict.value is not None and 250 < strict.value <= 500
    assert not strict.ok


async def test_no_traffic_gives_flaggers_no_values_message(
    provider: PrometheusProvider, ctx: QueryContext, traffic: TrafficFactory
) -> None:
    sim = traffic(ctx.namespace, INGRESS, "podinfo", weight=lambda: 50.0, rps=0)
    await asyncio.to_thread(sim.wait_for_weight, 50.0)

    result = await provider.measure(ctx, success_rate())
    p99 = await provider.measure(ctx, duration(500))

    for checked in (result, p99):
        assert checked.value is None and not checked.ok and not checked.fail_fast
        assert checked.message.startswith(
            f"no values found for nginx metric {checked.name} probably "
            f"podinfo.{ctx.namespace} is not receiving traffic: "
        )
        assert "load-test webhook" in checked.message


async def test_compare_mode_fails_a_canary_worse_than_stable(
    provider: PrometheusProvider, ctx: QueryContext, traffic: TrafficFactory
) -> None:
    traffic(
        ctx.namespace,
        INGRESS,
        "podinfo",
        weight=lambda: 50.0,
        rps=40,
        stable={"error_rate": 0.05},
        canary={"error_rate": 0.2},
    )
    # The absolute threshold alone (>= 70) would pass the canary at ~80 %.
    metric = success_rate(70, compareToStable=5)

    # The first error responses of each side arrive after a few requests: wait for both.
    result = await measure_until(
        provider,
        ctx,
        metric,
        lambda r: (
            r.value is not None
            and r.value < 90
            and r.stable_value is not None
            and r.stable_value < 100
        ),
        what="canary and stable success rates",
    )

    assert result.value == pytest.approx(80, abs=4)
    assert result.stable_value == pytest.approx(95, abs=2)
    assert not result.ok
    assert "points below stable, tolerance 5" in result.message
    assert "vs stable" in result.message
    lenient = await provider.measure(ctx, success_rate(70, compareToStable=30))
    assert lenient.ok, lenient.message


async def test_fail_fast_flags_a_collapsed_canary(
    provider: PrometheusProvider, ctx: QueryContext, traffic: TrafficFactory
) -> None:
    traffic(
        ctx.namespace, INGRESS, "podinfo", weight=lambda: 50.0, rps=40, canary={"error_rate": 0.8}
    )

    result = await measure_until(
        provider, ctx, success_rate(99, failFast={"min": 50}), has_value, what="success rate"
    )

    assert result.value == pytest.approx(20, abs=5)
    assert result.fail_fast and not result.ok
    assert "beyond fail-fast range >= 50" in result.message


async def test_custom_query_and_template_measure_the_canary(
    provider: PrometheusProvider, ctx: QueryContext, traffic: TrafficFactory
) -> None:
    sim = traffic(
        ctx.namespace, INGRESS, "podinfo", weight=lambda: 25.0, rps=40, canary={"error_rate": 0.2}
    )
    await asyncio.to_thread(sim.wait_for_weight, 25.0)
    inline = Metric.model_validate(
        {
            "name": "canary-share",
            "interval": WINDOW,
            "thresholdRange": {"min": 20, "max": 30},
            "query": (
                'sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",'
                'canary="{{ canary }}"}[{{ interval }}])) / sum(rate('
                'nginx_ingress_controller_requests{namespace="{{ namespace }}"}[{{ interval }}]))'
                " * 100"
            ),
        }
    )
    template = Metric.model_validate(
        {
            "name": "error-rate",
            "interval": WINDOW,
            "templateRef": {"name": "error-rate"},
            "templateVariables": {"codes": "5.."},
            "thresholdRange": {"max": 1},
        }
    )

    await measure_until(provider, ctx, inline, has_value, what="canary share")
    await measure_until(provider, ctx, template, has_value, what="canary error rate")
    share, errors = await run_checks(provider, ctx, [inline, template])

    assert share.value == pytest.approx(25, abs=3) and share.ok
    assert f'canary="{ctx.canary}"' in share.query
    assert errors.value == pytest.approx(20, abs=3) and not errors.ok
    assert errors.message == f"error-rate {errors.value:.4g} (threshold <= 1)"


async def test_unknown_template_and_bad_query_fail_with_a_reason(
    provider: PrometheusProvider, ctx: QueryContext
) -> None:
    missing = Metric.model_validate({"name": "latency", "templateRef": {"name": "nope"}})
    broken = Metric(name="broken", query="sum(rate(foo[1m]")

    first, second = await run_checks(provider, ctx, [missing, broken])

    assert not first.ok and "metric template 'nope' is not defined" in first.message
    assert not second.ok
    assert second.message.startswith("broken: Prometheus could not be queried: HTTP 400")
    assert "parse error" in second.message


@pytest.fixture
def refused_port() -> Iterator[int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]  # bound, never listening: connections are refused


async def test_unreachable_prometheus_fails_the_check_without_leaking_credentials(
    ctx: QueryContext, refused_port: int
) -> None:
    provider = PrometheusProvider(f"http://admin:s3cret@127.0.0.1:{refused_port}", timeout=2)

    result = await provider.measure(ctx, success_rate())

    assert not result.ok and result.value is None
    assert result.message == (
        "request-success-rate: Prometheus could not be queried: "
        "connection failed (connection refused)"
    )
    assert "s3cret" not in result.message and "s3cret" not in provider.url


async def test_a_template_pasted_from_flagger_selects_by_the_targets_name(
    prometheus: PrometheusServer, traffic: TrafficFactory
) -> None:
    # `/canary start` names the release podinfo-<suffix>; Flagger's `{{ name }}` is the
    # Canary's name, which is the target's, so the pasted template must still match
    namespace = f"an-{uuid.uuid4().hex[:8]}"
    ctx = QueryContext(namespace, "podinfo", INGRESS, "podinfo", 80, "podinfo-x7k2p")
    sim = traffic(namespace, INGRESS, "podinfo", weight=lambda: 50.0, rps=40)
    await asyncio.to_thread(sim.wait_for_weight, 50.0)
    pasted = (
        'sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",'
        'ingress="{{ ingress }}",canary="{{ namespace }}-{{ name }}-canary-80"}[{{ interval }}]))'
    )
    # what {{ name }} used to be: the release's name, which no series carries
    by_release = pasted.replace("{{ name }}", "{{ release }}")
    prov = PrometheusProvider(
        prometheus.url, templates={"canary-rps": pasted, "by-release": by_release}
    )

    def metric(template: str) -> Metric:
        return Metric.model_validate(
            {
                "name": template,
                "interval": WINDOW,
                "templateRef": {"name": template},
                "thresholdRange": {"min": 0.1},
            }
        )

    try:
        result = await measure_until(
            prov, ctx, metric("canary-rps"), has_value, what="canary request rate"
        )
        old_meaning = await prov.measure(ctx, metric("by-release"))
    finally:
        prov.close()
    assert f'canary="{namespace}-podinfo-canary-80"' in result.query
    assert result.value is not None and result.value > 0 and result.ok
    assert old_meaning.value is None and "no values found" in old_meaning.message
