"""The chart's data: a rollout's timeline from the release's status and from Prometheus.

The status half needs no server (a stand-in answers the range queries); the Prometheus
half runs the real Prometheus scraping the ingress-nginx traffic simulator.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollout.analysis import PrometheusProvider, QueryContext
from rollout.models import CanaryRelease, Phase
from rollout.timeline import (
    DEFAULT_WINDOW,
    MAX_POINTS,
    Timeline,
    WeightStep,
    release_timeline,
    rollout_timeline,
)
from sandbox.prometheus import PrometheusServer
from tests.bot.factories import NOW, release
from tests.fixtures.prometheus import TrafficFactory

T0 = NOW - timedelta(minutes=5)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def engine_event(seq: int, type_: str, seconds: float, weight: int, phase: Phase) -> dict[str, Any]:
    return {
        "seq": seq,
        "type": type_,
        "message": f"{type_} at {seconds}s",
        "at": at(seconds).isoformat(),
        "weight": weight,
        "phase": phase.value,
    }


def point(seconds: float, weight: int, rate: float | None, ok: bool) -> dict[str, Any]:
    return {
        "at": at(seconds).isoformat(),
        "weight": weight,
        "values": {"request-success-rate": rate, "request-duration": 40.0},
        "stableValues": {"request-success-rate": 100.0},
        "ok": ok,
    }


def rolled_back_release(**analysis: Any) -> CanaryRelease:
    """A release as the engine leaves it after rolling back at 40 s (weight 5, then 10)."""
    base = release(Phase.FAILED, weight=0)
    raw = base.model_dump(mode="json", by_alias=True)
    raw["spec"]["analysis"] = {
        "interval": "10s",
        "threshold": 2,
        "maxWeight": 20,
        "stepWeight": 5,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "15s"},
            {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "20s"},
        ],
        **analysis,
    }
    reason = "failed checks threshold reached 2"
    raw["status"].update(
        {
            "startedAt": at(0).isoformat(),
            "finishedAt": at(40).isoformat(),
            "reason": reason,
            "message": reason,
            "events": [
                engine_event(1, "Started", 0, 0, Phase.INITIALIZED),
                engine_event(2, "StepAdvanced", 10, 5, Phase.PROGRESSING),
                engine_event(3, "StepAdvanced", 20, 10, Phase.PROGRESSING),
                engine_event(4, "Halted", 30, 10, Phase.PROGRESSING),
                engine_event(5, "Halted", 40, 10, Phase.PROGRESSING),
                engine_event(6, "RolledBack", 40, 0, Phase.FAILED),
            ],
            # the engine measures, then steps: a point has the weight it measured at
            "history": [
                point(20, 5, 100.0, True),
                point(30, 10, 52.0, False),
                point(40, 10, None, False),
            ],
        }
    )
    return CanaryRelease.model_validate(raw)


class RecordingQuerier:
    """Answers every range query with ``samples`` (or raises ``error``); records them."""

    def __init__(
        self, samples: list[tuple[datetime, float]] | None = None, error: Exception | None = None
    ) -> None:
        self.samples = samples or []
        self.error = error
        self.queries: list[tuple[str, datetime, datetime, float]] = []

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[tuple[datetime, float]]:
        self.queries.append((promql, start, end, step_seconds))
        if self.error is not None:
            raise self.error
        return self.samples


# -- the release's status ------------------------------------------------------------------


async def test_status_gives_weight_steps_checks_thresholds_and_the_decision() -> None:
    querier = RecordingQuerier()
    timeline = await release_timeline(querier, rolled_back_release(), now=NOW)

    assert (timeline.start, timeline.end) == (at(0), at(40))
    assert timeline.weights == (
        WeightStep(at(0), 0),
        WeightStep(at(10), 5),
        WeightStep(at(20), 10),
        WeightStep(at(40), 0),
    )
    assert [(c.at, c.weight, c.ok, c.success_rate) for c in timeline.checks] == [
        (at(20), 5, True, 100.0),
        (at(30), 10, False, 52.0),
        (at(40), 10, False, None),
    ]
    assert timeline.outcome == "rolled back"
    assert timeline.decided_at == at(40)
    assert timeline.cause == "failed checks threshold reached 2"
    assert (timeline.success_min, timeline.p99_max_ms, timeline.max_weight) == (99, 500, 20)
    # each series uses its metric's interval as the rate window, over the rollout's span
    windows = {"[15s]": 0, "[20s]": 0}
    for promql, start, end, _ in querier.queries:
        assert (start, end) == (at(0), at(40))
        windows["[15s]"] += "[15s]" in promql
        windows["[20s]"] += "[20s]" in promql
    assert windows == {"[15s]": 2, "[20s]": 2}


async def test_promoted_release_is_marked_promoted_without_a_cause() -> None:
    base = rolled_back_release()
    raw = base.model_dump(mode="json", by_alias=True)
    raw["status"].update(
        {
            "phase": "Succeeded",
            "reason": "Succeeded",
            "message": "promotion completed",
            "events": [
                engine_event(1, "StepAdvanced", 10, 20, Phase.PROGRESSING),
                engine_event(2, "StepAdvanced", 50, 0, Phase.FINALISING),
                engine_event(3, "Promoted", 50, 0, Phase.SUCCEEDED),
            ],
            "history": [],
            "finishedAt": at(50).isoformat(),
        }
    )
    timeline = await release_timeline(
        RecordingQuerier(), CanaryRelease.model_validate(raw), now=NOW
    )

    assert timeline.outcome == "promoted"
    assert timeline.cause == ""
    assert timeline.decided_at == at(50)
    assert timeline.weights == (WeightStep(at(0), 0), WeightStep(at(10), 20), WeightStep(at(50), 0))


async def test_without_metrics_in_the_spec_windows_default_and_no_thresholds() -> None:
    querier = RecordingQuerier()
    timeline = await release_timeline(querier, rolled_back_release(metrics=[]), now=NOW)

    assert (timeline.success_min, timeline.p99_max_ms) == (None, None)
    assert all(f"[{DEFAULT_WINDOW}]" in q[0] for q in querier.queries)
    assert all(c.success_rate is None for c in timeline.checks)


async def test_long_rollouts_get_a_coarser_step() -> None:
    querier = RecordingQuerier()
    ctx = QueryContext("ns", "podinfo", "podinfo", "podinfo", 80, "podinfo")
    timeline = await rollout_timeline(querier, ctx, at(0), at(6 * 3600), 5)

    assert timeline.step_seconds == 6 * 3600 / MAX_POINTS
    assert {q[3] for q in querier.queries} == {timeline.step_seconds}


async def test_an_unreachable_prometheus_gives_empty_series_and_says_why(
    refused_port: int,
) -> None:
    provider = PrometheusProvider(f"http://admin:s3cret@127.0.0.1:{refused_port}", timeout=2)
    try:
        timeline = await release_timeline(provider, rolled_back_release(), now=NOW)
    finally:
        provider.close()

    assert not timeline.has_metrics
    assert timeline.problems == (
        "Prometheus could not be queried: connection failed (connection refused)",
    )
    assert "s3cret" not in repr(timeline)
    # the status half is still there for the chart
    assert timeline.outcome == "rolled back" and len(timeline.weights) == 4


@pytest.fixture
def refused_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a real Prometheus ---------------------------------------------------------------------


@pytest.fixture
def ctx() -> QueryContext:
    namespace = f"chart-{uuid.uuid4().hex[:8]}"
    return QueryContext(namespace, "podinfo", "podinfo", "podinfo", 80, "podinfo")


@pytest.fixture
async def provider(prometheus: PrometheusServer) -> AsyncIterator[PrometheusProvider]:
    prov = PrometheusProvider(prometheus.url)
    yield prov
    prov.close()


async def timeline_until(
    provider: PrometheusProvider,
    ctx: QueryContext,
    start: datetime,
    points: int,
    *,
    timeout: float = 40,
) -> Timeline:
    """Query until every series has ``points`` samples (new series need a few scrapes)."""
    deadline = time.monotonic() + timeout
    while True:
        timeline = await rollout_timeline(provider, ctx, start, datetime.now(UTC), 1)
        series = (
            timeline.canary_success,
            timeline.stable_success,
            timeline.canary_p99_ms,
            timeline.stable_p99_ms,
        )
        if all(len(s) >= points for s in series):
            return timeline
        if time.monotonic() >= deadline:
            raise AssertionError(f"series lengths after {timeout:g}s: {[len(s) for s in series]}")
        await asyncio.sleep(0.5)


async def test_half_failing_canary_reads_about_50_and_stable_100(
    provider: PrometheusProvider, ctx: QueryContext, traffic: TrafficFactory
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=2)
    traffic(
        ctx.namespace,
        ctx.ingress,
        ctx.service,
        weight=50.0,
        rps=40,
        canary={"error_rate": 0.5, "latency_ms": 20},
        stable={"latency_ms": 20},
    )

    timeline = await timeline_until(provider, ctx, start, points=5)

    assert statistics.median(s.value for s in timeline.canary_success) == pytest.approx(50, abs=5)
    assert min(s.value for s in timeline.stable_success) == pytest.approx(100)
    # 20 ± 5 ms requests fall in the 25 ms bucket of ingress-nginx's histogram
    for series in (timeline.canary_p99_ms, timeline.stable_p99_ms):
        assert all(0 < s.value <= 25 for s in series)
    samples = [s.at for s in timeline.canary_success]
    assert samples == sorted(samples) and samples[0] >= start.replace(microsecond=0)
    assert timeline.problems == ()


async def test_no_traffic_gives_empty_series_without_a_problem(
    provider: PrometheusProvider, ctx: QueryContext
) -> None:
    now = datetime.now(UTC)
    timeline = await rollout_timeline(provider, ctx, now - timedelta(minutes=2), now, 5)

    assert not timeline.has_metrics
    assert timeline.problems == ()
