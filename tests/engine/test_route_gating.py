"""A step's metrics count only once the Gateway API route carries its weight."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.render.card import card_blocks
from rollout.decide import ROUTE_READY, decide, plan_checks
from rollout.decision import Checks, CheckStage, ClusterState
from rollout.models import CanaryRelease, Phase
from tests.engine.test_decide import World, new_release, ok_metric, run, tutorial_spec

WAITING = "HTTPRoute test/podinfo: Gateway test/eg: Accepted not yet reported for generation 3"


@dataclass
class RouteWorld(World):
    """The cluster, with a route whose parents report late (``waiting`` ticks)."""

    waiting: int = 0

    def workloads(self) -> ClusterState:
        observed = super().workloads()
        if self.waiting > 0:
            self.waiting -= 1
            return ClusterState(**{**observed.__dict__, "route_waiting": WAITING})
        return observed


def _progressing() -> tuple[CanaryRelease, RouteWorld]:
    world = RouteWorld()
    release = run(new_release(), world, ticks=3)
    assert release.status.phase == Phase.PROGRESSING
    return release, world


def _route_condition(release: CanaryRelease) -> tuple[str, str] | None:
    found = [c for c in release.status.conditions if c.type == ROUTE_READY]
    return (found[0].status, found[0].message) if found else None


def test_analysis_waits_while_the_route_is_not_in_force_and_says_which_condition() -> None:
    release, world = _progressing()
    weight = release.status.canary_weight
    world.waiting = 3
    assert release.status.last_step_at is not None
    now = release.status.last_step_at + timedelta(seconds=10)  # the next step is due
    observed = world.workloads()

    assert plan_checks(release, observed, now) == CheckStage.NONE
    decision = decide(release, observed, Checks(), now)
    release = release.model_copy(update={"status": decision.status})

    assert _route_condition(release) == ("False", WAITING)
    assert release.status.failed_checks == 0
    assert release.status.canary_weight == weight
    assert release.status.message == "analysis waits until the route is in force"
    card = str([b.to_dict() for b in card_blocks(release, now)])
    assert "Route not in force yet" in card and "Accepted not yet reported" in card


def test_the_step_counts_once_every_parent_reports_the_route() -> None:
    release, world = _progressing()
    world.waiting = 2
    release = run(release, world, ticks=60, metric=ok_metric)

    assert release.status.phase == Phase.SUCCEEDED
    assert _route_condition(release) == ("True", "every parent accepted the route")
    assert world.weights_seen[:3] == [5, 10, 15]


def test_a_route_never_in_force_rolls_back_at_the_progress_deadline() -> None:
    release, world = _progressing()
    world.waiting = 10_000
    release = run(release, world, ticks=30)

    assert release.status.phase == Phase.FAILED
    assert "route not in force" in release.status.message, release.status.message
    assert world.weights_seen[-1] == 0 and not world.canary_exists


def test_an_ingress_release_never_gets_a_route_condition() -> None:
    release = run(new_release(tutorial_spec()), World(), ticks=100)

    assert release.status.phase == Phase.SUCCEEDED
    assert _route_condition(release) is None
