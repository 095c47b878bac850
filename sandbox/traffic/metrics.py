"""The series ingress-nginx exports, in its shape, from the simulator's counts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from sandbox.traffic.simulator import TrafficSimulator


#: ingress-nginx's default duration buckets (the Go client's DefBuckets), in seconds.
DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = "nginx_ingress_controller_requests"
REQUEST_DURATION = "nginx_ingress_controller_request_duration_seconds"
RESPONSE_DURATION = "nginx_ingress_controller_response_duration_seconds"
LABEL_NAMES: tuple[str, ...] = (
    "canary",
    "controller_class",
    "controller_namespace",
    "controller_pod",
    "ingress",
    "method",
    "namespace",
    "path",
    "service",
    "status",
)


@dataclass
class Series:
    """One label set's request count, duration sum and histogram buckets."""

    count: int = 0
    duration_sum: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DEFAULT_BUCKETS) + 1))


def _le(bound: float) -> str:
    # Go's client writes bucket bounds like 0.005, 1, 2.5 (no trailing ".0").
    return format(bound, "g")


class IngressCollector(Collector):
    """Exports the simulator's series in ingress-nginx's shape."""

    def __init__(self, sim: TrafficSimulator) -> None:
        self._sim = sim

    def collect(self) -> Iterable[Metric]:
        series = self._sim._series_snapshot()
        requests = Metric(REQUESTS, "Client requests served, by status (simulated)", "counter")
        request_duration = HistogramMetricFamily(
            REQUEST_DURATION,
            "Time to serve a request, in seconds (simulated)",
            labels=LABEL_NAMES,
        )
        response_duration = HistogramMetricFamily(
            RESPONSE_DURATION,
            "Time the upstream took to answer, in seconds (simulated)",
            labels=LABEL_NAMES,
        )
        for labels, state in sorted(series.items()):
            label_dict = dict(zip(LABEL_NAMES, labels, strict=True))
            requests.add_sample(REQUESTS, label_dict, float(state.count))
            cumulative: list[tuple[str, float]] = []
            running = 0
            for bound, count in zip(DEFAULT_BUCKETS, state.buckets, strict=False):
                running += count
                cumulative.append((_le(bound), float(running)))
            cumulative.append(("+Inf", float(state.count)))
            # The simulator has no nginx overhead: upstream time is the request time.
            request_duration.add_metric(list(labels), cumulative, state.duration_sum)
            response_duration.add_metric(list(labels), cumulative, state.duration_sum)
        return [requests, request_duration, response_duration]
