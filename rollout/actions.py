"""Which control requests a release takes in which phase: the one table every part asks.

The engine applies a request only when this table allows it (``refusal``); the Slack
card, the console and the commands show and offer exactly ``actions_for(release)``. So a
button is never offered that the engine would ignore, and nothing the engine would do
is out of reach of a front.
"""

from __future__ import annotations

from types import MappingProxyType

from rollout.models import CanaryRelease, ControlAction, Phase

# Before and during analysis a person may approve ahead (manual approval), promote now
# (refused by the engine until the canary runs), pause or abort.
_STEERABLE: tuple[ControlAction, ...] = ("approve", "promote", "pause", "abort")

ALLOWED_ACTIONS: MappingProxyType[Phase, tuple[ControlAction, ...]] = MappingProxyType(
    {
        Phase.INITIALIZING: _STEERABLE,
        Phase.INITIALIZED: _STEERABLE,
        Phase.WAITING: _STEERABLE,
        Phase.PROGRESSING: _STEERABLE,
        Phase.WAITING_PROMOTION: _STEERABLE,
        Phase.PAUSED: ("resume", "approve", "promote", "abort"),
        # the target is rolling out: only a rollback (its images put back) is left
        Phase.PROMOTING: ("abort",),
        Phase.FINALISING: ("abort",),
        Phase.SUCCEEDED: (),
        Phase.FAILED: (),
    }
)


def allowed_actions(phase: Phase) -> tuple[ControlAction, ...]:
    """The requests the engine applies in ``phase``, in display order."""
    return ALLOWED_ACTIONS[phase]


def refusal(phase: Phase, action: ControlAction) -> str | None:
    """Why ``action`` is not taken in ``phase``, in words for the person; None if it is."""
    possible = allowed_actions(phase)
    if action in possible:
        return None
    if phase.is_final:
        return f"release already {phase.value}"
    return f"cannot {action} while {phase.value}; possible now: {', '.join(possible)}"


def awaits_approval(release: CanaryRelease) -> bool:
    """Manual approval is required and not given: ``promote`` cannot stand in for it."""
    return release.spec.approval == "manual" and not release.status.approved


def actions_for(release: CanaryRelease) -> tuple[ControlAction, ...]:
    """What a front offers for ``release``: the phase's actions, without those that can
    only be refused or do nothing (approve when none is needed, promote before approval)."""
    offered = []
    for action in allowed_actions(release.status.phase):
        if action == "approve" and not awaits_approval(release):
            continue
        if action == "promote" and awaits_approval(release):
            continue
        offered.append(action)
    return tuple(offered)


__all__ = ["ALLOWED_ACTIONS", "actions_for", "allowed_actions", "awaits_approval", "refusal"]
