"""The engine's decisions as pure functions: state + observations -> new state + actions.

Nothing here performs I/O or reads a clock; ``advance`` gathers observations, asks
``plan_checks`` which checks are due, runs them, then asks ``decide`` what to do. Because
a decision depends only on the stored status and fresh observations, running ``advance``
again after a crash at any point reaches the same outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from rollout.models import (
    AuditEntry,
    CanaryRelease,
    CanaryReleaseStatus,
    Condition,
    ControlRequest,
    EventType,
    MetricStatus,
    Phase,
    RolloutEvent,
    WeightPoint,
)

# Bounded lists in status, so an object stays far below etcd's size limit.
MAX_EVENTS = 40
MAX_AUDIT = 50
MAX_HISTORY = 240
# The condition that says whether the route carries the weight written last (Gateway API).
ROUTE_READY = "RouteReady"

ACTIVE_PHASES = frozenset(
    {
        Phase.INITIALIZING,
        Phase.INITIALIZED,
        Phase.WAITING,
        Phase.PROGRESSING,
        Phase.WAITING_PROMOTION,
        Phase.PROMOTING,
        Phase.FINALISING,
        Phase.PAUSED,
    }
)


# --- observations --------------------------------------------------------------------


@dataclass(frozen=True)
class MetricCheck:
    """One metric measurement, as the analysis module reports it."""

    name: str
    value: float | None
    stable_value: float | None
    ok: bool
    fail_fast: bool
    message: str
    threshold: str = ""


@dataclass(frozen=True)
class HookCheck:
    """One webhook call's outcome."""

    name: str
    type: str
    ok: bool
    message: str
    # the hook's muteAlert: a rollback caused only by muted hooks posts no alert
    mute_alert: bool = False


@dataclass(frozen=True)
class Workloads:
    """What the cluster looks like right now (read every time)."""

    target_exists: bool
    target_images: dict[str, str]
    target_ready: bool
    target_message: str
    canary_exists: bool
    canary_ready: bool
    canary_message: str
    router_weight: int | None
    problems: tuple[str, ...] = ()
    # when the target's Deployment controller last reported progress (None: unknown)
    target_progressed_at: datetime | None = None
    # why the weight written last is not in force yet ('' when it is; Gateway API routes)
    route_waiting: str = ""


class CheckStage(StrEnum):
    """Which group of checks ``advance`` must run before deciding."""

    NONE = "none"
    PRE_ROLLOUT = "pre-rollout"
    ANALYSIS = "analysis"
    CONFIRM_PROMOTION = "confirm-promotion"


@dataclass(frozen=True)
class Checks:
    """Results of the checks that were due."""

    stage: CheckStage = CheckStage.NONE
    metrics: tuple[MetricCheck, ...] = ()
    # pre-rollout hooks (PRE_ROLLOUT) or rollout/load-test hooks (ANALYSIS)
    hooks: tuple[HookCheck, ...] = ()
    # gates: confirm-rollout (PRE_ROLLOUT), confirm-traffic-increase (ANALYSIS),
    # confirm-promotion (CONFIRM_PROMOTION); a closed gate waits, it never fails a check
    gates: tuple[HookCheck, ...] = ()
    # Flagger's manual-rollback gates (``rollback`` hooks, see ``rollback_due``): an open
    # one (a 2xx answer) rolls the release back; closed or unreachable changes nothing
    rollback: tuple[HookCheck, ...] = ()


# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsureCanary:
    """Create the canary Deployment/Service/Ingress (weight 0) where missing."""


@dataclass(frozen=True)
class SetWeight:
    """Set the canary Ingress weight (0 routes everything to the stable side)."""

    weight: int


@dataclass(frozen=True)
class PromoteTarget:
    """Patch the target Deployment to the new images."""

    images: dict[str, str]


@dataclass(frozen=True)
class RevertTarget:
    """Put the target Deployment's original images back (rollback after promotion)."""

    images: dict[str, str]


@dataclass(frozen=True)
class DeleteCanary:
    """Remove the canary Ingress, Service and Deployment (after weight 0)."""


@dataclass(frozen=True)
class StoreDecision:
    """Write the decided status now, before the actions that follow (deleting the canary
    must come after the outcome is stored, so a crash cannot lose the outcome)."""


@dataclass(frozen=True)
class NotifyHooks:
    """Call the post-rollout webhooks once the outcome is stored (promoted or rolled back,
    as in Flagger); their answers are logged and do not change the state."""

    type: Literal["post-rollout"] = "post-rollout"
    message: str = ""


Action = (
    EnsureCanary
    | SetWeight
    | PromoteTarget
    | RevertTarget
    | StoreDecision
    | DeleteCanary
    | NotifyHooks
)


@dataclass(frozen=True)
class Decision:
    """What to do and the status to store afterwards."""

    status: CanaryReleaseStatus
    actions: tuple[Action, ...] = ()
    new_events: tuple[RolloutEvent, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether anything is to be written or done."""
        return bool(self.actions or self.new_events)


# --- helpers ---------------------------------------------------------------------------


def _elapsed(since: datetime | None, now: datetime) -> float:
    return (now - since).total_seconds() if since is not None else float("inf")


def next_weight(release: CanaryRelease, current: int) -> int:
    """The next step's weight, never above maxWeight."""
    for weight in release.spec.analysis.weights():
        if weight > current:
            return min(weight, release.spec.analysis.max_weight)
    return release.spec.analysis.max_weight


def uses_iterations(release: CanaryRelease) -> bool:
    """A/B (header/cookie match) or fixed-weight runs count iterations instead of steps."""
    return release.spec.analysis.iterations is not None


# Ticks fire once per interval but an advance starts a little late or early (scheduler
# jitter, a busy event loop); without slack a tick landing a few milliseconds short of
# the interval would push the analysis a whole interval later.
DUE_SLACK = 0.1


def analysis_due(release: CanaryRelease, now: datetime) -> bool:
    """Whether an analysis interval has (all but) passed since the last step."""
    interval = release.spec.analysis.interval_seconds
    slack = min(1.0, interval * DUE_SLACK)
    return _elapsed(release.status.last_step_at, now) >= interval - slack


# Where Flagger asks its manual-rollback gates: before traffic moves, while it moves, and
# while a finished analysis waits for promotion.
ROLLBACK_GATE_PHASES = frozenset({Phase.WAITING, Phase.PROGRESSING, Phase.WAITING_PROMOTION})


def rollback_due(release: CanaryRelease, now: datetime) -> bool:
    """Whether ``advance`` must ask the ``rollback`` webhooks now (once per interval)."""
    return (
        release.status.phase in ROLLBACK_GATE_PHASES
        and bool(release.spec.analysis.webhooks_of("rollback"))
        and not _pending_requests(release)
        and analysis_due(release, now)
    )


def plan_checks(release: CanaryRelease, workloads: Workloads, now: datetime) -> CheckStage:
    """Which checks ``advance`` must run now (pure: depends on status, time, workloads)."""
    status = release.status
    if _pending_requests(release) or status.phase not in ACTIVE_PHASES:
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


def _pending_requests(release: CanaryRelease) -> list[ControlRequest]:
    done = {entry.id for entry in release.status.audit}
    return [r for r in release.spec.control_requests if r.id not in done]


class _Builder:
    """Accumulates status updates, actions and events for one decision."""

    def __init__(self, release: CanaryRelease, now: datetime) -> None:
        self.release = release
        self.now = now
        self.status = release.status
        self.actions: list[Action] = []
        self.events: list[RolloutEvent] = []

    @property
    def name(self) -> str:
        return f"{self.release.spec.target_ref.name}.{self.release.metadata.namespace}"

    def update(self, **changes: object) -> None:
        self.status = self.status.model_copy(update=changes)

    def phase(self, phase: Phase, message: str = "") -> None:
        if phase != self.status.phase:
            self.update(phase=phase, phase_since=self.now)
        if message:
            self.update(message=message)

    def event(
        self,
        kind: EventType,
        message: str,
        severity: Literal["info", "warning", "error"] = "info",
        details: dict[str, str] | None = None,
        *,
        mute_alert: bool = False,
    ) -> None:
        seq = self.status.event_seq + 1
        event = RolloutEvent(
            seq=seq,
            type=kind,
            message=message,
            severity=severity,
            at=self.now,
            weight=self.status.canary_weight,
            phase=self.status.phase,
            details=details or {},
            mute_alert=mute_alert,
        )
        self.events.append(event)
        self.update(event_seq=seq, events=[*self.status.events, event][-MAX_EVENTS:])

    def act(self, action: Action) -> None:
        self.actions.append(action)

    def set_weight(self, weight: int) -> None:
        weight = min(weight, self.release.spec.analysis.max_weight)
        self.update(canary_weight=weight)
        self.act(SetWeight(weight))

    def condition(
        self,
        status: Literal["True", "False", "Unknown"],
        reason: str,
        message: str,
        kind: str = "Promoted",
    ) -> None:
        kept = [c for c in self.status.conditions if c.type != kind]
        kept.append(
            Condition(
                type=kind,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=self.now,
            )
        )
        self.update(conditions=kept)

    def audit(
        self,
        request: ControlRequest,
        result: Literal["applied", "ignored", "refused"],
        message: str,
    ) -> None:
        entry = AuditEntry(
            id=request.id,
            action=request.action,
            user=request.user,
            user_name=request.user_name,
            at=self.now,
            result=result,
            message=message,
        )
        self.update(audit=[*self.status.audit, entry][-MAX_AUDIT:])

    def rollback(
        self, reason: str, details: dict[str, str] | None = None, *, mute_alert: bool = False
    ) -> None:
        """Traffic back to stable, store Failed with the cause, then remove the canary.

        A crash after any of these steps converges: before the status write the next
        round decides the same rollback again; after it, a final release with canary
        objects left gets them removed (see ``decide``). ``mute_alert``: the cause is
        only hooks with muteAlert, so the channel gets no alert (the thread still tells).
        """
        self.update(canary_weight=0)
        self.act(SetWeight(0))
        target_images = self.status.stable_images
        if self.status.phase in (Phase.PROMOTING, Phase.FINALISING) and target_images:
            self.act(RevertTarget(dict(target_images)))
        self.phase(Phase.FAILED, reason)
        self.update(reason=reason, finished_at=self.now)
        self.condition("False", "Failed", reason)
        self.event(
            "RolledBack",
            f"Rolling back {self.name} {reason}",
            "error",
            details,
            mute_alert=mute_alert,
        )
        self.act(StoreDecision())
        self.act(DeleteCanary())
        self.act(NotifyHooks("post-rollout", reason))

    def build(self) -> Decision:
        return Decision(
            status=self.status, actions=tuple(self.actions), new_events=tuple(self.events)
        )


def _requester(request: ControlRequest) -> str:
    return request.user_name or request.user or "someone"


def _apply_control(b: _Builder, workloads: Workloads) -> None:
    """Apply pending control requests in order, each exactly once, and audit them."""
    for request in _pending_requests(b.release):
        phase = b.status.phase
        who = _requester(request)
        if phase.is_final:
            b.audit(request, "ignored", f"release already {phase.value}")
            continue
        if request.action == "abort":
            why = f"aborted by {who}" + (f": {request.reason}" if request.reason else "")
            b.audit(request, "applied", why)
            b.event("Control", f"Abort requested by {who}", "warning", {"user": request.user})
            b.rollback(why, {"abortedBy": who})
        elif request.action == "promote":
            if phase in (Phase.PROMOTING, Phase.FINALISING):
                b.audit(request, "ignored", "already promoting")
                continue
            if not workloads.canary_ready and phase in (
                Phase.INITIALIZING,
                Phase.INITIALIZED,
                Phase.WAITING,
            ):
                b.audit(request, "refused", "the canary is not ready yet; try again once it runs")
                continue
            if b.release.spec.approval == "manual" and not b.status.approved:
                # a promote grant must not stand in for a separate approve grant
                b.audit(request, "refused", "waiting for approval; approve first")
                continue
            b.audit(request, "applied", f"promoted by {who} without further analysis")
            b.event(
                "Control", f"Promotion requested by {who}; skipping remaining analysis", "warning"
            )
            _start_promotion(b)
        elif request.action == "pause":
            if phase == Phase.PAUSED:
                b.audit(request, "ignored", "already paused")
                continue
            b.audit(request, "applied", f"paused by {who}")
            b.update(paused_from=phase)
            b.phase(Phase.PAUSED, f"paused by {who} at weight {b.status.canary_weight}")
            b.event("Paused", f"Paused {b.name} by {who} at canary weight {b.status.canary_weight}")
        elif request.action == "resume":
            if phase != Phase.PAUSED:
                b.audit(request, "ignored", "not paused")
                continue
            b.audit(request, "applied", f"resumed by {who}")
            b.phase(b.status.paused_from or Phase.PROGRESSING, f"resumed by {who}")
            # restart the interval so analysis only looks at traffic since the pause
            b.update(paused_from=None, last_step_at=b.now)
            b.event("Resumed", f"Resumed {b.name} by {who}")
        elif request.action == "approve":
            b.update(approved=True)
            if phase == Phase.WAITING_PROMOTION:
                b.audit(request, "applied", f"approved by {who}")
                b.event("Approved", f"Promotion of {b.name} approved by {who}")
                _start_promotion(b)
            else:
                b.audit(
                    request, "applied", f"pre-approved by {who}; promotes when analysis completes"
                )
                b.event("Approved", f"Promotion of {b.name} pre-approved by {who}")


def _start_promotion(b: _Builder) -> None:
    images = dict(b.release.spec.images)
    b.phase(Phase.PROMOTING, "promoting the target to the canary's images")
    b.act(PromoteTarget(images))
    shown = ", ".join(f"{c}={i}" for c, i in images.items())
    b.event(
        "Promoting", f"Copying {b.name} template spec to {b.release.spec.target_ref.name} ({shown})"
    )


def _record_metrics(b: _Builder, checks: Checks) -> None:
    statuses = [
        MetricStatus(
            name=m.name,
            value=m.value,
            stable_value=m.stable_value,
            threshold=m.threshold,
            ok=m.ok,
            message=m.message,
            measured_at=b.now,
        )
        for m in checks.metrics
    ]
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


def _measured(checks: Checks) -> dict[str, str]:
    details = {}
    for m in checks.metrics:
        details[m.name] = "no value" if m.value is None else f"{m.value:.2f}"
    return details


def _failed_check(
    b: _Builder, messages: Sequence[str], checks: Checks, *, muted: bool = False
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
        {**_measured(checks), "failedChecks": f"{failed}/{threshold}"},
    )
    if failed >= threshold:
        b.rollback(
            f"failed checks threshold reached {failed}",
            {**_measured(checks), "cause": text},
            mute_alert=muted,
        )


def _promotion_or_wait(b: _Builder) -> None:
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
    _start_promotion(b)


def _progress(b: _Builder, workloads: Workloads, checks: Checks) -> None:
    """One analysis round in Progressing."""
    release = b.release
    if release.spec.skip_analysis:
        _promotion_or_wait(b)
        return
    if not workloads.canary_ready:
        deadline = release.spec.progress_deadline_seconds
        if _elapsed(b.status.last_step_at, b.now) > deadline:
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
        b.event("Halted", f"Fail-fast: {text}", "error", _measured(checks))
        b.rollback(f"fail-fast threshold crossed: {text}", {**_measured(checks), "cause": text})
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
            _promotion_or_wait(b)
        else:
            b.event("StepAdvanced", f"Advance {b.name} canary iteration {done}/{total}")
        return
    max_weight = release.spec.analysis.max_weight
    if b.status.canary_weight >= max_weight:
        _promotion_or_wait(b)
        return
    closed = [h for h in checks.gates if not h.ok]
    if closed:
        b.update(message=f"waiting for traffic increase approval ({closed[0].name})")
        return
    weight = next_weight(release, b.status.canary_weight)
    b.set_weight(weight)
    b.event("StepAdvanced", f"Advance {b.name} canary weight {weight}")


def _route_in_force(b: _Builder, workloads: Workloads) -> bool:
    """The ``RouteReady`` condition: metrics count only once the route is in force."""
    current = next((c for c in b.status.conditions if c.type == ROUTE_READY), None)
    waiting = workloads.route_waiting
    if not waiting:
        if current is not None and current.status != "True":
            b.condition("True", "RouteInForce", "every parent accepted the route", ROUTE_READY)
        return True
    if _elapsed(b.status.last_step_at, b.now) > b.release.spec.progress_deadline_seconds:
        b.rollback(f"progress deadline exceeded: route not in force ({waiting})")
    elif current is None or current.status != "False" or current.message != waiting:
        b.condition("False", "RouteNotInForce", waiting, ROUTE_READY)
        b.update(message="analysis waits until the route is in force")
    return False


def _initialize(b: _Builder, workloads: Workloads) -> None:
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


def _await_canary(b: _Builder, workloads: Workloads, checks: Checks) -> None:
    """Initialized/Waiting: canary ready? gates open? pre-rollout checks pass?"""
    release = b.release
    b.act(EnsureCanary())
    if not workloads.canary_ready:
        if _elapsed(b.status.phase_since, b.now) > release.spec.progress_deadline_seconds:
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
        _promotion_or_wait(b)
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


def _shift_to_target(b: _Builder) -> bool:
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


def _finish_promotion(b: _Builder, workloads: Workloads) -> None:
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
        b.act(StoreDecision())  # the outcome is stored before the canary is deleted
        b.act(DeleteCanary())
        b.act(NotifyHooks("post-rollout", "promotion completed"))
        return
    # As for Flagger's primary, the deadline bounds a rollout that stopped moving, not a
    # slow one: it counts from the target's last progress once promotion has begun.
    since = b.status.phase_since
    progressed = workloads.target_progressed_at
    if since is not None and progressed is not None and promoted:
        since = max(since, progressed)
    if _elapsed(since, b.now) > release.spec.progress_deadline_seconds:
        b.rollback(
            f"promotion failed: target made no progress for {release.spec.progress_deadline_seconds}s "
            f"({workloads.target_message})"
        )
    else:
        b.update(
            message=f"waiting for {release.spec.target_ref.name} to roll out: {workloads.target_message}"
        )


def decide(release: CanaryRelease, workloads: Workloads, checks: Checks, now: datetime) -> Decision:
    """The whole state machine. Pure: same inputs, same decision."""
    b = _Builder(release, now)
    if b.status.phase.is_final:
        # Converge after a crash between actions: traffic to stable, canary gone.
        if workloads.router_weight or workloads.canary_exists:
            if workloads.router_weight:
                b.act(SetWeight(0))
            b.act(DeleteCanary())
        for request in _pending_requests(release):
            b.audit(request, "ignored", f"release already {b.status.phase.value}")
        return b.build()
    if not workloads.target_exists and b.status.phase != Phase.INITIALIZING:
        b.rollback(f"target Deployment {release.spec.target_ref.name} disappeared")
        return b.build()

    _apply_control(b, workloads)
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
                _start_promotion(b)
    elif phase in (Phase.PROMOTING, Phase.FINALISING):
        _finish_promotion(b, workloads)

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
    "Action",
    "CheckStage",
    "Checks",
    "Decision",
    "DeleteCanary",
    "EnsureCanary",
    "HookCheck",
    "MetricCheck",
    "NotifyHooks",
    "PromoteTarget",
    "RevertTarget",
    "SetWeight",
    "StoreDecision",
    "Workloads",
    "analysis_due",
    "decide",
    "next_weight",
    "plan_checks",
    "rollback_due",
]
