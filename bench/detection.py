"""Detection latency: canary starts answering 50 % 5xx -> rollback complete.

"Rollback complete" is what a user checks: the CanaryRelease phase is Failed and the
canary Ingress routes nothing (weight 0, or deleted). Both are watched; the later of
the two ends the measurement. It starts when the simulator's canary side starts failing.

Two variants run side by side, ``runs`` releases each, every release its own podinfo app
and traffic simulator (20 requests/s):

- threshold: request-success-rate >= 99 %, threshold 5, interval 5 s, 10 s rate window.
  The analysis needs ``threshold`` failed checks, so the bound to compare with is
  threshold x interval = 25 s.
- fast-fail: the same plus ``failFast: {min: 80}``: a value below 80 % rolls back at once.
  With 50 % errors the 10 s window drops below 80 % about 4 s after the errors start.

Errors are injected once a release has advanced to weight >= 10, after a random delay
within one interval, so injection falls at every phase of the analysis cycle.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench.core import Options, Progress, Result, mean, now_iso, percentile, ratio
from bench.engine import BenchEngine
from bench.env import (
    Cluster,
    Prometheus,
    scratch,
    wait_until,
)
from bench.scenario import Traffic, analysis, create_release, release_spec
from bench.watch import INGRESSES_PATH, RELEASES_PATH, Watcher, ingress_weight, status_of

NAME = "detection"
TITLE = "Detection latency: 50 % 5xx on the canary -> rolled back (Failed, weight 0)"
NAMESPACE = "bench-detect"
INTERVAL = 5.0
THRESHOLD = 5
FAIL_FAST_MIN = 80.0
VARIANTS: dict[str, float | None] = {"threshold": None, "fast-fail": FAIL_FAST_MIN}


@dataclass
class Run:
    """One release's measurement."""

    variant: str
    app: str
    injected_weight: int = 0
    seconds: float | None = None
    failed_checks: int = 0
    reason: str = ""
    error: str = ""
    # seconds after injection of each analysis (from status.history), with its verdict
    checks: list[tuple[float, bool]] | None = None


def run(options: Options, progress: Progress) -> Result:
    """Measure ``options.runs`` rollbacks per variant (3 with --quick)."""
    runs = options.runs
    result = Result(NAME, TITLE, started_at=now_iso())
    result.params = {
        "runs_per_variant": runs,
        "interval_s": INTERVAL,
        "threshold": THRESHOLD,
        "rate_window": "10s",
        "fail_fast_min": FAIL_FAST_MIN,
        "error_rate": 0.5,
        "rps_per_app": 20,
        "engine": "python -m rollout (no leader election)",
    }
    started = time.monotonic()
    plan = [
        Run(variant, f"{'ff' if limit else 'th'}{i}")
        for variant, limit in VARIANTS.items()
        for i in range(runs)
    ]
    with scratch(options.workdir, NAME) as workdir, Cluster(workdir, progress) as cluster:
        identity = cluster.identity("bench-engine")
        prometheus = Prometheus(workdir, progress, slots=len(plan)).start()
        traffic = Traffic(prometheus.server, str(cluster.kubeconfig))
        engine = BenchEngine(identity.kubeconfig, prometheus.url, workdir)
        ingresses = releases = None
        try:
            cluster.create_namespace(NAMESPACE)
            for item in plan:
                cluster.deploy_app(NAMESPACE, item.app, replicas=2)
            names = {r.app for r in plan}
            wait_until(
                lambda: cluster.ready_deployments([NAMESPACE], names) == len(names),
                180,
                "the apps to roll out",
            )
            traffic.start([(NAMESPACE, r.app) for r in plan], rps=20)
            ingresses = Watcher(cluster.client, INGRESSES_PATH, ingress_weight).start()
            releases = Watcher(cluster.client, RELEASES_PATH, status_of).start()
            engine.start()
            progress(f"engine pid {engine.pid}; {len(plan)} releases")
            for item in plan:
                block = analysis(
                    f"{INTERVAL:g}s",
                    threshold=THRESHOLD,
                    step_weight=5,
                    max_weight=50,
                    window="10s",
                    fail_fast=VARIANTS[item.variant],
                )
                create_release(cluster.client, NAMESPACE, item.app, release_spec(item.app, block))
            threads = [
                threading.Thread(
                    target=_measure, args=(item, traffic, ingresses, releases, progress)
                )
                for item in plan
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            for watcher in (ingresses, releases):
                if watcher is not None:
                    watcher.stop()
            engine.stop()
            traffic.stop()
            prometheus.stop()

    bound = THRESHOLD * INTERVAL
    for variant in VARIANTS:
        done = [r for r in plan if r.variant == variant and r.seconds is not None]
        seconds = [r.seconds for r in done if r.seconds is not None]
        case = f"{variant} (n={len(seconds)})"
        result.add(case, "injection -> rolled back, p50", percentile(seconds, 0.5), "s")
        result.add(case, "injection -> rolled back, max", max(seconds) if seconds else None, "s")
        result.add(case, "injection -> rolled back, mean", mean(seconds), "s")
        result.add(
            case,
            "mean / (threshold x interval)",
            ratio(mean(seconds), bound),
            "x",
            f"threshold x interval = {THRESHOLD} x {INTERVAL:g}s = {bound:g}s",
        )
        result.add(
            case,
            "failed checks counted at rollback, mean",
            mean([float(r.failed_checks) for r in done]),
            "",
        )
        for r in plan:
            if r.variant == variant and r.error:
                result.errors.append(f"{variant} {r.app}: {r.error}")
    result.details = {"runs": [r.__dict__ for r in plan], "bound_s": bound}
    result.seconds = time.monotonic() - started
    return result


def _measure(
    item: Run, traffic: Traffic, ingresses: Watcher, releases: Watcher, progress: Progress
) -> None:
    canary = f"{item.app}-canary"
    try:
        change = ingresses.wait_for(NAMESPACE, canary, lambda w: bool(w and w >= 10), timeout=240)
        phase = (releases.value(NAMESPACE, item.app) or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            item.error = f"release was already {phase} before the errors started"
            return
        time.sleep(random.uniform(0, INTERVAL))
        item.injected_weight = int(change.value)
        traffic.sims[(NAMESPACE, item.app)].set_side("canary", error_rate=0.5)
        injected = time.monotonic()
        failed = releases.wait_for(
            NAMESPACE,
            item.app,
            lambda s: bool(s) and s.get("phase") in ("Failed", "Succeeded"),
            after=injected,
            timeout=240,
        )
        status: dict[str, Any] = failed.value
        if status.get("phase") != "Failed":
            item.error = f"ended {status.get('phase')} although errors were injected"
            return
        routed_away = failed.at
        if ingresses.value(NAMESPACE, canary):
            routed_away = ingresses.wait_for(
                NAMESPACE, canary, lambda w: not w, after=injected, timeout=60
            ).at
        item.seconds = max(failed.at, routed_away) - injected
        item.failed_checks = int(status.get("failedChecks", 0))
        item.reason = str(status.get("reason", ""))
        # wall-clock analysis times, relative to the injection (history keeps them)
        offset = time.time() - time.monotonic()
        item.checks = [
            (round(_wall(h["at"]) - (injected + offset), 2), bool(h.get("ok")))
            for h in status.get("history", [])
            if _wall(h["at"]) >= injected + offset - INTERVAL
        ]
        progress(
            f"{item.variant} {item.app}: rolled back {item.seconds:.1f}s after injection "
            f"at weight {item.injected_weight} ({item.reason[:60]})"
        )
    except TimeoutError as exc:
        item.error = str(exc)
        progress(f"{item.variant} {item.app}: {exc}")


def _wall(stamp: str) -> float:
    """A status timestamp (``2026-01-01T00:00:00.123000Z``) as a Unix time."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
