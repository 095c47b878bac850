"""Two engine replicas share one Lease: only the holder acts; when it dies the other takes over.

The standby proves it did nothing through its own log (the engine logs every rollout
event it publishes, and "became leader" when it starts leading). After the leader is
SIGKILLed (no Lease hand-back) the standby must acquire the Lease once it expires, i.e.
within the Lease duration plus one renew period, and finish the rollouts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from kubernetes import client as k8s

from sandbox.prometheus import PrometheusServer
from tests.faults.conftest import EngineFactory, EngineProcess, TrafficFor
from tests.faults.helpers import (
    NEW,
    all_final,
    canary_leftovers,
    create,
    image_of,
    lease_holder,
    outbox_problems,
    releases,
    spec,
    story,
)
from tests.fixtures.engine import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

APPS = ["app0", "app1", "app2"]
LEASE_SECONDS = 6
RENEW_SECONDS = 2.0  # python -m rollout renews every lease/3 seconds, at least 1 s
# Two Python processes and the control plane share two cores: allow a little scheduling
# slack on top of the Lease's own bound before calling the takeover late.
SLACK_SECONDS = 4.0
# The engine logs each published event through this logger (LoggingNotifier).
EVENT_LINE = re.compile(r" INFO canary_bot\.events ")


def acted(engine: EngineProcess) -> list[str]:
    """Rollout events this engine published, from its log."""
    return [line for line in engine.log().splitlines() if EVENT_LINE.search(line)]


def test_only_the_lease_holder_acts_and_the_standby_takes_over(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    apps: Callable[[list[str]], None],
    traffic_for: TrafficFor,
    prometheus: PrometheusServer,
    engines: EngineFactory,
) -> None:
    apps(APPS)
    traffic_for(prometheus, namespace, APPS, rps=20, tick=0.5)
    both = {
        name: engines(name, namespace=namespace, leader_election=True, lease_seconds=LEASE_SECONDS)
        for name in ("engine-a", "engine-b")
    }
    holder = wait_for(
        lambda: lease_holder(kube_api_client, namespace), 30, "one engine to take the Lease"
    )
    assert holder in both, f"the Lease is held by {holder!r}, not one of {sorted(both)}"
    leader = both[holder]
    standby = next(e for name, e in both.items() if name != holder)

    # 5 steps of 10 % at 2 s: long enough to kill the leader in the middle
    for app in APPS:
        create(kube_api_client, namespace, app, spec(app, interval="2s", step_weight=10))

    def progressed() -> bool:
        current = releases(kube_api_client, namespace)
        return len(current) == len(APPS) and all(
            r.status.canary_weight >= 20 for r in current.values()
        )

    wait_for(progressed, 90, "every release to reach weight 20 under the first leader", 0.5)
    assert lease_holder(kube_api_client, namespace) == holder
    assert acted(leader), f"the leader published no events:\n{leader.log()}"
    assert not acted(standby), f"the standby acted while not leading:\n{standby.log()}"
    assert "became leader" not in standby.log(), standby.log()

    leader.kill()
    killed = time.monotonic()
    bound = LEASE_SECONDS + RENEW_SECONDS + SLACK_SECONDS
    wait_for(
        lambda: lease_holder(kube_api_client, namespace) == standby.name,
        bound,
        f"{standby.name} to take the Lease within {LEASE_SECONDS}s lease + "
        f"{RENEW_SECONDS:g}s renew (+{SLACK_SECONDS:g}s slack) after the leader died",
        interval=0.2,
    )
    took_over = time.monotonic() - killed

    final = wait_for(
        lambda: all_final(kube_api_client, namespace, APPS),
        120,
        f"the rollouts to finish under {standby.name} (took the Lease {took_over:.1f}s after the kill)",
    )
    assert final == dict.fromkeys(APPS, "Succeeded"), final
    assert f"became leader as {standby.name}" in standby.log()
    assert acted(standby), f"the new leader published no events:\n{standby.log()}"
    assert [image_of(kube_api_client, namespace, app) for app in APPS] == [NEW] * len(APPS)
    assert canary_leftovers(kube_api_client, namespace) == []

    def delivered() -> bool:
        return all(
            r.status.notification.delivered_seq == r.status.event_seq
            for r in releases(kube_api_client, namespace).values()
        )

    wait_for(delivered, 30, "every event to be delivered by the new leader")
    for release in releases(kube_api_client, namespace).values():
        assert not outbox_problems(release), (outbox_problems(release), story(release))
