"""The engine's Prometheus metrics, served on /metrics next to the Slack front's.

Names follow the ``canarybot_`` prefix of the front. Per-release series (weight, phase)
are dropped when a release is deleted, so a long-running bot does not grow without end.

Label values come only from bounded sets: a metric's name, which any CanaryRelease author
chooses, is exported as itself only for the built-in metrics (``request-success-rate``,
``request-duration``); every other metric is counted under ``metric="custom"``. Per-metric
results of one release are in its status (``kubectl get crel -o yaml``), not here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from rollout.analysis import BUILTIN_METRICS
from rollout.engine import AdvanceStats
from rollout.kube import RequestCounter
from rollout.models import CanaryRelease, Phase

CUSTOM_METRIC_LABEL = "custom"


def metric_label(name: str) -> str:
    """The ``metric`` label value for an analysis metric: a built-in name, or ``custom``."""
    return name if name in BUILTIN_METRICS else CUSTOM_METRIC_LABEL


class _KubeRequests(Collector):
    """Exports the gateway's request and error counts as counters."""

    def __init__(self, counter: RequestCounter) -> None:
        self._counter = counter

    def collect(self) -> Iterable[CounterMetricFamily]:
        requests = CounterMetricFamily(
            "canarybot_kube_api_requests",
            "Kubernetes API requests made by the engine, by verb and resource.",
            labels=["verb", "resource"],
        )
        errors = CounterMetricFamily(
            "canarybot_kube_api_errors",
            "Failed Kubernetes API requests, by resource and HTTP status (0: unreachable).",
            labels=["resource", "code"],
        )
        with self._counter._lock:
            counts = dict(self._counter.counts)
            failed = dict(self._counter.errors)
        for (verb, resource), value in sorted(counts.items()):
            requests.add_metric([verb, resource], value)
        for (resource, code), value in sorted(failed.items()):
            errors.add_metric([resource, str(code)], value)
        yield requests
        yield errors


class EngineMetrics:
    """Rollouts by phase, canary weight, analysis results, durations, API use."""

    def __init__(self, registry: CollectorRegistry, kube_requests: RequestCounter) -> None:
        self.phases = Gauge(
            "canarybot_rollouts",
            "CanaryReleases this engine has seen, by phase.",
            ["phase"],
            registry=registry,
        )
        self.weight = Gauge(
            "canarybot_canary_weight",
            "Current canary traffic weight in percent.",
            ["namespace", "release"],
            registry=registry,
        )
        self.analysis = Counter(
            "canarybot_analysis_results",
            "Metric checks run, by namespace, metric (built-in name or custom) and result "
            "(ok, failed, no_value).",
            ["namespace", "metric", "result"],
            registry=registry,
        )
        self.duration = Histogram(
            "canarybot_rollout_duration_seconds",
            "Time from a release's start to its end, by outcome.",
            ["outcome"],
            buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200),
            registry=registry,
        )
        self.advance = Histogram(
            "canarybot_advance_seconds",
            "Time one advance (observe, decide, act, write) takes.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.leader = Gauge(
            "canarybot_leader", "1 while this replica holds the leader Lease.", registry=registry
        )
        registry.register(_KubeRequests(kube_requests))
        self._phase_of: dict[str, str] = {}
        for phase in Phase:
            self.phases.labels(phase=phase.value).set(0)

    def observe(self, release: CanaryRelease, stats: AdvanceStats) -> None:
        """Record one advance (the Engine's ``on_advanced`` hook)."""
        key = f"{release.metadata.namespace}/{release.metadata.name}"
        namespace, name = release.metadata.namespace, release.metadata.name
        previous = self._phase_of.get(key)
        phase = release.status.phase
        if previous != phase.value:
            if previous is not None:
                self.phases.labels(phase=previous).dec()
            self.phases.labels(phase=phase.value).inc()
            self._phase_of[key] = phase.value
            if phase.is_final and previous is not None and release.status.started_at:
                finished = release.status.finished_at or release.status.started_at
                outcome = "succeeded" if phase == Phase.SUCCEEDED else "failed"
                seconds = (finished - release.status.started_at).total_seconds()
                self.duration.labels(outcome=outcome).observe(max(seconds, 0.0))
        self.weight.labels(namespace=namespace, release=name).set(release.status.canary_weight)
        for check in stats.checks:
            result = "no_value" if check.value is None else ("ok" if check.ok else "failed")
            self.analysis.labels(
                namespace=namespace, metric=metric_label(check.name), result=result
            ).inc()
        self.advance.observe(stats.seconds)

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted release's series."""
        phase = self._phase_of.pop(f"{namespace}/{name}", None)
        if phase is not None:
            self.phases.labels(phase=phase).dec()
        with contextlib.suppress(KeyError):
            self.weight.remove(namespace, name)
