"""The engine's decisions as pure functions: state + observations -> new state + actions.

Nothing here performs I/O or reads a clock; ``advance`` gathers observations, asks
``plan_checks`` which checks are due, runs them, then asks ``decide`` what to do. Because
a decision depends only on the stored status and fresh observations, running ``advance``
again after a crash at any point reaches the same outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rollout.builder import (
    MAX_HISTORY,
    Builder,
    analysis_due,
    elapsed,
    next_weight,
    pending_requests,
    uses_iterations,
)
from rollout.control import apply_control
from rollout.decision import (
    Action,
    Checks,
    CheckStage,
    ClusterState,
    Decision,
    DeleteCanary,
    EnsureCanary,
    HookCheck,
    Measurement,
    NotifyHooks,
    PromoteTarget,
    RevertTarget,
    SetWeight,
    StoreDecision,
)
from rollout.models import CanaryRelease, Phase, WeightPoint
from rollout.promotion import finish_promotion, promotion_or_wait, start_promotion

ACTIVE_PHASES = frozenset(p for p in Phase if not p.is_final)


ROLLBACK_GATE_PHASES = frozenset({Phase.WAITING, Phase.PROGRESSING, Phase.WAITING_PROMOTION})


def rollback_due(release: CanaryRelease, now: datetime) -> bool:
    """Whether ``advance`` must ask the ``rollback`` webhooks now (once per interval)."""
    return (
        release.status.phase in ROLLBACK_GATE_PHASES
        and bool(release.spec.analysis.webhooks_of("rollback"))
        and not pending_requests(release)
        and analysis_due(release, now)
    )


def plan_checks(release: CanaryRelease, workloads: ClusterState, now: datetime) -> CheckStage:
    """Which checks ``advance`` must run now (pure: depends on status, time, workloads)."""
    status = release.status
    if pending_requests(release) or status.phase not in ACTIVE_PHASES:
        return CheckStage.NONE
    analysis = release.spec.analysis
    if status.phase in (Phase.INITIALIZED, Phase.WAITING):
        # confirm-rollout gates, then pre-rollout hooks; retried once per interval
        if workloads.canary_ready and (status.last_step_at is None or analysis_due(release, now)):
            return CheckStage.PRE_ROLLOUT
        return CheckStage.NONE
    if status.phase == Phase.PROGRESSING and analysis_due(release, now):
        if release.spec.skip_analysis:
            return CheckStage.NONE
        ready = workloads.canary_ready and not workloads.route_waiting
        return CheckStage.ANALYSIS if ready else CheckStage.NONE
    if (
        status.phase == Phase.WAITING_PROMOTION
        and analysis.webhooks_of("confirm-promotion")
        and analysis_due(release, now)
    ):
        return CheckStage.CONFIRM_PROMOTION
    return CheckStage.NONE


def _record_metrics(b: Builder, checks: Checks) -> None:
    statuses = [m.status(b.now) for m in checks.metrics]
    point = WeightPoint(
        at=b.now,
        weight=b.status.canary_weight,
        values={m.name: m.value for m in checks.metrics},
        stable_values={m.name: m.stable_value for m in checks.metrics},
        ok=all(m.ok for m in checks.metrics) and all(h.ok for h in checks.hooks),
    )
    b.update(
        metrics=statuses, history=[*b.status.history, point][-MAX_HISTORY:], last_analysis_at=b.now
    )


def measured(checks: Checks) -> dict[str, str]:
    details = {}
    for m in checks.metrics:
        details[m.name] = "no value" if m.value is None else f"{m.value:.2f}"
    return details


def _failed_check(
    b: Builder, messages: Sequence[str], checks: Checks, *, muted: bool = False
) -> None:
    """Count one failed check; roll back when the threshold is reached (``muted``: only
    hooks with muteAlert failed, so the rollback posts no alert)."""
    failed = b.status.failed_checks + 1
    threshold = b.release.spec.analysis.threshold
    b.update(failed_checks=failed, last_step_at=b.now)
    text = "; ".join(messages)
    b.update(message=f"halted: {text}")
    b.event(
        "Halted",
        f"Halt advancement {text}",
        "warning",
        {**measured(checks), "failedChecks": f"{failed}/{threshold}"},
    )
    if failed >= threshold:
        b.rollback(
            f"failed checks threshold reached {failed}",
            {**measured(checks), "cause": text},
            mute_alert=muted,
        )


def _progress(b: Builder, workloads: ClusterState, checks: Checks) -> None:
    """One analysis round in Progressing."""
    release = b.release
    if release.spec.skip_analysis:
        promotion_or_wait(b)
        return
    if not workloads.canary_ready:
        deadline = release.spec.progress_deadline_seconds
        if elapsed(b.status.last_step_at, b.now) > deadline:
            b.rollback(f"progress deadline exceeded: canary not ready ({workloads.canary_message})")
        elif analysis_due(release, b.now):
            b.update(message=f"canary not ready: {workloads.canary_message}")
        return
    if not _route_in_force(b, workloads):
        return
    if checks.stage != CheckStage.ANALYSIS:
        return
    _record_metrics(b, checks)
    fast = [m for m in checks.metrics if m.fail_fast]
    if fast:
        text = "; ".join(m.message for m in fast)
        b.event("Halted", f"Fail-fast: {text}", "error", measured(checks))
        b.rollback(f"fail-fast threshold crossed: {text}", {**measured(checks), "cause": text})
        return
    failed_metrics = [m.message for m in checks.metrics if not m.ok]
    failed_hooks = [h for h in checks.hooks if not h.ok]
    if failed_metrics or failed_hooks:
        muted = not failed_metrics and all(h.mute_alert for h in failed_hooks)
        _failed_check(b, failed_metrics + [h.message for h in failed_hooks], checks, muted=muted)
        return
    b.update(last_step_at=b.now, message="analysis passed")
    if uses_iterations(release):
        done = b.status.iterations + 1
        b.update(iterations=done)
        total = release.spec.analysis.iterations or 1
        if done >= total:
            promotion_or_wait(b)
        else:
            b.event("StepAdvanced", f"Advance {b.name} canary iteration {done}/{total}")
        return
    max_weight = release.spec.analysis.max_weight
    if b.status.canary_weight >= max_weight:
        promotion_or_wait(b)
        return
    closed = [h for h in checks.gates if not h.ok]
    if closed:
        b.update(message=f"waiting for traffic increase approval ({closed[0].name})")
        return
    weight = next_weight(release, b.status.canary_weight)
    b.set_weight(weight)
    b.event("StepAdvanced", f"Advance {b.name} canary weight {weight}")


# The condition that says whether the route carries the weight written last (Gateway API).
ROUTE_READY = "RouteReady"


def _route_in_force(b: Builder, workloads: ClusterState) -> bool:
    """The ``RouteReady`` condition: metrics count only once the route is in force."""
    current = next((c for c in b.status.conditions if c.type == ROUTE_READY), None)
    waiting = workloads.route_waiting
    if not waiting:
        if current is not None and current.status != "True":
            b.condition("True", "RouteInForce", "every parent accepted the route", ROUTE_READY)
        return True
    if elapsed(b.status.last_step_at, b.now) > b.release.spec.progress_deadline_seconds:
        b.rollback(f"progress deadline exceeded: route not in force ({waiting})")
    elif current is None or current.status != "False" or current.message != waiting:
        b.condition("False", "RouteNotInForce", waiting, ROUTE_READY)
        b.update(message="analysis waits until the route is in force")
    return False


def _initialize(b: Builder, workloads: ClusterState) -> None:
    if workloads.problems:
        reason = "; ".join(workloads.problems)
        b.phase(Phase.FAILED, reason)
        b.update(reason="InvalidSpec", finished_at=b.now)
        b.condition("False", "InvalidSpec", reason)
        b.event("Refused", f"Refused {b.name}: {reason}", "error")
        return
    stable = {c: workloads.target_images.get(c, "") for c in b.release.spec.images}
    b.update(stable_images=stable, started_at=b.now, failed_checks=0, canary_weight=0)
    b.act(EnsureCanary())
    b.phase(Phase.INITIALIZED, "canary workload created; waiting for it to become ready")
    b.condition("Unknown", "Initialized", "canary created")
    old = ", ".join(f"{c}={i}" for c, i in stable.items())
    new = ", ".join(f"{c}={i}" for c, i in b.release.spec.images.items())
    b.event("Started", f"New revision detected! Scaling up {b.name} ({old} -> {new})")


def _await_canary(b: Builder, workloads: ClusterState, checks: Checks) -> None:
    """Initialized/Waiting: canary ready? gates open? pre-rollout checks pass?"""
    release = b.release
    b.act(EnsureCanary())
    if not workloads.canary_ready:
        if elapsed(b.status.phase_since, b.now) > release.spec.progress_deadline_seconds:
            b.rollback(
                f"progress deadline exceeded: canary deployment not ready ({workloads.canary_message})"
            )
            return
        message = f"canary deployment {release.spec.target_ref.name}-canary not ready: {workloads.canary_message}"
        if b.status.message != message:
            b.update(message=message)
        return
    if checks.stage != CheckStage.PRE_ROLLOUT:
        return
    b.update(last_step_at=b.now)
    closed = [h for h in checks.gates if not h.ok]
    if closed:
        if b.status.phase != Phase.WAITING:
            b.phase(Phase.WAITING, f"waiting for confirm-rollout webhook {closed[0].name}")
            b.event("Waiting", f"Waiting for approval {closed[0].name}: {closed[0].message}")
        return
    b.update(last_analysis_at=b.now)
    failed = [h for h in checks.hooks if not h.ok]
    if failed:
        muted = all(h.mute_alert for h in failed)
        _failed_check(b, [h.message for h in failed], checks, muted=muted)
        return
    for hook in checks.hooks:
        b.event("StepAdvanced", f"Pre-rollout check {hook.name} passed")
    b.phase(Phase.PROGRESSING, "canary analysis started")
    b.update(failed_checks=0)
    b.condition("Unknown", "Progressing", "canary analysis started")
    if release.spec.skip_analysis:
        b.event("StepAdvanced", f"Skipping analysis for {b.name}")
        promotion_or_wait(b)
        return
    if uses_iterations(release):
        b.event(
            "StepAdvanced",
            f"Starting canary analysis for {b.name} ({release.spec.analysis.iterations} iterations)",
        )
        return
    b.event("StepAdvanced", f"Starting canary analysis for {b.name}")
    weight = next_weight(release, 0)
    b.set_weight(weight)
    b.event("StepAdvanced", f"Advance {b.name} canary weight {weight}")


def _converge(b: Builder, workloads: ClusterState) -> None:
    """A finished release, after a crash between its ending's actions: traffic to stable,
    the canary gone, the post-rollout hooks called; nothing else is taken any more."""
    if workloads.router_weight or workloads.canary_exists:
        if workloads.router_weight:
            b.act(SetWeight(0))
        b.act(DeleteCanary())
    if b.status.post_rollout_due:
        # the ending stopped after storing its outcome, before its hooks were called
        b.act(NotifyHooks("post-rollout", b.status.reason or b.status.phase.value))
    for request in pending_requests(b.release):
        b.audit(request, "ignored", f"release already {b.status.phase.value}")


def decide(
    release: CanaryRelease, workloads: ClusterState, checks: Checks, now: datetime
) -> Decision:
    """The whole state machine. Pure: same inputs, same decision."""
    b = Builder(release, now)
    if b.status.phase.is_final:
        _converge(b, workloads)
        return b.build()
    if not workloads.target_exists and b.status.phase != Phase.INITIALIZING:
        b.rollback(f"target Deployment {release.spec.target_ref.name} disappeared")
        return b.build()

    apply_control(b, workloads)
    if b.status.phase.is_final or (
        b.status.phase == Phase.PROMOTING and release.status.phase != Phase.PROMOTING
    ):
        # a rollback or a promotion started by a person this round; continue next round
        return b.build()
    opened = [h for h in checks.rollback if h.ok]
    if opened and b.status.phase in ROLLBACK_GATE_PHASES:
        b.rollback(
            f"manual rollback requested by webhook {opened[0].name}",
            {"cause": opened[0].message},
        )
        return b.build()

    phase = b.status.phase
    if phase == Phase.INITIALIZING:
        _initialize(b, workloads)
    elif phase in (Phase.INITIALIZED, Phase.WAITING):
        _await_canary(b, workloads, checks)
    elif phase == Phase.PROGRESSING:
        _progress(b, workloads, checks)
    elif phase == Phase.WAITING_PROMOTION:
        if checks.stage == CheckStage.CONFIRM_PROMOTION:
            b.update(last_step_at=now)
            if all(h.ok for h in checks.gates) and (
                release.spec.approval == "auto" or b.status.approved
            ):
                start_promotion(b)
    elif phase in (Phase.PROMOTING, Phase.FINALISING):
        finish_promotion(b, workloads)

    # Keep the router where the status says it is (e.g. after a crash mid-step).
    if (
        b.status.phase in ACTIVE_PHASES
        and b.status.phase not in (Phase.INITIALIZING,)
        and workloads.router_weight is not None
        and workloads.router_weight != b.status.canary_weight
        and not any(isinstance(a, SetWeight) for a in b.actions)
    ):
        b.act(SetWeight(b.status.canary_weight))
    return b.build()


__all__ = [
    "ACTIVE_PHASES",
    "ROLLBACK_GATE_PHASES",
    "Action",
    "CheckStage",
    "Checks",
    "ClusterState",
    "Decision",
    "DeleteCanary",
    "EnsureCanary",
    "HookCheck",
    "Measurement",
    "NotifyHooks",
    "PromoteTarget",
    "RevertTarget",
    "SetWeight",
    "StoreDecision",
    "analysis_due",
    "decide",
    "next_weight",
    "plan_checks",
    "rollback_due",
]
