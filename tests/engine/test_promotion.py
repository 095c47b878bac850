"""The promotion path of ``decide``: what a slow, a stuck and an aborted promotion do.

Pure: statuses and observations in, actions out, no cluster. The cluster versions of these
stories are in tests/engine/test_promotion_cluster.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rollout.decide import (
    Checks,
    ClusterState,
    DeleteCanary,
    NotifyHooks,
    PromoteTarget,
    RevertTarget,
    SetWeight,
    StoreDecision,
    decide,
)
from rollout.models import (
    CanaryRelease,
    CanaryReleaseSpec,
    CanaryReleaseStatus,
    ControlRequest,
    ObjectMeta,
    Phase,
)

OLD = "stefanprodan/podinfo:6.0.0"
NEW = "stefanprodan/podinfo:6.0.3"
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DEADLINE = 60


def promoting(requests: tuple[ControlRequest, ...] = ()) -> CanaryRelease:
    """A release that began promoting at START with the canary at maxWeight 50."""
    spec = CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": NEW},
            "progressDeadlineSeconds": DEADLINE,
            "analysis": {"maxWeight": 50, "stepWeight": 10},
            "controlRequests": [r.model_dump(by_alias=True) for r in requests],
        }
    )
    status = CanaryReleaseStatus(
        phase=Phase.PROMOTING,
        phase_since=START,
        canary_weight=50,
        stable_images={"podinfod": OLD},
        started_at=START - timedelta(minutes=5),
    )
    return CanaryRelease(
        metadata=ObjectMeta(name="podinfo-x1", namespace="test", uid="u1"),
        spec=spec,
        status=status,
    )


def half_rolled(progressed_at: datetime | None) -> ClusterState:
    """The target patched to NEW, its rolling update under way (not ready yet)."""
    return ClusterState(
        target_exists=True,
        target_images={"podinfod": NEW},
        target_ready=False,
        target_message="1 of 2 updated replicas available",
        canary_exists=True,
        canary_ready=True,
        canary_message="1 of 1 replicas available",
        router_weight=50,
        target_progressed_at=progressed_at,
    )


def test_a_slow_rollout_that_keeps_progressing_is_not_failed_by_the_deadline() -> None:
    now = START + timedelta(seconds=DEADLINE + 30)
    decision = decide(promoting(), half_rolled(now - timedelta(seconds=5)), Checks(), now)
    assert decision.status.phase == Phase.PROMOTING
    # the canary keeps its weight while the target rolls: no traffic moves yet
    assert not any(isinstance(a, SetWeight) for a in decision.actions)
    assert "waiting for podinfo to roll out" in decision.status.message


def test_a_rollout_without_progress_for_the_deadline_rolls_back_in_order() -> None:
    now = START + timedelta(seconds=DEADLINE + 30)
    stuck_since = START + timedelta(seconds=20)
    decision = decide(promoting(), half_rolled(stuck_since), Checks(), now)
    assert decision.status.phase == Phase.FAILED
    assert decision.status.reason.startswith("promotion failed: target made no progress for 60s")
    assert "1 of 2 updated replicas available" in decision.status.reason
    # traffic to the target's Service (only its Ready pods serve), its images reverted,
    # the outcome stored, then the canary removed
    assert decision.actions[:4] == (
        SetWeight(0),
        RevertTarget({"podinfod": OLD}),
        StoreDecision(),
        DeleteCanary(),
    )
    assert isinstance(decision.actions[4], NotifyHooks)


def test_without_a_progress_report_the_deadline_counts_from_the_start_of_promotion() -> None:
    within = START + timedelta(seconds=DEADLINE - 1)
    assert decide(promoting(), half_rolled(None), Checks(), within).status.phase == Phase.PROMOTING
    after = START + timedelta(seconds=DEADLINE + 1)
    assert decide(promoting(), half_rolled(None), Checks(), after).status.phase == Phase.FAILED


def test_progress_from_before_the_promotion_does_not_extend_the_deadline() -> None:
    now = START + timedelta(seconds=DEADLINE + 1)
    old_progress = START - timedelta(hours=1)
    assert decide(promoting(), half_rolled(old_progress), Checks(), now).status.phase == Phase.FAILED


def test_abort_during_promotion_routes_to_the_target_and_reverts_it() -> None:
    abort = ControlRequest(id="a1", action="abort", user="U1", user_name="alice")
    now = START + timedelta(seconds=10)
    decision = decide(promoting((abort,)), half_rolled(now), Checks(), now)
    assert decision.status.phase == Phase.FAILED
    assert decision.status.canary_weight == 0
    assert decision.actions[:4] == (
        SetWeight(0),
        RevertTarget({"podinfod": OLD}),
        StoreDecision(),
        DeleteCanary(),
    )


def test_a_promoted_and_ready_target_gets_all_traffic_then_the_canary_goes() -> None:
    now = START + timedelta(seconds=30)
    ready = ClusterState(
        target_exists=True,
        target_images={"podinfod": NEW},
        target_ready=True,
        target_message="2 of 2 replicas available",
        canary_exists=True,
        canary_ready=True,
        canary_message="1 of 1 replicas available",
        router_weight=50,
        target_progressed_at=now,
    )
    decision = decide(promoting(), ready, Checks(), now)
    assert decision.status.phase == Phase.SUCCEEDED
    assert decision.actions[:3] == (SetWeight(0), StoreDecision(), DeleteCanary())
    assert not any(isinstance(a, PromoteTarget | RevertTarget) for a in decision.actions)
