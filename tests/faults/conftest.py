"""Fixtures for fault tests: the engine as a process that can be killed, many apps with traffic.

- ``engines``: starts ``python -m rollout`` processes (each a separate OS process with
  its own log) and stops whatever is left at teardown.
- ``apps``: deploys podinfo-shaped apps in the test's namespace and waits until they run.
- ``traffic_for``: one traffic simulator per app, scraped by the session's Prometheus;
  scrape slots are acquired concurrently so twenty simulators cost one target-discovery
  round trip rather than twenty.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from sandbox.controlplane import ControlPlane
from sandbox.prometheus import PrometheusServer, ScrapeSlot
from sandbox.sample_app import deploy_podinfo
from sandbox.traffic import TrafficSimulator
from tests.fixtures.engine import wait_for

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "rollout engine running as"


class EngineProcess:
    """One ``python -m rollout`` process; restartable, every run logged to its own file."""

    def __init__(
        self, name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.args = args
        self.log_dir = log_dir
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        """The current run's log."""
        return self.log_dir / f"{self.name}.{self.runs}.log"

    def start(self) -> EngineProcess:
        """Start a new run and wait until the engine says it is running."""
        assert not self.alive, f"engine {self.name} is already running"
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env["PYTHONPATH"] = str(REPO)
        env.update(self.env)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rollout", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
            )
        wait_for(
            lambda: self._running_or_dead(),
            60,
            f"engine {self.name} to start (log: {self.log_path})",
        )
        return self

    def _running_or_dead(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(
                f"engine {self.name} exited with code {self.process.returncode}:\n{self.log()}"
            )
        return READY_LINE in self.current_log()

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no Lease hand-back, like a node dying."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets and state but runs no instruction."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself (e.g. at a failpoint); its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # in case a test left it frozen
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def current_log(self) -> str:
        """The current run's log."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log(self) -> str:
        """Every run's log, oldest first."""
        parts = []
        for run in range(1, self.runs + 1):
            path = self.log_dir / f"{self.name}.{run}.log"
            if path.exists():
                parts.append(f"--- {self.name} run {run} ---\n" + path.read_text(errors="replace"))
        return "\n".join(parts)


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
