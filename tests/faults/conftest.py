"""Fixtures for fault tests: the engine as a process that can be killed, many apps with traffic.

- ``engines``: starts ``python -m rollout`` processes (each a separate OS process with
  its own log) and stops whatever is left at teardown.
- ``apps``: deploys podinfo-shaped apps in the test's namespace and waits until they run.
- ``traffic_for``: one traffic simulator per app, scraped by the session's Prometheus;
  scrape slots are acquired concurrently so twenty simulators cost one target-discovery
  round trip rather than twenty.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from sandbox.controlplane import ControlPlane
from sandbox.engine_process import EngineProcess
from sandbox.prometheus import PrometheusServer, ScrapeSlot
from sandbox.sample_app import deploy_podinfo
from sandbox.traffic import TrafficSimulator
from tests.fixtures.engine import wait_for

EngineFactory = Callable[..., EngineProcess]


@pytest.fixture
def engines(
    control_plane: ControlPlane, prometheus: PrometheusServer, crd: None, tmp_path: Path
) -> Iterator[EngineFactory]:
    """Start engine processes: ``engines(name, namespace=…, leader_election=…, …)``."""
    started: list[EngineProcess] = []

    def start(
        name: str,
        *,
        namespace: str,
        leader_election: bool = False,
        lease_seconds: int = 6,
        prometheus_url: str | None = None,
        run: bool = True,
        kubeconfig: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> EngineProcess:
        args = [
            "--kubeconfig",
            str(kubeconfig or control_plane.kubeconfig),
            "--prometheus-url",
            prometheus_url or prometheus.url,
            "--namespace",
            namespace,
            "--identity",
            name,
            "--lease-namespace",
            namespace,
            "--lease-seconds",
            str(lease_seconds),
        ]
        if not leader_election:
            args.append("--no-leader-election")
        engine = EngineProcess(name, args, tmp_path, env)
        started.append(engine)
        return engine.start() if run else engine

    yield start
    for engine in started:
        engine.stop()


@pytest.fixture
def apps(kube_api_client: k8s.ApiClient, namespace: str) -> Callable[[list[str]], None]:
    """Deploy podinfo-shaped apps (2 replicas, own host) and wait until all are rolled out."""

    def deploy(names: list[str]) -> None:
        for name in names:
            deploy_podinfo(kube_api_client, namespace, name=name, host=f"{name}.example.com")
        api = k8s.AppsV1Api(kube_api_client)

        def all_ready() -> bool:
            ready = {
                d.metadata.name
                for d in api.list_namespaced_deployment(namespace).items
                if (d.status.ready_replicas or 0) == d.spec.replicas
            }
            return set(names) <= ready

        wait_for(all_ready, 120, f"apps {names} to be ready", interval=0.5)

    return deploy


TrafficFor = Callable[..., dict[str, TrafficSimulator]]


@pytest.fixture
def traffic_for(control_plane: ControlPlane) -> Iterator[TrafficFor]:
    """``traffic_for(prometheus, namespace, names, **settings)``: a simulator per app."""
    running: list[tuple[PrometheusServer, TrafficSimulator, ScrapeSlot]] = []

    def start(
        prometheus: PrometheusServer, namespace: str, names: list[str], **settings: Any
    ) -> dict[str, TrafficSimulator]:
        def one(name: str) -> tuple[str, TrafficSimulator, ScrapeSlot]:
            sim = TrafficSimulator(
                namespace, name, name, 80, kubeconfig=control_plane.kubeconfig, **settings
            )
            sim.start()
            slot = prometheus.acquire_slot(timeout=90)
            slot.attach(sim.render_metrics)
            prometheus.wait_for_target_up(slot.address, timeout=60, since=slot.attached_at)
            return name, sim, slot

        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            results = list(pool.map(one, names))
        for _, sim, slot in results:
            running.append((prometheus, sim, slot))
        return {name: sim for name, sim, _ in results}

    yield start
    for prometheus, sim, slot in reversed(running):
        if prometheus.running:
            prometheus.release_slot(slot)
        else:
            slot.close()
        sim.stop()


def until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """``wait_for`` with a coarser default period (the fault tests poll several objects)."""
    return wait_for(condition, timeout, what, interval=interval)


def elapsed_since(start: float) -> float:
    """Seconds since ``start`` (monotonic), for failure messages."""
    return time.monotonic() - start
