"""The leader fails one Lease renewal, steps down, and wins the Lease back a moment later.

A slow or briefly refusing API server does this. Stepping down stops the CanaryRelease
watch; leading again starts one. Afterwards the engine must hold exactly one watch, as
before the flap: each extra one repeats every event to the engine and costs the API
server a long-running request for as long as the process lives.

The renewal failure is made deterministic with RBAC (the engine's ServiceAccount loses
``update`` on Leases for a moment); the watches are counted by the API server
(``apiserver_longrunning_requests``, namespace-scoped ones: only this test's engine
watches CanaryReleases that way while it runs).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s

from sandbox.controlplane import ControlPlane
from sandbox.prometheus import PrometheusServer
from tests.faults.helpers import restricted_engine, rules, set_rules
from tests.fixtures.engine import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

# The engine's watch requests time out after 30 s; a watch left over from before the
# flap has ended by then unless something keeps renewing it.
WATCH_TIMEOUT = 30


def release_watches(api: k8s.ApiClient) -> float:
    """Namespace-scoped CanaryRelease watches the API server is serving now.

    The engine runs with ``--namespace``, so its watch is namespace-scoped; the controller
    manager's garbage collector also watches CanaryReleases, cluster-wide, from whenever
    its discovery notices the CRD, which must not count here.
    """
    response = api.call_api(
        "/metrics",
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    total = 0.0
    for line in response.data.decode().splitlines():
        if (
            line.startswith("apiserver_longrunning_requests{")
            and 'resource="canaryreleases"' in line
            and 'scope="namespace"' in line
            and 'verb="WATCH"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


class ExtraWatches(AssertionError):
    """The engine kept more than one CanaryRelease watch."""


def test_a_leadership_flap_leaves_one_watch(
    kube_api_client: k8s.ApiClient,
    control_plane: ControlPlane,
    prometheus: PrometheusServer,
    crd: None,
    namespace: str,
    tmp_path: Path,
) -> None:
    before = release_watches(kube_api_client)
    engine = restricted_engine(
        kube_api_client, control_plane, prometheus.url, namespace, tmp_path, rules()
    )
    engine.start()
    try:
        wait_for(
            lambda: release_watches(kube_api_client) == before + 1,
            30,
            "the leader's CanaryRelease watch",
        )
        set_rules(kube_api_client, namespace, rules(can_renew_lease=False))
        wait_for(lambda: "lost leadership" in engine.log(), 30, "the leader to step down")
        set_rules(kube_api_client, namespace, rules())
        wait_for(lambda: engine.log().count("became leader") >= 2, 30, "the engine to lead again")
        # one watch again once any leftover stream has timed out
        try:
            wait_for(
                lambda: release_watches(kube_api_client) == before + 1,
                WATCH_TIMEOUT + 15,
                "exactly one CanaryRelease watch after the flap",
                interval=1,
            )
        except pytest.fail.Exception as exc:
            raise ExtraWatches(
                f"{release_watches(kube_api_client) - before:g} watches after one flap\n"
                f"{exc}\n{engine.log()[-2000:]}"
            ) from None
    finally:
        engine.stop()
