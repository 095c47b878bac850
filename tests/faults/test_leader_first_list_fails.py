"""The engine wins the Lease, but its first list of CanaryReleases fails; then it may list.

This is what an API server that is still starting (or briefly overloaded) does to a
replica that just became leader: the Lease write succeeds, the LIST that follows does
not. Here the failure is made deterministic with RBAC: the engine's ServiceAccount may
use the Lease but not list CanaryReleases until the test grants it. A leader must keep
trying (or give the Lease up so another replica can lead) and run the rollout once the
list works.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import client as k8s

from sandbox.controlplane import ControlPlane
from sandbox.prometheus import PrometheusServer
from tests.faults.helpers import (
    create,
    lease_holder,
    releases,
    restricted_engine,
    rules,
    set_rules,
    spec,
)
from tests.fixtures.engine import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

APP = "app"


def lease_moved_on(api: k8s.ApiClient, namespace: str, identity: str) -> bool:
    """Whether at least one renew period has passed since ``identity`` acquired the Lease.

    True once the holder renewed it, let it expire, or gave it up: the first LIST (made
    right after acquiring) has certainly been answered by then.
    """
    lease = k8s.CoordinationV1Api(api).read_namespaced_lease("canary-bot-leader", namespace).spec
    if lease.holder_identity != identity:
        return True
    renewed, acquired = lease.renew_time, lease.acquire_time
    if renewed is None or acquired is None:
        return True
    expired = datetime.now(UTC) - renewed > timedelta(seconds=lease.lease_duration_seconds)
    return bool(renewed > acquired or expired)


class NeverRecovered(AssertionError):
    """The leader never ran the rollout after its first LIST failed."""


def test_a_leader_whose_first_list_fails_recovers_once_it_can_list(
    kube_api_client: k8s.ApiClient,
    control_plane: ControlPlane,
    prometheus: PrometheusServer,
    crd: None,
    namespace: str,
    apps: Callable[[list[str]], None],
    tmp_path: Path,
) -> None:
    apps([APP])
    engine = restricted_engine(
        kube_api_client, control_plane, prometheus.url, namespace, tmp_path, rules(False)
    )
    engine.start()
    try:
        wait_for(lambda: lease_holder(kube_api_client, namespace) == "engine", 30, "the Lease")
        wait_for(
            lambda: lease_moved_on(kube_api_client, namespace, "engine"),
            30,
            "a renew period to pass after the engine took the Lease",
        )
        set_rules(kube_api_client, namespace, rules(True))
        create(kube_api_client, namespace, APP, spec(APP, step_weight=50))
        deadline = time.monotonic() + 25
        while releases(kube_api_client, namespace)[APP].status.phase.value == "Initializing":
            if time.monotonic() > deadline:
                raise NeverRecovered(
                    "the engine did not pick the release up within 25s of being allowed to "
                    f"list CanaryReleases; Lease holder {lease_holder(kube_api_client, namespace)!r}"
                    f"\n{engine.log()[-2000:]}"
                )
            time.sleep(0.5)
    finally:
        engine.stop()
