"""A leader that is cut off (or frozen) past its Lease never acts again once it returns.

Two engines, each its own ServiceAccount; the API server counts each one's writes and
reads under its own FlowSchema. The leader is either partitioned from the API server by
a TCP proxy while its process keeps running (the dangerous case: its renewals and writes
hang, and would land after the standby took over), or frozen with SIGSTOP. The standby
must take the Lease and advance the release; once the old leader is back (the proxy
forwards again, or SIGCONT) and talking to the API server, the server must have received
no write from it at all, and its log must say it stepped down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest
from kubernetes import client as k8s

from sandbox.controlplane import ControlPlane
from sandbox.prometheus import PrometheusServer
from tests.faults.conftest import EngineFactory, EngineProcess, TrafficFor
from tests.faults.helpers import (
    NEW,
    all_final,
    canary_leftovers,
    counted_engine_account,
    create,
    delete_flow_schemas,
    dispatched,
    image_of,
    lease_holder,
    outbox_problems,
    releases,
    spec,
    story,
)
from tests.faults.partition import PartitionProxy
from tests.fixtures.engine import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

APP = "app0"
# python -m rollout derives a 4 s renew deadline and a 0.8 s retry period from this
LEASE_SECONDS = 6


def weight(api: k8s.ApiClient, namespace: str) -> int:
    """The release's stored canary weight (0 before it exists)."""
    release = releases(api, namespace).get(APP)
    return release.status.canary_weight if release is not None else 0


@pytest.mark.parametrize("fault", ["partition", "freeze"])
def test_a_leader_back_from_a_partition_or_freeze_makes_no_write_and_steps_down(
    kube_api_client: k8s.ApiClient,
    control_plane: ControlPlane,
    namespace: str,
    apps: Callable[[list[str]], None],
    traffic_for: TrafficFor,
    prometheus: PrometheusServer,
    engines: EngineFactory,
    tmp_path: Path,
    fault: str,
) -> None:
    api = kube_api_client
    apps([APP])
    traffic_for(prometheus, namespace, [APP], rps=20, tick=0.5)
    target = urlparse(control_plane.server)
    proxy = PartitionProxy(str(target.hostname), int(target.port or 443))
    schemas: list[str] = []
    try:
        kubeconfigs = {}
        for name in ("engine-a", "engine-b"):
            through = proxy.address if name == "engine-a" else control_plane.server
            config, counted = counted_engine_account(api, control_plane, namespace, name, through)
            schemas += counted
            kubeconfigs[name] = tmp_path / f"{name}.kubeconfig"
            kubeconfigs[name].write_text(json.dumps(config))
        writes_a, reads_a = f"{namespace}-engine-a-writes", f"{namespace}-engine-a-reads"

        def start(name: str) -> EngineProcess:
            return engines(
                name,
                namespace=namespace,
                leader_election=True,
                lease_seconds=LEASE_SECONDS,
                kubeconfig=kubeconfigs[name],
            )

        leader = start("engine-a")
        wait_for(lambda: lease_holder(api, namespace) == "engine-a", 30, "engine-a to lead")
        standby = start("engine-b")
        # 10 steps of 5 % every 3 s: still progressing long after the fault
        create(api, namespace, APP, spec(APP, interval="3s", step_weight=5, max_weight=50))
        wait_for(lambda: weight(api, namespace) >= 10, 90, "engine-a to advance the release")
        assert dispatched(api, writes_a) > 0, "the API server does not count engine-a's writes"

        if fault == "partition":
            proxy.cut()
        else:
            leader.freeze()
        faulted = time.monotonic()
        wait_for(
            lambda: lease_holder(api, namespace) == "engine-b",
            60,
            f"engine-b to take the Lease after engine-a's {fault}",
            interval=0.2,
        )
        took_over = weight(api, namespace)
        wait_for(
            lambda: weight(api, namespace) > took_over or all_final(api, namespace, [APP]),
            60,
            "engine-b to advance the release",
            interval=0.2,
        )
        before = dispatched(api, writes_a)
        reads_before = dispatched(api, reads_a)
        if fault == "partition":
            proxy.heal()
        else:
            leader.thaw()
        back = time.monotonic()
        # back and talking to the API server (it reads the Lease every 0.8 s)
        wait_for(
            lambda: dispatched(api, reads_a) >= reads_before + 10,
            60,
            "engine-a to reach the API server again",
        )
        wait_for(
            lambda: "lost leadership as engine-a" in leader.log(),
            30,
            "engine-a to say it stepped down",
        )
        after = dispatched(api, writes_a)
        assert after == before, (
            f"engine-a made {after - before} write(s) after its {fault} "
            f"({back - faulted:.1f}s long) although engine-b leads:\n{leader.current_log()}"
        )
        assert lease_holder(api, namespace) == "engine-b"
        assert leader.alive, leader.log()
        assert leader.log().count("became leader as engine-a") == 1, leader.log()

        final = wait_for(
            lambda: all_final(api, namespace, [APP]), 120, "engine-b to finish the rollout"
        )
        assert final == {APP: "Succeeded"}, story(releases(api, namespace)[APP])
        assert dispatched(api, writes_a) == before, "engine-a wrote while engine-b finished"
        assert image_of(api, namespace, APP) == NEW
        assert canary_leftovers(api, namespace) == []
        wait_for(
            lambda: not outbox_problems(releases(api, namespace)[APP]),
            30,
            "every event to be delivered once",
        )
        assert "became leader as engine-b" in standby.log()
    finally:
        proxy.close()
        delete_flow_schemas(api, schemas)
