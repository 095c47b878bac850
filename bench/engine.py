"""The engine under measurement: ``python -m rollout`` through ``bench.enginehost``.

:class:`BenchEngine` is the shared :class:`sandbox.engine_process.EngineProcess` run
through the host module, which writes the engine's client-side request counts and every
``advance`` it made to ``engine-stats/``, and sampled for RSS while it runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Self

from bench import procstat
from sandbox.engine_process import EngineProcess
from sandbox.polling import wait_for


class BenchEngine(EngineProcess):
    """The rollout engine as a child process, with its request counts and advances."""

    def __init__(
        self,
        kubeconfig: Path,
        prometheus_url: str,
        workdir: Path,
        *,
        identity: str = "bench-engine",
        namespace: str | None = None,
        leader_election: bool = False,
        lease_namespace: str = "default",
        log_level: str = "INFO",
    ) -> None:
        args = [
            "--kubeconfig", str(kubeconfig),
            "--prometheus-url", prometheus_url,
            "--identity", identity,
            "--lease-namespace", lease_namespace,
            "--log-level", log_level,
        ]  # fmt: skip
        if namespace:
            args += ["--namespace", namespace]
        if not leader_election:
            args.append("--no-leader-election")
        self.stats_dir = workdir / "engine-stats"
        super().__init__(
            "engine",
            args,
            workdir,
            {"PYTHONUNBUFFERED": "1"},
            module="bench.enginehost",
            module_args=["--stats-dir", str(self.stats_dir), "--"],
        )
        self.sampler: procstat.RssSampler | None = None

    def start(self, *, wait: bool = True, timeout: float = 60) -> Self:
        """Start the engine, wait until it says it runs, and sample its memory."""
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        super().start(wait=wait, timeout=timeout)
        self.sampler = procstat.RssSampler(self.pid).start()
        return self

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop sampling, then SIGTERM (the engine hands its Lease back), SIGKILL later."""
        if self.sampler is not None:
            self.sampler.stop()
        return super().stop(timeout)

    def snapshot(self) -> procstat.ProcSnapshot:
        """CPU and memory now."""
        return procstat.snapshot(self.pid)

    def client_requests(self) -> dict[str, int]:
        """Client-side request counts (``Kube.requests``) as last written by the engine."""
        path = self.stats_dir / "requests.json"
        try:
            data: dict[str, int] = json.loads(path.read_text())["requests"]
            return data
        except (FileNotFoundError, ValueError, KeyError):
            return {}

    def flushed_client_requests(self) -> dict[str, int]:
        """Client-side counts once the engine has written them after this call."""
        path = self.stats_dir / "requests.json"
        since = time.time()
        wait_for(
            lambda: path.exists() and json.loads(path.read_text() or "{}").get("at", 0) > since,
            15,
            "the engine to write its request counts",
        )
        return self.client_requests()

    def advances(self) -> list[dict[str, Any]]:
        """Every ``advance`` the engine reported so far."""
        path = self.stats_dir / "advances.jsonl"
        try:
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []
