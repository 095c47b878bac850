"""A finished rollout as time series: what the end-of-rollout chart plots.

Two sources, joined into one frozen :class:`Timeline`:

- Prometheus range queries over the rollout (``start``..``end``): success rate and p99
  latency, canary and stable side, with the same PromQL as the built-in checks
  (``rollout.analysis.builtin_query``). The rate window is the matching metric's
  ``interval`` from ``spec.analysis.metrics`` (30 s when the release has no such
  metric), so the curves read like the numbers the checks judged.
- The release's status: the canary weight over time (from ``status.events`` and
  ``status.history``; both lists are bounded, so a very long rollout shows its last
  part only), each analysis check (``status.history``), the final phase, when it was
  decided and why, and the thresholds of the built-in metrics.

Nothing here raises for missing data: a query without values gives an empty series, a
Prometheus that cannot be queried gives empty series and a line in ``problems``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from rollout.analysis import (
    REQUEST_DURATION,
    REQUEST_SUCCESS_RATE,
    PrometheusUnavailable,
    QueryContext,
    UnusableResult,
    builtin_query,
)
from rollout.models import CanaryRelease, Metric, Phase

log = logging.getLogger("canary_bot.timeline")

#: Rate window when the release has no matching metric (or no release is given).
DEFAULT_WINDOW = "30s"
#: Default resolution of the range queries, in seconds. A release's timeline uses a
#: finer step for a short rollout (down to 1 s, about 240 points across it).
DEFAULT_STEP_SECONDS = 5.0
_AUTO_POINTS = 240
# A chart about 1000 px wide cannot show more points than this; longer rollouts get a
# coarser step (Prometheus itself refuses more than 11,000 points per series).
MAX_POINTS = 720

# The events that end a release; their time is the time of the decision.
_DECISION_EVENTS = ("Promoted", "RolledBack", "Refused")


@dataclass(frozen=True)
class Sample:
    """One point of a measured series."""

    at: datetime
    value: float


@dataclass(frozen=True)
class WeightStep:
    """From ``at`` on, the canary got ``weight`` percent of the traffic."""

    at: datetime
    weight: int


@dataclass(frozen=True)
class AnalysisPoint:
    """One analysis run as the engine recorded it (``status.history``)."""

    at: datetime
    weight: int
    ok: bool
    success_rate: float | None = None
    p99_ms: float | None = None


Outcome = Literal["promoted", "rolled back", "in progress"]


@dataclass(frozen=True)
class Timeline:
    """A rollout's measurements and decisions over time (UTC datetimes throughout)."""

    start: datetime
    end: datetime
    step_seconds: float
    canary_success: tuple[Sample, ...] = ()
    stable_success: tuple[Sample, ...] = ()
    canary_p99_ms: tuple[Sample, ...] = ()
    stable_p99_ms: tuple[Sample, ...] = ()
    weights: tuple[WeightStep, ...] = ()
    checks: tuple[AnalysisPoint, ...] = ()
    phase: Phase | None = None
    decided_at: datetime | None = None
    cause: str = ""
    success_min: float | None = None
    p99_max_ms: float | None = None
    max_weight: int | None = None
    success_window: str = DEFAULT_WINDOW
    duration_window: str = DEFAULT_WINDOW
    problems: tuple[str, ...] = ()

    @property
    def outcome(self) -> Outcome:
        """How the release ended, in the words the chart uses."""
        if self.phase == Phase.SUCCEEDED:
            return "promoted"
        if self.phase == Phase.FAILED:
            return "rolled back"
        return "in progress"

    @property
    def has_metrics(self) -> bool:
        """Whether any measured series has a point."""
        return any(
            (self.canary_success, self.stable_success, self.canary_p99_ms, self.stable_p99_ms)
        )


class RangeQuerier(Protocol):
    """Runs PromQL range queries (``rollout.analysis.PrometheusProvider`` does)."""

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[tuple[datetime, float]]:
        """``(time, value)`` samples of the query's one series, oldest first."""
        ...


#: Builds the timeline of a release (what the Slack notifier is given).
TimelineSource = Callable[[CanaryRelease], Awaitable[Timeline]]


def effective_step(start: datetime, end: datetime, step_seconds: float) -> float:
    """``step_seconds``, made coarser when the span would need more than MAX_POINTS."""
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
    span = max((end - start).total_seconds(), 0.0)
    return max(step_seconds, float(math.ceil(span / MAX_POINTS)))


async def rollout_timeline(
    provider: RangeQuerier,
    ctx: QueryContext,
    start: datetime,
    end: datetime,
    step_seconds: float = DEFAULT_STEP_SECONDS,
    *,
    release: CanaryRelease | None = None,
) -> Timeline:
    """Query the rollout's series from ``start`` to ``end`` and join the release's status.

    Without ``release`` the timeline has the measured series only, with 30 s rate
    windows. Never raises for missing data or an unreachable Prometheus.
    """
    if end <= start:
        end = start + timedelta(seconds=step_seconds)
    step = effective_step(start, end, step_seconds)
    metrics = release.spec.analysis.metrics if release is not None else []
    success_metric = _builtin(metrics, REQUEST_SUCCESS_RATE)
    duration_metric = _builtin(metrics, REQUEST_DURATION)
    success_window = success_metric.interval if success_metric else DEFAULT_WINDOW
    duration_window = duration_metric.interval if duration_metric else DEFAULT_WINDOW
    queries = (
        builtin_query(ctx, REQUEST_SUCCESS_RATE, success_window),
        builtin_query(ctx, REQUEST_SUCCESS_RATE, success_window, stable=True),
        builtin_query(ctx, REQUEST_DURATION, duration_window),
        builtin_query(ctx, REQUEST_DURATION, duration_window, stable=True),
    )
    answers = await asyncio.gather(
        *(provider.query_range(q, start, end, step) for q in queries), return_exceptions=True
    )
    series, problems = _series(answers, ctx)
    timeline = Timeline(
        start=start,
        end=end,
        step_seconds=step,
        canary_success=series[0],
        stable_success=series[1],
        canary_p99_ms=series[2],
        stable_p99_ms=series[3],
        success_window=success_window,
        duration_window=duration_window,
        problems=tuple(problems),
    )
    if release is None:
        return timeline
    return _with_status(timeline, release, success_metric, duration_metric)


def _series(
    answers: Sequence[list[tuple[datetime, float]] | BaseException], ctx: QueryContext
) -> tuple[list[tuple[Sample, ...]], list[str]]:
    """Each query's samples; a failed query gives no samples and its problem (once)."""
    series: list[tuple[Sample, ...]] = []
    problems: list[str] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            problem = _problem(answer)
            if problem not in problems:
                problems.append(problem)
            log.warning(
                "range query for the rollout chart failed: %s",
                problem,
                extra={"namespace": ctx.namespace, "release": ctx.release},
            )
            series.append(())
        else:
            series.append(tuple(Sample(at, value) for at, value in answer))
    return series, problems


async def release_timeline(
    provider: RangeQuerier,
    release: CanaryRelease,
    *,
    step_seconds: float | None = None,
    now: datetime | None = None,
) -> Timeline:
    """The timeline of ``release`` from its start to its end (or ``now`` while running).

    Without ``step_seconds`` the step is 1 to 5 s, finer for shorter rollouts.
    """
    start, end = rollout_window(release, now or datetime.now(UTC))
    if step_seconds is None:
        span = (end - start).total_seconds()
        step_seconds = min(DEFAULT_STEP_SECONDS, max(1.0, float(math.ceil(span / _AUTO_POINTS))))
    return await rollout_timeline(
        provider, QueryContext.of(release), start, end, step_seconds, release=release
    )


def timeline_source(provider: RangeQuerier, *, step_seconds: float | None = None) -> TimelineSource:
    """A ``TimelineSource`` over ``provider`` (e.g. a ``PrometheusProvider``)."""

    async def build(release: CanaryRelease) -> Timeline:
        return await release_timeline(provider, release, step_seconds=step_seconds)

    return build


def rollout_window(release: CanaryRelease, now: datetime) -> tuple[datetime, datetime]:
    """When the rollout ran: started (or created) .. finished (or ``now``), never empty."""
    status = release.status
    end = min(status.finished_at or now, now)
    first_event = min((e.at for e in status.events), default=None)
    start = status.started_at or first_event or release.metadata.creation_timestamp
    if start is None or start >= end:
        start = end - timedelta(minutes=1)
    return start, end


# -- the release's status ----------------------------------------------------------------


def _builtin(metrics: list[Metric], name: str) -> Metric | None:
    """The built-in metric ``name`` of the analysis, if the release checks it."""
    return next(
        (m for m in metrics if m.name == name and m.query is None and m.template_ref is None),
        None,
    )


def _with_status(
    timeline: Timeline,
    release: CanaryRelease,
    success_metric: Metric | None,
    duration_metric: Metric | None,
) -> Timeline:
    status = release.status
    decided_at: datetime | None = None
    phase = status.phase if status.phase.is_final else None
    if phase is not None:
        decisions = [e.at for e in status.events if e.type in _DECISION_EVENTS]
        decided_at = decisions[-1] if decisions else status.finished_at
    cause = ""
    if phase == Phase.FAILED:
        # rollback() stores its reason in both; a refused spec keeps it in the message
        cause = status.message if status.reason in ("", "InvalidSpec") else status.reason
    checks = tuple(
        AnalysisPoint(
            at=p.at,
            weight=p.weight,
            ok=p.ok,
            success_rate=p.values.get(REQUEST_SUCCESS_RATE) if success_metric else None,
            p99_ms=p.values.get(REQUEST_DURATION) if duration_metric else None,
        )
        for p in status.history
        if timeline.start <= p.at <= timeline.end
    )
    return Timeline(
        start=timeline.start,
        end=timeline.end,
        step_seconds=timeline.step_seconds,
        canary_success=timeline.canary_success,
        stable_success=timeline.stable_success,
        canary_p99_ms=timeline.canary_p99_ms,
        stable_p99_ms=timeline.stable_p99_ms,
        weights=weight_steps(release, timeline.start, timeline.end),
        checks=checks,
        phase=phase,
        decided_at=decided_at,
        cause=cause,
        success_min=success_metric.threshold_range.min if success_metric else None,
        p99_max_ms=duration_metric.threshold_range.max if duration_metric else None,
        max_weight=release.spec.analysis.max_weight,
        success_window=timeline.success_window,
        duration_window=timeline.duration_window,
        problems=timeline.problems,
    )


def weight_steps(release: CanaryRelease, start: datetime, end: datetime) -> tuple[WeightStep, ...]:
    """The canary weight over ``start``..``end``: one step per change, starting at 0.

    Events carry the weight after their change and analysis points the weight they
    measured at; at the same instant the analysis point comes first (the engine
    measures, then steps).
    """
    marks: list[tuple[datetime, int, int, int]] = [
        (p.at, 0, i, p.weight) for i, p in enumerate(release.status.history)
    ]
    marks += [(e.at, 1, e.seq, e.weight) for e in release.status.events]
    steps = [WeightStep(start, 0)]
    for at, _, _, weight in sorted(marks):
        if not start <= at <= end or weight == steps[-1].weight:
            continue
        steps.append(WeightStep(at, weight))
    return tuple(steps)


def _problem(exc: BaseException) -> str:
    """A failed range query, in words for the chart (never the URL or the query)."""
    if isinstance(exc, PrometheusUnavailable):
        return f"Prometheus could not be queried: {exc}"
    if isinstance(exc, UnusableResult):
        return f"unusable Prometheus answer: {exc}"
    return f"metrics could not be read: {type(exc).__name__}"


__all__ = [
    "DEFAULT_STEP_SECONDS",
    "DEFAULT_WINDOW",
    "MAX_POINTS",
    "AnalysisPoint",
    "Outcome",
    "RangeQuerier",
    "Sample",
    "Timeline",
    "TimelineSource",
    "WeightStep",
    "effective_step",
    "release_timeline",
    "rollout_timeline",
    "rollout_window",
    "timeline_source",
    "weight_steps",
]
