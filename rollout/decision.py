"""The engine's vocabulary: what ``advance`` observed and checked, and what it will do.

Plain frozen values, no behaviour: ``rollout.decide`` turns observations into a
``Decision``; ``rollout.engine`` gathers the observations and performs the actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from rollout.models import CanaryReleaseStatus, MetricStatus, RolloutEvent

# --- observations --------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One metric measured and judged: what the analysis returns, the decision weighs
    and the status keeps (``status``), carried as one value from query to card.

    ``value`` is the canary side's value (None when there was none), ``stable_value`` the
    stable side's in comparison mode, ``threshold`` the accepted range as shown (``>= 99``)
    and ``query`` the canary-side PromQL that ran. ``message`` is written for a person,
    e.g. ``request-success-rate 48.12% (threshold >= 99)``.
    """

    name: str
    value: float | None
    stable_value: float | None
    ok: bool
    fail_fast: bool
    message: str
    threshold: str = ""
    query: str = ""

    def status(self, at: datetime) -> MetricStatus:
        """The measurement as ``status.metrics`` keeps it."""
        return MetricStatus(
            name=self.name,
            value=self.value,
            stable_value=self.stable_value,
            threshold=self.threshold,
            ok=self.ok,
            message=self.message,
            measured_at=at,
        )


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
class ClusterState:
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
    metrics: tuple[Measurement, ...] = ()
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


__all__ = [
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
]
