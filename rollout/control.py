"""Control requests (abort, promote, pause, resume, approve): each applied exactly once.

Whether a request is taken in a phase is ``rollout.actions``' table, the same one the
fronts offer; what it does depends on the release's state. Every request is audited in
status; a refusal is also told in the release's thread. Pure, like ``rollout.decide``.
"""

from __future__ import annotations

from rollout.actions import awaits_approval, refusal
from rollout.builder import Builder, pending_requests
from rollout.decision import ClusterState
from rollout.models import ControlRequest, Phase
from rollout.promotion import start_promotion


def _requester(request: ControlRequest) -> str:
    return request.user_name or request.user or "someone"


def apply_control(b: Builder, workloads: ClusterState) -> None:
    """Apply pending control requests in order, each exactly once, and audit them."""
    for request in pending_requests(b.release):
        # the table the fronts offer from: a request it does not allow is a no-op
        not_now = refusal(b.status.phase, request.action)
        if not_now is not None:
            b.audit(request, "ignored", not_now)
        elif request.action == "abort":
            _abort(b, request)
        elif request.action == "promote":
            _promote(b, request, workloads)
        elif request.action == "pause":
            _pause(b, request)
        elif request.action == "resume":
            _resume(b, request)
        else:
            _approve(b, request)


def _refuse(b: Builder, request: ControlRequest, why: str) -> None:
    """Audit a refusal and tell it in the thread: the person who asked sees why."""
    b.audit(request, "refused", why)
    b.event("Control", f"{request.action.capitalize()} by {_requester(request)} refused: {why}")


def _abort(b: Builder, request: ControlRequest) -> None:
    who = _requester(request)
    why = f"aborted by {who}" + (f": {request.reason}" if request.reason else "")
    b.audit(request, "applied", why)
    b.event("Control", f"Abort requested by {who}", "warning", {"user": request.user})
    b.rollback(why, {"abortedBy": who})


def _promote(b: Builder, request: ControlRequest, workloads: ClusterState) -> None:
    if not workloads.canary_ready and b.status.phase in _BEFORE_ANALYSIS:
        _refuse(b, request, "the canary is not ready yet; try again once it runs")
        return
    if awaits_approval(b.release.model_copy(update={"status": b.status})):
        # a promote grant must not stand in for a separate approve grant
        _refuse(b, request, "waiting for approval; approve first")
        return
    who = _requester(request)
    b.audit(request, "applied", f"promoted by {who} without further analysis")
    b.event("Control", f"Promotion requested by {who}; skipping remaining analysis", "warning")
    start_promotion(b)


def _pause(b: Builder, request: ControlRequest) -> None:
    who = _requester(request)
    b.audit(request, "applied", f"paused by {who}")
    b.update(paused_from=b.status.phase)
    b.phase(Phase.PAUSED, f"paused by {who} at weight {b.status.canary_weight}")
    b.event("Paused", f"Paused {b.name} by {who} at canary weight {b.status.canary_weight}")


def _resume(b: Builder, request: ControlRequest) -> None:
    who = _requester(request)
    b.audit(request, "applied", f"resumed by {who}")
    b.phase(b.status.paused_from or Phase.PROGRESSING, f"resumed by {who}")
    # restart the interval so analysis only looks at traffic since the pause
    b.update(paused_from=None, last_step_at=b.now)
    b.event("Resumed", f"Resumed {b.name} by {who}")


def _approve(b: Builder, request: ControlRequest) -> None:
    who = _requester(request)
    b.update(approved=True)
    if b.status.phase == Phase.WAITING_PROMOTION:
        b.audit(request, "applied", f"approved by {who}")
        b.event("Approved", f"Promotion of {b.name} approved by {who}")
        start_promotion(b)
        return
    b.audit(request, "applied", f"pre-approved by {who}; promotes when analysis completes")
    b.event("Approved", f"Promotion of {b.name} pre-approved by {who}")


# Phases in which the canary may still be starting: promote waits for it to run.
_BEFORE_ANALYSIS = frozenset({Phase.INITIALIZING, Phase.INITIALIZED, Phase.WAITING})

__all__ = ["apply_control"]
