"""Prometheus goes away for a while in the middle of two rollouts, then comes back.

While it is down every check fails with a message that says Prometheus could not be
queried and why (never its address), no release is promoted and no weight goes up.
A release whose threshold is reached meanwhile rolls back; one with room to spare
continues once Prometheus answers again (same port, same data directory) and promotes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

import sandbox.prometheus
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
from tests.fixtures.prometheus import TRAFFIC_JOB

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

PATIENT, STRICT = "patient", "strict"
UNREACHABLE = "Prometheus could not be queried: connection failed (connection refused)"


@pytest.fixture
def own_prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    """A Prometheus only this test uses, so stopping it disturbs no other test."""
    server = PrometheusServer(
        tmp_path / "prometheus", prewarm_slots=2, slot_labels={"job": TRAFFIC_JOB}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def restart_on_same_port(
    server: PrometheusServer, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start a stopped server again on ``port`` and its old data directory.

    PrometheusServer picks a free port at every start; the engine was given one URL, so
    the new process must listen where the old one did. The port choice is the module's
    ``free_port``; pinning it is the least intrusive way until the sandbox can restart
    a server in place.
    """
    monkeypatch.setattr(sandbox.prometheus, "free_port", lambda: port)
    server.start()


def test_checks_fail_clearly_while_prometheus_is_down_then_rollouts_resume(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    apps: Callable[[list[str]], None],
    traffic_for: TrafficFor,
    own_prometheus: PrometheusServer,
    engines: EngineFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apps([PATIENT, STRICT])
    sims = traffic_for(own_prometheus, namespace, [PATIENT, STRICT], rps=40, tick=0.5)
    url = own_prometheus.url
    engine = engines("engine", namespace=namespace, prometheus_url=url)
    # 5 steps of 10 % at 1 s; the strict release tolerates 4 failed checks, the patient 60
    create(kube_api_client, namespace, PATIENT, spec(PATIENT, step_weight=10, threshold=60))
    create(kube_api_client, namespace, STRICT, spec(STRICT, step_weight=10, threshold=4))

    def analysed_ok() -> bool:
        current = releases(kube_api_client, namespace)
        return len(current) == 2 and all(
            any(point.ok for point in r.status.history) and r.status.canary_weight < 50
            for r in current.values()
        )

    wait_for(analysed_ok, 60, "both releases to pass an analysis (weight still below 50)", 0.2)
    before = releases(kube_api_client, namespace)
    # "no values" halts while the first canary requests reach Prometheus are normal; the
    # strict release must still have room below its threshold of 4 when the outage starts
    assert before[STRICT].status.failed_checks <= 2, (
        "precondition: the strict release already failed checks before the outage:\n"
        + story(before[STRICT])
    )

    port = int(url.rsplit(":", 1)[1])
    own_prometheus.stop()
    down = time.monotonic()
    weights = {name: r.status.canary_weight for name, r in before.items()}

    def strict_failed() -> bool:
        current = releases(kube_api_client, namespace)
        for name, release in current.items():
            # nothing moves forward while there is nothing to judge by
            assert release.status.canary_weight <= weights[name], (
                f"{name} advanced to {release.status.canary_weight} while Prometheus was down"
            )
            assert release.status.phase.value not in ("Promoting", "Succeeded"), (
                f"{name} promoted while Prometheus was down:\n{story(release)}"
            )
            assert image_of(kube_api_client, namespace, name) == OLD
        return current[STRICT].status.phase.value == "Failed"

    wait_for(strict_failed, 60, "the strict release to roll back while Prometheus is down", 0.5)
    during = releases(kube_api_client, namespace)
    outage = time.monotonic() - down
    for name, release in during.items():
        halts = [
            e.message
            for e in release.status.events
            if e.type == "Halted" and UNREACHABLE in e.message
        ]
        assert halts, f"{name}: no Halted event naming the outage:\n{story(release)}"
        assert all(url not in m and "127.0.0.1" not in m for m in halts), halts
    assert during[PATIENT].status.phase.value == "Progressing", story(during[PATIENT])
    assert any(UNREACHABLE in m.message for m in during[PATIENT].status.metrics), during[
        PATIENT
    ].status.metrics
    strict = during[STRICT]
    assert strict.status.reason.startswith("failed checks threshold reached 4"), (
        strict.status.reason
    )
    assert UNREACHABLE in strict.status.events[-1].details.get("cause", ""), story(strict)

    restart_on_same_port(own_prometheus, port, monkeypatch)
    assert own_prometheus.url == url
    for sim in sims.values():
        slot = own_prometheus.acquire_slot(timeout=90)
        slot.attach(sim.render_metrics)

    final = wait_for(
        lambda: all_final(kube_api_client, namespace, [PATIENT, STRICT]),
        120,
        f"the patient release to finish after a {outage:.0f}s outage",
    )
    after = releases(kube_api_client, namespace)
    assert final == {PATIENT: "Succeeded", STRICT: "Failed"}, story(after[PATIENT])
    assert image_of(kube_api_client, namespace, PATIENT) == NEW
    assert image_of(kube_api_client, namespace, STRICT) == OLD
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
    assert engine.alive
