"""SIGKILL after every step of the endings: promotion, rollback and abort (supersede, which
needs a managed Deployment, is in test_crash_points_supersede.py).

The engine dies at an exact point through its failpoints (``CANARY_BOT_CRASH_AT``, see
rollout/failpoints.py): right after it performed the named action of the decision that
ends (or starts ending) a rollout. A restarted engine, without the failpoint, must end
the release as decided: the same phase and reason, traffic on the stable side, the
right image on the target, no canary objects left, and every event delivered once.

At the kill the test also checks what a crash there leaves behind: traffic is already on
stable from the first step of a rollback on, and once the outcome is stored (after
``StoreDecision``) the canary may still exist but the reason is already there.
"""

from __future__ import annotations

import uuid
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
    canary_weight_on_ingress,
    create,
    image_of,
    killed_at_failpoint,
    outbox_problems,
    releases,
    restart_without_failpoint,
    spec,
    story,
)
from tests.fixtures.engine import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

APP = "app"


@dataclass(frozen=True)
class Ending:
    """One way a rollout ends, and what it must end as."""

    name: str
    hook_type: str
    error_rate: float
    final_phase: str
    final_reason: str
    final_image: str
    analysis: dict[str, Any]
    abort: bool = False


ROLLBACK = Ending(
    name="rollback",
    hook_type="post-rollout",
    error_rate=0.5,
    final_phase="Failed",
    final_reason="failed checks threshold reached",
    final_image=OLD,
    analysis={"threshold": 2, "stepWeight": 20, "maxWeight": 40},
)
ABORT = Ending(
    name="abort",
    hook_type="post-rollout",
    error_rate=0.0,
    final_phase="Failed",
    final_reason="aborted by Ada",
    final_image=OLD,
    # ten steps of 10 %: the abort lands while the analysis is still progressing
    analysis={"threshold": 5, "stepWeight": 10, "maxWeight": 100},
    abort=True,
)
PROMOTION = Ending(
    name="promotion",
    hook_type="post-rollout",
    error_rate=0.0,
    final_phase="Succeeded",
    final_reason="Succeeded",
    final_image=NEW,
    analysis={"threshold": 5, "stepWeight": 50, "maxWeight": 50},
)

# Every action of each ending, in the order the engine performs them (phase the decision
# moves to : action). A rollback before promotion has no RevertTarget step.
ENDING_STEPS = ["SetWeight", "StoreDecision", "DeleteCanary", "NotifyHooks"]
POINTS = (
    [(ROLLBACK, f"Failed:{step}") for step in ENDING_STEPS]
    + [(ABORT, f"Failed:{step}") for step in ENDING_STEPS]
    + [(PROMOTION, "Promoting:PromoteTarget"), (PROMOTION, "Promoting:StoreDecision")]
    + [(PROMOTION, f"Succeeded:{step}") for step in ENDING_STEPS]
)


def with_hook(base: CanaryReleaseSpec, ending: Ending, url: str) -> CanaryReleaseSpec:
    """``base`` with the ending's analysis numbers and a webhook of its notification type."""
    body = base.model_dump(mode="json", by_alias=True)
    body["analysis"].update(ending.analysis)
    body["analysis"]["webhooks"] = [
        {
            "name": "notify",
            "type": ending.hook_type,
            "url": f"{url}/notify",
            "timeout": "10s",
            "metadata": {"cmd": "echo done"},
        }
    ]
    return CanaryReleaseSpec.model_validate(body)


def abort_when_progressing(api: k8s.ApiClient, namespace: str) -> None:
    """Wait for the canary to get traffic, then ask for an abort as the Slack front does."""

    def progressing() -> bool:
        release = releases(api, namespace).get(APP)
        return release is not None and release.status.canary_weight >= 10

    wait_for(progressing, 90, "the canary to get traffic before the abort", interval=0.2)
    request = {"id": uuid.uuid4().hex[:12], "action": "abort", "user": "U1", "userName": "Ada"}
    k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
        "canarybot.io",
        "v1alpha1",
        namespace,
        "canaryreleases",
        APP,
        {"spec": {"controlRequests": [request]}},
    )


def check_at_kill(api: k8s.ApiClient, namespace: str, ending: Ending, point: str) -> None:
    """What a crash at ``point`` leaves: traffic on stable, the outcome stored in time."""
    release = releases(api, namespace)[APP]
    step = point.split(":", 1)[1]
    ended = point.startswith(("Failed:", "Succeeded:"))
    if ended:
        # every ending routes all traffic to stable before anything else
        assert canary_weight_on_ingress(api, namespace, APP) in (0, None), story(release)
    stored = ended and step != "SetWeight"
    if stored:
        assert release.status.phase.value == ending.final_phase, story(release)
        assert release.status.reason.startswith(ending.final_reason), story(release)
    elif ended:
        assert not release.status.phase.is_final, story(release)


@pytest.mark.parametrize(
    ("ending", "point"), [pytest.param(e, p, id=f"{e.name}-{p}") for e, p in POINTS]
)
def test_a_kill_after_any_step_of_an_ending_keeps_the_decided_outcome(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    apps: Callable[[list[str]], None],
    traffic_for: TrafficFor,
    prometheus: PrometheusServer,
    loadtester: LoadTester,
    engines: EngineFactory,
    ending: Ending,
    point: str,
) -> None:
    apps([APP])
    sims = traffic_for(prometheus, namespace, [APP], rps=40, tick=0.5)
    sims[APP].set_side("canary", error_rate=ending.error_rate)
    engine = engines("engine", namespace=namespace, env={"CANARY_BOT_CRASH_AT": point})
    create(kube_api_client, namespace, APP, with_hook(spec(APP), ending, loadtester.url))
    if ending.abort:
        abort_when_progressing(kube_api_client, namespace)

    killed_at_failpoint(engine, point)
    check_at_kill(kube_api_client, namespace, ending, point)

    restart_without_failpoint(engine)

    def ended() -> CanaryRelease | None:
        release = releases(kube_api_client, namespace)[APP]
        return release if release.status.phase.is_final else None

    wait_for(ended, 120, f"the release to end after the restart (expected {ending.final_phase})")

    def settled() -> bool:
        release = releases(kube_api_client, namespace)[APP]
        delivered = release.status.notification.delivered_seq == release.status.event_seq
        return delivered and not canary_objects(kube_api_client, namespace)

    wait_for(settled, 60, "the canary to be removed and the last events delivered")
    # the post-rollout hook ran once, with the final phase, wherever the ending stopped
    notified = loadtester.wait_for_call(path="/notify", timeout=30)
    assert notified.phase == ending.final_phase, notified
    engine.stop()
    assert len(loadtester.calls(path="/notify")) == 1, loadtester.calls(path="/notify")
    final = releases(kube_api_client, namespace)[APP]
    assert final.status.phase.value == ending.final_phase, story(final)
    assert final.status.reason.startswith(ending.final_reason), (final.status.reason, story(final))
    assert final.status.canary_weight == 0, story(final)
    assert canary_weight_on_ingress(kube_api_client, namespace, APP) is None
    assert image_of(kube_api_client, namespace, APP) == ending.final_image
    assert canary_objects(kube_api_client, namespace) == []
    assert not outbox_problems(final), (outbox_problems(final), story(final))
