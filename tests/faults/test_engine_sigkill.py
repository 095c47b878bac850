"""The engine process is SIGKILLed again and again while 20 rollouts run; each restart resumes.

Releases are created in waves so that the kills land in every phase: initialising,
progressing, halting on errors, promoting, cleaning up. The engine keeps no state of its
own (everything is in the CanaryRelease's status and the cluster), so after each restart
every rollout must still reach the end it would have reached without the kills.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import pytest
from kubernetes import client as k8s

from sandbox.prometheus import PrometheusServer
from tests.faults.conftest import EngineFactory, TrafficFor
from tests.faults.helpers import (
    FINAL,
    NEW,
    OLD,
    all_final,
    canary_leftovers,
    create,
    image_of,
    outbox_problems,
    phases,
    releases,
    spec,
    story,
)
from tests.fixtures.engine import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

APPS = [f"app{i:02d}" for i in range(20)]
BAD = set(APPS[::3])  # 7 of 20 answer half of their requests with 500
WAVE = 5
MIN_KILLS = 5


def test_rollouts_reach_the_right_end_across_repeated_sigkills(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    apps: Callable[[list[str]], None],
    traffic_for: TrafficFor,
    prometheus: PrometheusServer,
    engines: EngineFactory,
) -> None:
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    apps(APPS)
    sims = traffic_for(prometheus, namespace, APPS, rps=20, tick=0.5)
    for app in BAD:
        sims[app].set_side("canary", error_rate=0.5)
    engine = engines("engine", namespace=namespace)

    kills: list[str] = []
    pending = list(APPS)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if pending:
            for app in pending[:WAVE]:
                create(kube_api_client, namespace, app, spec(app, deadline=40))
            pending = pending[WAVE:]
        time.sleep(rng.uniform(0.3, 3.0))
        done = all_final(kube_api_client, namespace, APPS)
        if done is not None and not pending:
            break
        snapshot = phases(kube_api_client, namespace)
        engine.kill()
        kills.append(", ".join(f"{n}={p}" for n, p in sorted(snapshot.items()) if p not in FINAL))
        engine.start()
    else:
        pytest.fail(
            f"rollouts did not finish within 300s (seed {seed}, {len(kills)} kills): "
            f"{phases(kube_api_client, namespace)}\n{engine.log()[-4000:]}"
        )
    assert len(kills) >= MIN_KILLS, (
        f"only {len(kills)} kills happened (seed {seed}): too few to mean much"
    )

    print(f"{len(kills)} kills (FAULT_SEED={seed}); active releases at each:")
    for active in kills:
        print(f"  {active}")

    # every event handed to the notifier, also those of the last steps before a kill
    def delivered() -> bool:
        return all(
            r.status.notification.delivered_seq == r.status.event_seq
            for r in releases(kube_api_client, namespace).values()
        )

    wait_for(delivered, 30, "every release's events to be delivered", interval=0.5)
    engine.stop()

    final = releases(kube_api_client, namespace)
    problems: list[str] = []
    for app in APPS:
        release = final[app]
        phase = release.status.phase.value
        image = image_of(kube_api_client, namespace, app)
        if app in BAD:
            # the outcome is stored before the canary is removed, so a kill anywhere in
            # the rollback keeps its cause (test_crash_points.py checks every step)
            reason = release.status.reason
            if phase != "Failed" or not reason.startswith("failed checks threshold reached"):
                problems.append(f"{app} (5xx): {phase}, reason {reason!r}\n{story(release)}")
            if image != OLD:
                problems.append(f"{app} (5xx): target runs {image}, expected {OLD}")
        else:
            if phase != "Succeeded":
                problems.append(
                    f"{app}: {phase}, reason {release.status.reason!r}\n{story(release)}"
                )
            if image != NEW:
                problems.append(f"{app}: target runs {image}, expected {NEW}")
        problems += outbox_problems(release)
    leftovers = canary_leftovers(kube_api_client, namespace)
    if leftovers:
        problems.append(f"orphaned canary objects: {leftovers}")
    assert not problems, (
        f"seed {seed}, {len(kills)} kills; active releases at each kill:\n"
        + "\n".join(f"  {k}" for k in kills)
        + "\nproblems:\n"
        + "\n".join(problems)
    )
