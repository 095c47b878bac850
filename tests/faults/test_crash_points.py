"""SIGKILL at two exact points: after the canary was removed, before the outcome was written.

``advance`` performs its actions and writes the status last. Ending a rollout removes
the canary Ingress, Deployment and Service, calls the ``rollback`` / ``post-rollout``
webhooks, and only then writes Failed / Succeeded. A webhook that takes a few seconds
to answer holds the engine exactly there, so the kill lands in that window every time
(the random kills in test_engine_sigkill.py hit it only now and then).

A restarted engine must finish the job with the outcome and the reason it had decided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client as k8s

from rollout.models import CanaryRelease, CanaryReleaseSpec
from sandbox.loadtester import LoadTester
from sandbox.prometheus import PrometheusServer
from tests.faults.conftest import EngineFactory, TrafficFor
from tests.faults.helpers import (
    NEW,
    OLD,
    canary_objects,
    create,
    image_of,
    outbox_problems,
    releases,
    spec,
    story,
)
from tests.fixtures.engine import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

APP = "app"
HOOK_DELAY = 6.0


class WrongReason(AssertionError):
    """The release ended as decided, but says a different cause (the known engine bug)."""


@dataclass(frozen=True)
class CrashPoint:
    """Where to kill, and what the release must end as."""

    hook_type: str
    error_rate: float
    phase_at_kill: str
    final_phase: str
    final_reason: str
    final_image: str
    analysis: dict[str, Any]


ROLLBACK = CrashPoint(
    hook_type="rollback",
    error_rate=0.5,
    phase_at_kill="Progressing",
    final_phase="Failed",
    final_reason="failed checks threshold reached",
    final_image=OLD,
    analysis={"threshold": 2, "stepWeight": 20, "maxWeight": 40},
)
PROMOTION = CrashPoint(
    hook_type="post-rollout",
    error_rate=0.0,
    phase_at_kill="Promoting",
    final_phase="Succeeded",
    final_reason="Succeeded",
    final_image=NEW,
    analysis={"threshold": 5, "stepWeight": 50, "maxWeight": 50},
)


def with_hook(base: CanaryReleaseSpec, point: CrashPoint, url: str) -> CanaryReleaseSpec:
    """``base`` with the crash point's analysis numbers and a webhook of its type."""
    body = base.model_dump(mode="json", by_alias=True)
    body["analysis"].update(point.analysis)
    body["analysis"]["webhooks"] = [
        {
            "name": "slow-hook",
            "type": point.hook_type,
            "url": f"{url}/slow-hook",
            "timeout": "30s",
            "metadata": {"cmd": "echo done"},
        }
    ]
    body["progressDeadlineSeconds"] = 15
    return CanaryReleaseSpec.model_validate(body)


@pytest.mark.parametrize(
    "point",
    [
        pytest.param(
            ROLLBACK,
            id="rollback",
            marks=pytest.mark.xfail(
                strict=True,
                raises=WrongReason,
                reason=(
                    "engine: a release killed after its rollback removed the canary but "
                    "before Failed was written stays Progressing with no canary until "
                    "progressDeadlineSeconds, then fails as 'progress deadline exceeded: "
                    "canary not ready (deployment does not exist)' instead of the cause"
                ),
            ),
        ),
        pytest.param(PROMOTION, id="promotion"),
    ],
)
def test_a_kill_after_the_canary_is_removed_keeps_the_decided_outcome(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    apps: Callable[[list[str]], None],
    traffic_for: TrafficFor,
    prometheus: PrometheusServer,
    loadtester: LoadTester,
    engines: EngineFactory,
    point: CrashPoint,
) -> None:
    apps([APP])
    sims = traffic_for(prometheus, namespace, [APP], rps=40, tick=0.5)
    sims[APP].set_side("canary", error_rate=point.error_rate)
    loadtester.delay("slow-hook", HOOK_DELAY, times=1)
    engine = engines("engine", namespace=namespace)
    create(kube_api_client, namespace, APP, with_hook(spec(APP), point, loadtester.url))

    def canary_removed_outcome_unwritten() -> bool:
        release = releases(kube_api_client, namespace).get(APP)
        return (
            release is not None
            and release.status.canary_weight > 0
            and not canary_objects(kube_api_client, namespace)
        )

    # the slow webhook comes right after the removal and before the status write
    wait_for(
        canary_removed_outcome_unwritten,
        90,
        "the engine to remove the canary objects at the end of the rollout",
        interval=0.05,
    )
    engine.kill()
    at_kill = releases(kube_api_client, namespace)[APP]
    if at_kill.status.phase.value != point.phase_at_kill:
        pytest.fail(f"the kill missed the window: {at_kill.status.phase.value}\n{story(at_kill)}")

    engine.start()

    def ended() -> CanaryRelease | None:
        release = releases(kube_api_client, namespace)[APP]
        return release if release.status.phase.is_final else None

    final = wait_for(
        ended,
        90,
        f"the release to end after the restart (expected {point.final_phase})",
    )
    wait_for(
        lambda: (
            (r := releases(kube_api_client, namespace)[APP]).status.notification.delivered_seq
            == r.status.event_seq
        ),
        30,
        "the last events to be delivered",
    )
    engine.stop()
    final = releases(kube_api_client, namespace)[APP]
    assert final.status.phase.value == point.final_phase, story(final)
    assert image_of(kube_api_client, namespace, APP) == point.final_image
    assert canary_objects(kube_api_client, namespace) == []
    assert not outbox_problems(final), outbox_problems(final)
    if not final.status.reason.startswith(point.final_reason):
        raise WrongReason(f"reason {final.status.reason!r}\n{story(final)}")
