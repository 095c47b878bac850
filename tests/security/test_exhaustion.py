"""Finding 8, resource exhaustion: no CanaryRelease can make canary-bot do unbounded work.

- The CRD limits every list and map an author writes (metrics, webhooks, match rules,
  controlRequests, metadata, images, stepWeights) and every string in them.
- A custom query's answer is read only up to a bound (a real Prometheus answering a day
  of one-second samples, the shape of ``{__name__=~".+"}[1d]``): the check fails with a
  message that says to aggregate it.
- Metric names chosen by authors never become Prometheus label values of canary-bot.
- ``interval: "0s"`` is refused, and the scheduler ticks no release more than once a
  second even for an object stored before that bound.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from rollout.analysis import MAX_RESULT_BYTES, PrometheusProvider, QueryContext
from rollout.decide import Measurement
from rollout.engine import AdvanceStats
from rollout.kube import RequestCounter
from rollout.metrics import EngineMetrics
from rollout.models import CanaryRelease, Metric
from sandbox.prometheus import PrometheusServer
from tests.deploy.kubectl import Kubectl
from tests.fixtures.engine import ControllerFactory
from tests.security.conftest import VALID, apply, with_value

HOOK = {"name": "h", "url": "http://loadtester.test/"}

TOO_MANY = [
    (
        "spec.analysis.metrics",
        [{"name": f"m{i}"} for i in range(21)],
        "spec.analysis.metrics: Too many: 21: must have at most 20 items",
    ),
    (
        "spec.analysis.webhooks",
        [{**HOOK, "name": f"h{i}"} for i in range(21)],
        "spec.analysis.webhooks: Too many: 21: must have at most 20 items",
    ),
    (
        "spec.controlRequests",
        [{"id": f"r{i}", "action": "pause"} for i in range(51)],
        "spec.controlRequests: Too many: 51: must have at most 50 items",
    ),
    (
        "spec.analysis.match",
        [{"headers": {"x": {"exact": "1"}}}] * 11,
        "spec.analysis.match: Too many: 11: must have at most 10 items",
    ),
    (
        "spec.analysis.match",
        [{"headers": {f"x-{i}": {"exact": "1"} for i in range(17)}}],
        "spec.analysis.match[0].headers: Too many: 17: must have at most 16 items",
    ),
    (
        "spec.analysis.stepWeights",
        [*range(1, 102)],
        "spec.analysis.stepWeights: Too many: 101: must have at most 100 items",
    ),
    (
        "spec.analysis.webhooks",
        [{**HOOK, "metadata": {f"k{i}": "v" for i in range(33)}}],
        "spec.analysis.webhooks[0].metadata: Too many: 33: must have at most 32 items",
    ),
    (
        "spec.analysis.webhooks",
        [{**HOOK, "metadata": {"cmd": "x" * 5000}}],
        "spec.analysis.webhooks[0].metadata.cmd: Too long: may not be more than 4096 bytes",
    ),
    (
        "spec.analysis.metrics",
        [{"name": "m", "templateVariables": {f"v{i}": "x" for i in range(33)}}],
        "spec.analysis.metrics[0].templateVariables: Too many: 33: must have at most 32 items",
    ),
    (
        "spec.images",
        {f"c{i}": "nginx:1" for i in range(33)},
        "spec.images: Too many: 33: must have at most 32 items",
    ),
    (
        "spec.analysis.interval",
        "0s",
        'spec.analysis.interval: Invalid value: "string": must be a duration from 1s to 24h',
    ),
]


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("path", "value", "message"), TOO_MANY, ids=[m.split(":")[0] for _, _, m in TOO_MANY]
)
def test_api_server_refuses_lists_and_maps_over_their_limits(
    kubectl: Kubectl, namespace: str, path: str, value: Any, message: str
) -> None:
    done = apply(kubectl, namespace, with_value(path, value))

    assert done.returncode != 0, f"{path} with {len(value)} entries was accepted"
    assert message in done.stderr, done.stderr


# -- Prometheus ------------------------------------------------------------------------------

CTX = QueryContext("apps", "podinfo", "podinfo", "podinfo", 80, "podinfo")


@pytest.mark.prometheus
async def test_a_query_over_every_series_fails_the_check_instead_of_loading_them(
    prometheus: PrometheusServer,
) -> None:
    provider = PrometheusProvider(prometheus.url)
    try:
        # a day of one-second samples in one answer: ~2 MB of JSON, over the bound
        flood = Metric(name="everything", query="vector(1)[24h:1s]", thresholdRange={"min": 0})
        many = Metric(
            name="many",
            query='vector(1) or label_replace(vector(2), "copy", "2", "", "")',
            thresholdRange={"min": 0},
        )

        flooded = await provider.measure(CTX, flood)
        several = await provider.measure(CTX, many)
        after = await provider.measure(CTX, Metric(name="one", query="vector(1)"))
    finally:
        provider.close()

    assert not flooded.ok and flooded.value is None
    assert flooded.message == (
        f"everything: the query's answer is over {MAX_RESULT_BYTES // 1024} KiB, more than "
        "one check reads; aggregate the query (e.g. with sum(...)) so it returns one series"
    )
    assert not several.ok
    assert several.message == (
        "many: the query returned 2 series; it must return 1 "
        "(aggregate the query (e.g. with sum(...)) so it returns one series)"
    )
    assert after.ok and after.value == 1.0  # the provider keeps working


def test_metric_names_from_specs_are_not_label_values() -> None:
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry, RequestCounter())
    chosen = f"anything-{uuid.uuid4().hex}"
    release = CanaryRelease.model_validate(
        {**VALID, "metadata": {"name": "p", "namespace": "apps"}}
    )
    checks = (
        Measurement(chosen, 1.0, None, True, False, "ok"),
        Measurement("request-success-rate", 99.9, None, True, False, "ok"),
    )

    metrics.observe(release, AdvanceStats(checks=checks))

    def sample(metric: str) -> float | None:
        return registry.get_sample_value(
            "canarybot_analysis_results_total",
            {"namespace": "apps", "metric": metric, "result": "ok"},
        )

    assert sample("custom") == 1.0
    assert sample("request-success-rate") == 1.0
    assert sample(chosen) is None
    exported = [
        s.labels.get("metric")
        for f in registry.collect()
        for s in f.samples
        if "metric" in s.labels
    ]
    assert chosen not in exported


@pytest.mark.cluster
@pytest.mark.prometheus
async def test_the_scheduler_ticks_no_release_more_than_once_a_second(
    controller_factory: ControllerFactory,
) -> None:
    controller = await controller_factory(namespace="nowhere", max_tick_seconds=10.0)
    stored_before_the_bound = with_value("spec.analysis.interval", "0s", name="busy")
    stored_before_the_bound["metadata"]["namespace"] = "nowhere"

    controller._schedule("nowhere/busy", stored_before_the_bound)

    assert controller._scheduler is not None
    job = controller._scheduler.get_job("nowhere/busy")
    assert job is not None and job.trigger.interval.total_seconds() == 1.0
