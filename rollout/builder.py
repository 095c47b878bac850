"""Building one decision: status updates, actions and events, and the timing rules.

``Builder`` is what every part of the state machine (``rollout.decide``,
``rollout.control``, ``rollout.promotion``) writes its outcome into. Pure: no I/O, no
clock (``now`` is passed in).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from rollout.decision import (
    Action,
    Decision,
    DeleteCanary,
    NotifyHooks,
    RevertTarget,
    SetWeight,
    StoreDecision,
)
from rollout.models import (
    AuditEntry,
    CanaryRelease,
    Condition,
    ControlRequest,
    EventType,
    Phase,
    RolloutEvent,
)

# Bounded lists in status, so an object stays far below etcd's size limit.
MAX_EVENTS = 40
MAX_AUDIT = 50
MAX_HISTORY = 240


def elapsed(since: datetime | None, now: datetime) -> float:
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
    return elapsed(release.status.last_step_at, now) >= interval - slack


# Where Flagger asks its manual-rollback gates: before traffic moves, while it moves, and
# while a finished analysis waits for promotion.


def pending_requests(release: CanaryRelease) -> list[ControlRequest]:
    done = {entry.id for entry in release.status.audit}
    return [r for r in release.spec.control_requests if r.id not in done]


class Builder:
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
        self.end_with_hooks(reason)

    def end_with_hooks(self, reason: str) -> None:
        """The last actions of every ending: store the outcome, delete the canary, then
        call the post-rollout hooks. ``postRolloutDue`` is stored with the outcome, so an
        ending interrupted anywhere after the store calls them on its next advance."""
        if self.release.spec.analysis.webhooks_of("post-rollout"):
            self.update(post_rollout_due=True)
        self.act(StoreDecision())
        self.act(DeleteCanary())
        self.act(NotifyHooks("post-rollout", reason))

    def build(self) -> Decision:
        return Decision(
            status=self.status, actions=tuple(self.actions), new_events=tuple(self.events)
        )


__all__ = [
    "DUE_SLACK",
    "MAX_AUDIT",
    "MAX_EVENTS",
    "MAX_HISTORY",
    "Builder",
    "analysis_due",
    "elapsed",
    "next_weight",
    "pending_requests",
    "uses_iterations",
]
