"""kube-apiserver is SIGKILLed in the middle of two rollouts and started again.

While it is down the engine can neither read nor write anything (its watch breaks, its
Lease cannot be renewed, every advance fails); etcd keeps the state. Once the API server
is back the rollouts must end exactly as they would have: the healthy one promoted, the
one with 5xx rolled back, no canary objects left, the outbox intact.

The engine runs with leader election, as it does in production, so the Lease renewal
failing during the outage is part of what is tested.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from kubernetes import client as k8s

from sandbox.controlplane import ControlPlane
from sandbox.prometheus import PrometheusServer
from tests.faults.conftest import EngineFactory, TrafficFor
from tests.faults.helpers import (
    NEW,
    OLD,
    all_final,
    canary_leftovers,
    create,
    image_of,
    outbox_problems,
    releases,
    spec,
    story,
)
from tests.fixtures.engine import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

GOOD, BAD = "good", "bad"
DOWN_SECONDS = 8.0


def restart_apiserver(control_plane: ControlPlane, down_seconds: float) -> None:
    """SIGKILL kube-apiserver, leave it down for ``down_seconds``, start it again, wait ready.

    ``ControlPlane.relaunch`` reuses the component's recorded command line and the control
    plane's own launch and health checks (same port, certificates and etcd), so
    ``control_plane.stop()`` still stops the new process.
    """
    component = control_plane._components["kube-apiserver"]
    process = component.process
    assert process is not None and process.poll() is None, "kube-apiserver is not running"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    time.sleep(down_seconds)
    control_plane.relaunch("kube-apiserver")


def test_rollouts_end_right_across_an_apiserver_restart(
    kube_api_client: k8s.ApiClient,
    control_plane: ControlPlane,
    namespace: str,
    apps: Callable[[list[str]], None],
    traffic_for: TrafficFor,
    prometheus: PrometheusServer,
    engines: EngineFactory,
) -> None:
    apps([GOOD, BAD])
    sims = traffic_for(prometheus, namespace, [GOOD, BAD], rps=40, tick=0.5)
    sims[BAD].set_side("canary", error_rate=0.5)
    engine = engines("engine", namespace=namespace, leader_election=True, lease_seconds=6)
    # 5 steps of 10 % at 2 s, 8 failed checks allowed: the outage lands mid-rollout
    create(kube_api_client, namespace, GOOD, spec(GOOD, interval="2s", step_weight=10, threshold=8))
    create(kube_api_client, namespace, BAD, spec(BAD, interval="2s", step_weight=10, threshold=8))

    def mid_rollout() -> bool:
        current = releases(kube_api_client, namespace)
        return (
            len(current) == 2
            and current[GOOD].status.canary_weight >= 10
            and current[BAD].status.failed_checks >= 1
        )

    wait_for(mid_rollout, 60, "both releases to be in analysis", 0.3)
    before = releases(kube_api_client, namespace)
    assert before[GOOD].status.phase.value == "Progressing", story(before[GOOD])
    assert before[BAD].status.phase.value == "Progressing", story(before[BAD])

    restart_apiserver(control_plane, DOWN_SECONDS)

    final = wait_for(
        lambda: all_final(kube_api_client, namespace, [GOOD, BAD]),
        150,
        "the rollouts to finish after the API server restart",
        interval=0.5,
    )
    after = releases(kube_api_client, namespace)
    assert final == {GOOD: "Succeeded", BAD: "Failed"}, (
        f"{final}\n{story(after[GOOD])}\n{story(after[BAD])}\n{engine.log()[-3000:]}"
    )
    assert after[BAD].status.reason.startswith("failed checks threshold reached"), after[
        BAD
    ].status.reason
    assert image_of(kube_api_client, namespace, GOOD) == NEW
    assert image_of(kube_api_client, namespace, BAD) == OLD
    assert canary_leftovers(kube_api_client, namespace) == []
    wait_for(
        lambda: all(
            r.status.notification.delivered_seq == r.status.event_seq
            for r in releases(kube_api_client, namespace).values()
        ),
        30,
        "every event to be delivered",
    )
    for release in releases(kube_api_client, namespace).values():
        assert not outbox_problems(release), outbox_problems(release)
    # the outage really reached the engine, and it lived through it
    assert engine.alive, engine.log()
    log = engine.log()
    assert "API server unreachable" in log, f"the engine never noticed the outage:\n{log[-3000:]}"
