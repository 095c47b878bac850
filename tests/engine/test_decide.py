"""The decision function, stepped through whole rollouts against a simulated world.

Like Flagger's controller tests (which call advanceCanary repeatedly), each test drives
``plan_checks``/``decide`` tick by tick, applies the actions to a tiny in-memory world,
and asserts on what a user would see: weights, images, phase, events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from rollout.decide import (
    Checks,
    CheckStage,
    ClusterState,
    DeleteCanary,
    EnsureCanary,
    HookCheck,
    Measurement,
    NotifyHooks,
    PromoteTarget,
    RevertTarget,
    SetWeight,
    StoreDecision,
    decide,
    plan_checks,
    rollback_due,
)
from rollout.models import (
    CanaryRelease,
    CanaryReleaseSpec,
    ControlRequest,
    ObjectMeta,
    Phase,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
OLD = "stefanprodan/podinfo:6.0.0"
NEW = "stefanprodan/podinfo:6.0.3"


def tutorial_spec(**analysis: object) -> CanaryReleaseSpec:
    base: dict[str, object] = {
        "interval": "10s",
        "threshold": 10,
        "maxWeight": 50,
        "stepWeight": 5,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}
        ],
        "webhooks": [
            {
                "name": "acceptance-test",
                "type": "pre-rollout",
                "url": "http://flagger-loadtester.test/",
                "timeout": "30s",
                "metadata": {
                    "type": "bash",
                    "cmd": "curl -sd 'test' http://podinfo-canary/token | grep token",
                },
            }
        ],
    }
    base.update(analysis)
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": NEW},
            "progressDeadlineSeconds": 60,
            "analysis": base,
        }
    )


@dataclass
class World:
    """The cluster as the actions leave it."""

    target_images: dict[str, str] = field(default_factory=lambda: {"podinfod": OLD})
    canary_exists: bool = False
    canary_ready_after: int = 1  # ticks after creation
    canary_age: int = 0
    weight: int | None = None
    weights_seen: list[int] = field(default_factory=list)
    actions: list[object] = field(default_factory=list)
    problems: tuple[str, ...] = ()

    def workloads(self) -> ClusterState:
        return ClusterState(
            target_exists=True,
            target_images=dict(self.target_images),
            target_ready=True,
            target_message="2 of 2 replicas available",
            canary_exists=self.canary_exists,
            canary_ready=self.canary_exists and self.canary_age >= self.canary_ready_after,
            canary_message="0 of 2 updated replicas available",
            router_weight=self.weight,
            problems=self.problems,
        )

    def apply(self, actions: tuple[object, ...]) -> None:
        for action in actions:
            self.actions.append(action)
            if isinstance(action, EnsureCanary) and not self.canary_exists:
                self.canary_exists, self.canary_age = True, 0
                self.weight = 0
            elif isinstance(action, SetWeight):
                if self.weight is not None:
                    self.weight = action.weight
                    self.weights_seen.append(action.weight)
            elif isinstance(action, PromoteTarget | RevertTarget):
                self.target_images.update(action.images)
            elif isinstance(action, DeleteCanary):
                assert self.weight in (None, 0), "canary deleted while it still had traffic"
                self.canary_exists, self.weight = False, None
        if self.canary_exists:
            self.canary_age += 1


MetricFn = "object"


def ok_metric(value: float = 100.0) -> Measurement:
    return Measurement(
        "request-success-rate",
        value,
        None,
        value >= 99,
        False,
        f"request-success-rate {value}%",
        ">= 99",
    )


def no_values() -> Measurement:
    return Measurement(
        "request-success-rate",
        None,
        None,
        False,
        False,
        "no values found for nginx metric request-success-rate probably podinfo.test is not receiving traffic",
        ">= 99",
    )


def run(
    release: CanaryRelease,
    world: World,
    *,
    ticks: int = 60,
    step: timedelta = timedelta(seconds=10),
    metric: object = ok_metric,
    pre_rollout_ok: bool = True,
    gate_ok: bool = True,
    requests: dict[int, ControlRequest] | None = None,
    hook_mute: bool = False,
    rollback_open: Callable[[int], bool] | None = None,
) -> CanaryRelease:
    """Tick until a final phase (or ``ticks``), applying actions to ``world``."""
    now = T0
    for tick in range(ticks):
        if requests and tick in requests:
            spec = release.spec.model_copy(
                update={"control_requests": [*release.spec.control_requests, requests[tick]]}
            )
            release = release.model_copy(update={"spec": spec})
        observed = world.workloads()
        stage = plan_checks(release, observed, now)
        checks = Checks()
        if stage == CheckStage.PRE_ROLLOUT:
            checks = Checks(
                stage=stage,
                hooks=(
                    HookCheck(
                        "acceptance-test",
                        "pre-rollout",
                        pre_rollout_ok,
                        "pre-rollout check acceptance-test failed: HTTP 500",
                        mute_alert=hook_mute,
                    ),
                ),
            )
        elif stage == CheckStage.ANALYSIS:
            assert callable(metric)
            checks = Checks(
                stage=stage,
                metrics=(metric(),),
                gates=(HookCheck("gate", "confirm-traffic-increase", gate_ok, "closed"),),
            )
        elif stage == CheckStage.CONFIRM_PROMOTION:
            checks = Checks(
                stage=stage, gates=(HookCheck("promo", "confirm-promotion", gate_ok, "closed"),)
            )
        if rollback_open is not None and rollback_due(release, now):
            gate = HookCheck(
                "manual-rollback",
                "rollback",
                rollback_open(tick),
                f"rollback gate manual-rollback {'open' if rollback_open(tick) else 'closed'}",
            )
            # as the engine does: an open rollback gate makes the other checks moot
            checks = Checks(rollback=(gate,)) if gate.ok else replace(checks, rollback=(gate,))
        decision = decide(release, observed, checks, now)
        world.apply(decision.actions)
        release = release.model_copy(update={"status": decision.status})
        if release.status.phase.is_final and not decision.actions:
            break
        now += step
    return release


def new_release(spec: CanaryReleaseSpec | None = None) -> CanaryRelease:
    return CanaryRelease(
        metadata=ObjectMeta(name="podinfo-x1", namespace="test", uid="u1"),
        spec=spec or tutorial_spec(),
    )


def event_messages(release: CanaryRelease) -> list[str]:
    return [e.message for e in release.status.events]


def test_tutorial_rollout_promotes_in_steps_of_five_up_to_fifty() -> None:
    world = World()
    release = run(new_release(), world)
    assert release.status.phase == Phase.SUCCEEDED
    assert world.weights_seen[:10] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert max(world.weights_seen) == 50
    assert world.target_images == {"podinfod": NEW}
    assert not world.canary_exists and world.weight is None
    messages = event_messages(release)
    assert "Pre-rollout check acceptance-test passed" in messages
    assert "Advance podinfo.test canary weight 10" in messages
    assert "Routing all traffic to primary" in messages
    assert messages[-1] == f"Promotion completed! podinfo.test now runs {NEW}"
    assert release.status.canary_weight == 0
    # the stable images were remembered for a rollback
    assert release.status.stable_images == {"podinfod": OLD}


def test_failing_success_rate_rolls_back_after_threshold() -> None:
    world = World()
    release = run(new_release(), world, metric=lambda: ok_metric(48.0))
    assert release.status.phase == Phase.FAILED
    assert release.status.failed_checks == 10
    assert world.target_images == {"podinfod": OLD}
    assert not world.canary_exists
    halts = [e for e in release.status.events if e.type == "Halted"]
    assert halts and "request-success-rate 48.0%" in halts[-1].message
    last = release.status.events[-1]
    assert last.type == "RolledBack"
    assert last.message == "Rolling back podinfo.test failed checks threshold reached 10"
    assert last.details["request-success-rate"] == "48.00"
    # traffic went to stable before the canary objects were deleted
    kinds = [type(a) for a in world.actions]
    assert kinds.index(DeleteCanary) > max(
        i
        for i, a in enumerate(world.actions)
        if isinstance(a, SetWeight) and a.weight == 0 and i < kinds.index(DeleteCanary)
    )


def test_no_values_halts_with_flagger_message_and_rolls_back() -> None:
    world = World()
    release = run(new_release(tutorial_spec(threshold=3)), world, metric=no_values)
    assert release.status.phase == Phase.FAILED
    halts = [e.message for e in release.status.events if e.type == "Halted"]
    assert halts[0].startswith(
        "Halt advancement no values found for nginx metric request-success-rate"
    )
    assert "not receiving traffic" in release.status.events[-1].details["cause"]
    assert world.weights_seen[0] == 5 and max(world.weights_seen) == 5


def test_pre_rollout_failure_rolls_back_with_its_reason() -> None:
    world = World()
    release = run(new_release(tutorial_spec(threshold=2)), world, pre_rollout_ok=False)
    assert release.status.phase == Phase.FAILED
    assert "pre-rollout check acceptance-test failed" in release.status.events[-1].details["cause"]
    assert 5 not in world.weights_seen  # never sent traffic to the canary
    assert not world.canary_exists


def test_progress_deadline_rolls_back_a_canary_that_never_becomes_ready() -> None:
    world = World(canary_ready_after=10_000)
    release = run(new_release(), world)
    assert release.status.phase == Phase.FAILED
    assert release.status.reason.startswith("progress deadline exceeded")
    assert "0 of 2 updated replicas available" in release.status.reason


def test_abort_request_rolls_back_at_once_and_is_audited_once() -> None:
    world = World()
    abort = ControlRequest(
        id="r1", action="abort", user="U1", user_name="alice", reason="bad build"
    )
    release = run(new_release(), world, requests={6: abort})
    assert release.status.phase == Phase.FAILED
    assert release.status.reason == "aborted by alice: bad build"
    assert [(a.id, a.result) for a in release.status.audit] == [("r1", "applied")]
    assert world.weight is None and world.target_images == {"podinfod": OLD}
    # a decision after the end changes nothing and does not audit twice
    again = decide(release, world.workloads(), Checks(), T0 + timedelta(hours=1))
    assert not again.actions and len(again.status.audit) == 1


def test_manual_approval_waits_until_approved() -> None:
    world = World()
    spec = tutorial_spec(maxWeight=10).model_copy(update={"approval": "manual"})
    waiting = run(new_release(spec), world, ticks=30)
    assert waiting.status.phase == Phase.WAITING_PROMOTION
    assert world.target_images == {"podinfod": OLD}
    assert any(e.type == "WaitingApproval" for e in waiting.status.events)
    approve = ControlRequest(id="a1", action="approve", user="U2", user_name="bob")
    done = run(waiting, world, requests={0: approve})
    assert done.status.phase == Phase.SUCCEEDED
    assert world.target_images == {"podinfod": NEW}
    assert any(e.message == "Promotion of podinfo.test approved by bob" for e in done.status.events)


def test_pause_holds_the_weight_and_resume_continues() -> None:
    world = World()
    pause = ControlRequest(id="p1", action="pause", user="U1")
    paused = run(new_release(), world, ticks=20, requests={4: pause})
    assert paused.status.phase == Phase.PAUSED
    held = paused.status.canary_weight
    assert world.weight == held and held > 0
    resume = ControlRequest(id="p2", action="resume", user="U1")
    done = run(paused, world, requests={0: resume})
    assert done.status.phase == Phase.SUCCEEDED


def test_promote_request_skips_remaining_analysis() -> None:
    world = World()
    promote = ControlRequest(id="x", action="promote", user="U1", user_name="carol")
    release = run(new_release(), world, requests={4: promote})
    assert release.status.phase == Phase.SUCCEEDED
    assert max(world.weights_seen) < 50


def test_invalid_request_is_refused_and_changes_nothing() -> None:
    world = World(problems=("Deployment podinfo not found in namespace test",))
    release = run(new_release(), world)
    assert release.status.phase == Phase.FAILED
    assert release.status.reason == "InvalidSpec"
    assert world.actions == []
    assert release.status.events[-1].type == "Refused"


def test_closed_traffic_gate_holds_without_failing() -> None:
    world = World()
    release = run(new_release(), world, gate_ok=False, ticks=20)
    assert release.status.phase == Phase.PROGRESSING
    assert release.status.failed_checks == 0
    assert world.weights_seen == [5]


def test_ab_iterations_promote_after_the_count() -> None:
    world = World()
    spec = tutorial_spec(iterations=3, match=[{"headers": {"x-canary": {"exact": "insider"}}}])
    release = run(new_release(spec), world)
    assert release.status.phase == Phase.SUCCEEDED
    assert release.status.iterations == 3


def test_fail_fast_rolls_back_on_the_first_catastrophic_check() -> None:
    world = World()

    def catastrophic() -> Measurement:
        return Measurement(
            "request-success-rate", 10.0, None, False, True, "request-success-rate 10%", ">= 99"
        )

    release = run(new_release(), world, metric=catastrophic)
    assert release.status.phase == Phase.FAILED
    assert release.status.failed_checks == 0
    assert release.status.reason.startswith("fail-fast")


def test_not_due_means_no_new_actions_or_events() -> None:
    world = World()
    release = run(new_release(), world, ticks=4)
    observed = world.workloads()
    soon = T0 + timedelta(seconds=31)
    assert plan_checks(release, observed, soon) == CheckStage.NONE
    decision = decide(release, observed, Checks(), soon)
    assert decision.new_events == () and decision.status == release.status


def test_router_is_reconciled_to_the_status_after_a_crash() -> None:
    world = World()
    release = run(new_release(), world, ticks=5)
    world.weight = 0  # someone (or a crash mid-step) reset the Ingress
    decision = decide(release, world.workloads(), Checks(), T0 + timedelta(seconds=41))
    assert SetWeight(release.status.canary_weight) in decision.actions


@settings(max_examples=150, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(["ok", "bad", "none", "fast"]), min_size=1, max_size=80),
    max_weight=st.integers(min_value=1, max_value=100),
    step=st.integers(min_value=1, max_value=100),
    control=st.sampled_from([None, "abort", "promote", "pause", "approve"]),
)
def test_invariants_hold_for_any_sequence_of_outcomes(
    outcomes: list[str], max_weight: int, step: int, control: str | None
) -> None:
    world = World()
    spec = tutorial_spec(maxWeight=max_weight, stepWeight=step, threshold=5)
    release = new_release(spec)
    results = iter(outcomes * 3)

    def metric() -> Measurement:
        kind = next(results, "ok")
        if kind == "none":
            return no_values()
        return Measurement(
            "request-success-rate",
            100.0 if kind == "ok" else 50.0,
            None,
            kind == "ok",
            kind == "fast",
            kind,
            ">= 99",
        )

    requests = {5: ControlRequest(id="c", action=control)} if control else None  # type: ignore[arg-type]
    final = run(release, world, metric=metric, requests=requests, ticks=300)
    assert all(0 <= w <= max_weight for w in world.weights_seen)
    assert final.status.canary_weight <= max_weight
    # the outbox's sequence numbers are contiguous and increasing
    seqs = [e.seq for e in final.status.events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True
    if final.status.phase.is_final:
        assert not world.canary_exists and world.weight is None
        expected = NEW if final.status.phase == Phase.SUCCEEDED else OLD
        assert world.target_images == {"podinfod": expected}
    rollbacks = [a for a in world.actions if isinstance(a, NotifyHooks) and a.type == "rollback"]
    assert len(rollbacks) <= 1


def test_request_counts_are_keyed_by_resource_not_object_name() -> None:
    from rollout.kube import resource_of

    assert (
        resource_of("/apis/networking.k8s.io/v1/namespaces/t/ingresses/podinfo-canary")
        == "ingresses"
    )
    assert resource_of("/apis/canarybot.io/v1alpha1/namespaces/t/canaryreleases/p/status") == (
        "canaryreleases/status"
    )
    assert resource_of("/api/v1/namespaces/t/events") == "events"


def test_promote_does_not_stand_in_for_a_pending_manual_approval() -> None:
    world = World()
    spec = tutorial_spec(maxWeight=10).model_copy(update={"approval": "manual"})
    waiting = run(new_release(spec), world, ticks=30)
    assert waiting.status.phase == Phase.WAITING_PROMOTION
    promote = ControlRequest(id="p1", action="promote", user="U1", user_name="carol")
    still = run(waiting, world, ticks=5, requests={0: promote})
    assert still.status.phase == Phase.WAITING_PROMOTION
    assert world.target_images == {"podinfod": OLD}
    [entry] = still.status.audit
    assert (entry.id, entry.result, entry.message) == (
        "p1",
        "refused",
        "waiting for approval; approve first",
    )
    approve = ControlRequest(id="a1", action="approve", user="U2", user_name="bob")
    done = run(still, world, requests={0: approve})
    assert done.status.phase == Phase.SUCCEEDED
    assert world.target_images == {"podinfod": NEW}


def test_promote_while_progressing_also_waits_for_a_manual_approval() -> None:
    world = World()
    spec = tutorial_spec().model_copy(update={"approval": "manual"})
    promote = ControlRequest(id="p1", action="promote", user="U1")
    release = run(new_release(spec), world, ticks=8, requests={4: promote})
    assert release.status.phase == Phase.PROGRESSING
    assert [(a.result, a.message) for a in release.status.audit] == [
        ("refused", "waiting for approval; approve first")
    ]
    approve = ControlRequest(id="a1", action="approve", user="U2")
    promote_again = ControlRequest(id="p2", action="promote", user="U1")
    done = run(release, world, requests={0: approve, 1: promote_again})
    assert done.status.phase == Phase.SUCCEEDED
    assert max(world.weights_seen) < 50  # the approved promote skipped the rest


# -- Flagger's webhook and promotion semantics ------------------------------------------


def rollback_gate_spec(**analysis: object) -> CanaryReleaseSpec:
    hooks = [w.model_dump(by_alias=True) for w in tutorial_spec().analysis.webhooks]
    hooks.append({"name": "manual-rollback", "type": "rollback", "url": "http://lt/rollback/check"})
    return tutorial_spec(webhooks=hooks, **analysis)


def test_open_rollback_gate_while_progressing_rolls_back_naming_the_hook() -> None:
    world = World()
    release = run(new_release(rollback_gate_spec()), world, rollback_open=lambda tick: tick >= 6)
    assert release.status.phase == Phase.FAILED
    assert release.status.reason == "manual rollback requested by webhook manual-rollback"
    assert 0 < max(world.weights_seen) < 50  # it was progressing when the gate opened
    assert world.weight is None and world.target_images == {"podinfod": OLD}
    last = release.status.events[-1]
    assert last.message == (
        "Rolling back podinfo.test manual rollback requested by webhook manual-rollback"
    )
    # post-rollout hooks run after a rollback too (Flagger); rollback hooks are gates only
    assert NotifyHooks("post-rollout", release.status.reason) in world.actions


def test_closed_rollback_gate_changes_nothing() -> None:
    world = World()
    release = run(new_release(rollback_gate_spec()), world, rollback_open=lambda tick: False)
    assert release.status.phase == Phase.SUCCEEDED
    assert world.weights_seen[:10] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]


def test_rollback_gate_is_asked_while_waiting_for_promotion() -> None:
    world = World()
    spec = rollback_gate_spec(stepWeight=25).model_copy(update={"approval": "manual"})
    waiting = run(new_release(spec), world, ticks=12, rollback_open=lambda tick: False)
    assert waiting.status.phase == Phase.WAITING_PROMOTION
    assert rollback_due(waiting, T0 + timedelta(hours=1))
    gate = HookCheck("manual-rollback", "rollback", True, "rollback gate manual-rollback open")
    decision = decide(waiting, world.workloads(), Checks(rollback=(gate,)), T0 + timedelta(hours=1))
    world.apply(decision.actions)
    ended = waiting.model_copy(update={"status": decision.status})
    assert ended.status.phase == Phase.FAILED
    assert ended.status.reason == "manual rollback requested by webhook manual-rollback"
    assert world.target_images == {"podinfod": OLD}


def test_rollback_gate_is_not_asked_outside_flaggers_phases() -> None:
    release = new_release(rollback_gate_spec())
    for phase in (Phase.INITIALIZING, Phase.INITIALIZED, Phase.PROMOTING, Phase.SUCCEEDED):
        status = release.status.model_copy(update={"phase": phase})
        assert not rollback_due(release.model_copy(update={"status": status}), T0)
    for phase in (Phase.WAITING, Phase.PROGRESSING, Phase.WAITING_PROMOTION):
        status = release.status.model_copy(update={"phase": phase})
        assert rollback_due(release.model_copy(update={"status": status}), T0)
    assert not rollback_due(new_release().model_copy(update={"status": status}), T0)


def test_rollback_caused_only_by_muted_hooks_is_flagged_for_no_alert() -> None:
    muted = run(
        new_release(tutorial_spec(threshold=2)), World(), pre_rollout_ok=False, hook_mute=True
    )
    assert muted.status.phase == Phase.FAILED
    assert muted.status.events[-1].type == "RolledBack" and muted.status.events[-1].mute_alert
    loud = run(new_release(tutorial_spec(threshold=2)), World(), pre_rollout_ok=False)
    assert loud.status.events[-1].type == "RolledBack" and not loud.status.events[-1].mute_alert
    # a metric failure is never muted by a hook's muteAlert
    metric = run(new_release(tutorial_spec(threshold=2)), World(), metric=lambda: ok_metric(10))
    assert metric.status.phase == Phase.FAILED and not metric.status.events[-1].mute_alert


def test_step_weight_promotion_shifts_traffic_to_the_target_in_steps() -> None:
    world = World()
    release = run(new_release(tutorial_spec(stepWeight=25, stepWeightPromotion=20)), world)
    assert release.status.phase == Phase.SUCCEEDED
    # up to maxWeight in analysis steps, then down again by the promotion step, and the
    # canary is removed only once it has no traffic
    assert world.weights_seen == [25, 50, 30, 10, 0]
    messages = event_messages(release)
    shifts = [m for m in messages if "primary weight" in m]
    assert shifts == [
        "Advance podinfo.test primary weight 70",
        "Advance podinfo.test primary weight 90",
    ]
    assert messages.index(shifts[0]) > messages.index(
        f"Copying podinfo.test template spec to podinfo (podinfod={NEW})"
    )
    assert world.target_images == {"podinfod": NEW} and not world.canary_exists


def test_promotion_without_step_weight_promotion_drops_the_weight_at_once() -> None:
    world = World()
    release = run(new_release(tutorial_spec(stepWeight=25)), world)
    assert release.status.phase == Phase.SUCCEEDED
    assert world.weights_seen == [25, 50, 0]
    assert not [m for m in event_messages(release) if "primary weight" in m]


def post_rollout_spec() -> CanaryReleaseSpec:
    hooks = [w.model_dump(by_alias=True) for w in tutorial_spec().analysis.webhooks]
    hooks.append({"name": "notify", "type": "post-rollout", "url": "http://lt/"})
    return tutorial_spec(webhooks=hooks)


def test_an_ending_stores_that_its_post_rollout_hooks_are_due_before_deleting_the_canary() -> None:
    world = World()
    abort = ControlRequest(id="r1", action="abort", user="U1")
    release = run(new_release(post_rollout_spec()), world, ticks=4, requests={3: abort})
    assert release.status.phase == Phase.FAILED and release.status.post_rollout_due
    ending = world.actions[-3:]
    assert ending == [
        StoreDecision(),
        DeleteCanary(),
        NotifyHooks("post-rollout", release.status.reason),
    ]


def test_without_post_rollout_hooks_nothing_is_due() -> None:
    world = World()
    release = run(new_release(), world)
    assert release.status.phase == Phase.SUCCEEDED and not release.status.post_rollout_due


def test_an_ending_interrupted_after_its_store_calls_its_post_rollout_hooks_when_it_converges() -> (
    None
):
    world = World()
    release = run(new_release(post_rollout_spec()), world, ticks=3)
    status = release.status.model_copy(
        update={"phase": Phase.FAILED, "reason": "x", "post_rollout_due": True}
    )
    ended = release.model_copy(update={"status": status})
    # stopped before the canary was gone: remove it, then call the hooks
    world.weight, world.canary_exists = 0, True
    decision = decide(ended, world.workloads(), Checks(), T0 + timedelta(seconds=60))
    assert decision.actions == (DeleteCanary(), NotifyHooks("post-rollout", "x"))
    # stopped after the canary was gone (its DELETE answered too late, say): the hooks
    # are still called, because the stored status says they are due
    world.canary_exists, world.weight = False, None
    decision = decide(ended, world.workloads(), Checks(), T0 + timedelta(seconds=61))
    assert decision.actions == (NotifyHooks("post-rollout", "x"),)
    # once they were called (the engine clears the flag), converging calls nothing
    done = ended.model_copy(
        update={"status": status.model_copy(update={"post_rollout_due": False})}
    )
    assert decide(done, world.workloads(), Checks(), T0 + timedelta(seconds=62)).actions == ()
