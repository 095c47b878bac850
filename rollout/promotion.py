"""Promotion: the target gets the canary's images, rolls out, takes the traffic back.

The analysis passed (or a person promoted): wait for approval if one is needed, patch
the target, and once it runs the new images, shift the traffic to it (in steps with
``stepWeightPromotion``) and end the release. Pure, like ``rollout.decide``.
"""

from __future__ import annotations

from rollout.builder import Builder, analysis_due, elapsed
from rollout.decision import (
    ClusterState,
    PromoteTarget,
    SetWeight,
)
from rollout.models import Phase


def start_promotion(b: Builder) -> None:
    images = dict(b.release.spec.images)
    b.phase(Phase.PROMOTING, "promoting the target to the canary's images")
    b.act(PromoteTarget(images))
    shown = ", ".join(f"{c}={i}" for c, i in images.items())
    b.event(
        "Promoting", f"Copying {b.name} template spec to {b.release.spec.target_ref.name} ({shown})"
    )


def promotion_or_wait(b: Builder) -> None:
    """Analysis complete: promote, or wait for a person's approval."""
    if b.release.spec.approval == "manual" and not b.status.approved:
        b.phase(Phase.WAITING_PROMOTION, "analysis passed; waiting for approval to promote")
        b.event(
            "WaitingApproval",
            f"Waiting for approval to promote {b.name} (canary weight {b.status.canary_weight})",
        )
        return
    if b.release.spec.analysis.webhooks_of("confirm-promotion"):
        b.phase(
            Phase.WAITING_PROMOTION, "analysis passed; waiting for the confirm-promotion webhook"
        )
        b.event("WaitingApproval", f"Waiting for confirm-promotion webhook to promote {b.name}")
        return
    start_promotion(b)


def _shift_to_target(b: Builder) -> bool:
    """Flagger's stepWeightPromotion, once the target runs the new images: the canary's
    share drops by the step each interval (the target's grows); True while under way."""
    step = b.release.spec.analysis.step_weight_promotion
    weight = b.status.canary_weight
    if step is None or weight == 0:
        return False
    if not analysis_due(b.release, b.now):
        return True
    if weight <= step:
        return False  # the last step ends the promotion
    b.update(last_step_at=b.now, message="shifting traffic to the promoted target")
    b.set_weight(weight - step)
    b.event("StepAdvanced", f"Advance {b.name} primary weight {100 - (weight - step)}")
    return True


def finish_promotion(b: Builder, workloads: ClusterState) -> None:
    release = b.release
    wanted = release.spec.images
    promoted = all(workloads.target_images.get(c) == i for c, i in wanted.items())
    if not promoted:
        b.act(PromoteTarget(dict(wanted)))
    if promoted and workloads.target_ready:
        if _shift_to_target(b):
            return
        b.phase(Phase.FINALISING)
        b.update(canary_weight=0)
        b.act(SetWeight(0))
        b.event("StepAdvanced", "Routing all traffic to primary")
        b.phase(Phase.SUCCEEDED, "promotion completed")
        b.update(finished_at=b.now, reason="Succeeded")
        b.condition("True", "Succeeded", "promotion completed")
        shown = ", ".join(wanted.values())
        b.event("Promoted", f"Promotion completed! {b.name} now runs {shown}")
        b.end_with_hooks("promotion completed")
        return
    # As for Flagger's primary, the deadline bounds a rollout that stopped moving, not a
    # slow one: it counts from the target's last progress once promotion has begun.
    since = b.status.phase_since
    progressed = workloads.target_progressed_at
    if since is not None and progressed is not None and promoted:
        since = max(since, progressed)
    if elapsed(since, b.now) > release.spec.progress_deadline_seconds:
        b.rollback(
            f"promotion failed: target made no progress for {release.spec.progress_deadline_seconds}s "
            f"({workloads.target_message})"
        )
    else:
        b.update(
            message=f"waiting for {release.spec.target_ref.name} to roll out: {workloads.target_message}"
        )


__all__ = ["finish_promotion", "promotion_or_wait", "start_promotion"]
