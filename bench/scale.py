"""Scale: N concurrent rollouts against one engine process, N = 10, 100, 500.

For each N a fresh control plane and Prometheus are started; N podinfo apps (Deployment
with one replica, Service, Ingress) are spread over namespaces of at most 100 apps, and
one shared traffic generator (bench.trafficpool) serves 20 requests/s per app. The engine
runs as a child process (``python -m rollout`` via bench.enginehost) under its own user,
so its API requests are counted by the API server as well as by the engine itself.
N CanaryReleases are created (analysis interval 10 s, stepWeight 2 up to 50: 25 steps,
request-success-rate over a 30 s window); once nearly all are Progressing, a window of
``options.window`` seconds is measured:

- tick lag: for every analysis in the window, (time since the release's previous
  analysis) - interval, from the analysis times the engine keeps in status.history.
  0 means on time; one interval means a whole analysis round was skipped.
- analyses per release per interval: 1.0 when every release is analysed every interval.
- API requests per step: engine requests in the window / analyses in the window, counted
  by the API server (APF FlowSchema of the engine's user) and by the engine (Kube.requests).
- Prometheus queries per step: /api/v1/query requests and PromQL evaluations Prometheus
  served in the window / analyses in the window (nothing else queries it meanwhile).
- engine CPU (% of one core) and RSS; kube-apiserver and etcd CPU for context.

A point that cannot reach steady state in time is measured anyway and says so.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from kubernetes import client as k8s

from bench import procstat
from bench.core import Options, Progress, Result, now_iso, percentile, ratio
from bench.engine import BenchEngine
from bench.env import (
    Cluster,
    Prometheus,
    counter_delta,
    scratch,
    wait_until,
)
from bench.scenario import analysis, create_release, release_spec
from bench.trafficpool import TrafficPool
from bench.watch import RELEASES_PATH, Watcher, status_of

NAME = "scale"
TITLE = "Scale: tick lag, API and Prometheus requests per step, CPU and RSS vs rollout count"
INTERVAL = 10.0
APPS_PER_NAMESPACE = 100
RPS_PER_APP = 20
STEADY_SHARE = 0.95
SETTLE_TIMEOUT = 900.0


def run(options: Options, progress: Progress) -> Result:
    """Measure each count in ``options.counts`` (10 and 50 with --quick)."""
    result = Result(NAME, TITLE, started_at=now_iso())
    result.params = {
        "counts": list(options.counts),
        "window_s": options.window,
        "interval_s": INTERVAL,
        "analysis": "request-success-rate >= 99 over 30s; stepWeight 2, maxWeight 50",
        "rps_per_app": RPS_PER_APP,
        "replicas_per_app": 1,
        "engine": "python -m rollout (no leader election), default max tick 10 s",
    }
    started = time.monotonic()
    points: list[dict[str, Any]] = []
    for count in options.counts:
        progress(f"--- {count} rollouts ---")
        try:
            point = _measure(count, options, progress)
        except Exception as exc:
            result.errors.append(f"{count} rollouts: {type(exc).__name__}: {exc}")
            progress(f"{count} rollouts failed: {exc}")
            continue
        points.append(point)
        _rows(result, point)
    _growth(result, points)
    result.details = {"points": points}
    result.seconds = time.monotonic() - started
    return result


def _measure(count: int, options: Options, progress: Progress) -> dict[str, Any]:
    point: dict[str, Any] = {"count": count}
    with (
        scratch(options.workdir, f"{NAME}-{count}") as workdir,
        Cluster(workdir, progress) as cluster,
    ):
        namespaces = [f"bench-scale-{i}" for i in range(math.ceil(count / APPS_PER_NAMESPACE))]
        apps = [(namespaces[i // APPS_PER_NAMESPACE], f"app{i:03d}") for i in range(count)]
        # stable + canary pods, and surge pods while the last ones promote; 500 per node
        nodes_needed = math.ceil(3 * count / 500)
        if nodes_needed > 1:
            cluster.add_nodes(nodes_needed - 1)
        identity = cluster.identity("bench-engine")
        prometheus = Prometheus(workdir, progress).start()
        for namespace in namespaces:
            cluster.create_namespace(namespace)
        t = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda a: cluster.deploy_app(a[0], a[1], replicas=1), apps))
        names = {a for _, a in apps}
        wait_until(
            lambda: cluster.ready_deployments(namespaces, names) == count,
            600,
            f"{count} apps to roll out",
            interval=2,
        )
        point["apps_ready_s"] = round(time.monotonic() - t, 1)
        progress(f"{count} apps deployed and ready in {point['apps_ready_s']}s")
        pool_traffic = TrafficPool(cluster.client, prometheus.server, apps, rps=RPS_PER_APP)
        pool_traffic.start()
        engine = BenchEngine(identity.kubeconfig, prometheus.url, workdir)
        releases: Watcher | None = None
        try:
            releases = Watcher(cluster.client, RELEASES_PATH, status_of).start()
            engine.start()
            block = analysis(
                f"{INTERVAL:g}s", threshold=5, step_weight=2, max_weight=50, window="30s"
            )
            t = time.monotonic()
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(
                    pool.map(
                        lambda a: create_release(
                            cluster.client, a[0], a[1], release_spec(a[1], block)
                        ),
                        apps,
                    )
                )
            progress(f"created {count} CanaryReleases in {time.monotonic() - t:.1f}s")
            point.update(_settle(releases, apps, progress))
            point.update(
                _window(cluster, prometheus, engine, identity.flow_schema, options.window, progress)
            )
            point.update(_analyses(cluster, namespaces, point["window_wall"], engine))
            point["phases_at_end"] = _phases(releases, apps)
            point["traffic_pool"] = {
                "lists": pool_traffic.lists,
                "list_errors": pool_traffic.list_errors,
                "slow_ticks": pool_traffic.slow_ticks,
            }
        finally:
            if releases is not None:
                releases.stop()
            engine.stop()
            pool_traffic.stop()
            prometheus.stop()
        point["engine_log_tail"] = engine.log_tail(15)
    point["load_average"] = list(os.getloadavg())
    return point


def _phases(releases: Watcher, apps: list[tuple[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in apps:
        phase = (releases.value(*key) or {}).get("phase", "(none)")
        counts[phase] = counts.get(phase, 0) + 1
    return counts


def _settle(releases: Watcher, apps: list[tuple[str, str]], progress: Progress) -> dict[str, Any]:
    """Wait until nearly every release is Progressing (or give up after a while)."""
    started = time.monotonic()
    last_report = 0.0
    while True:
        phases = _phases(releases, apps)
        progressing = phases.get("Progressing", 0)
        now = time.monotonic()
        if progressing >= STEADY_SHARE * len(apps):
            break
        if now - started > SETTLE_TIMEOUT:
            progress(f"not settled after {SETTLE_TIMEOUT:.0f}s: {phases}; measuring anyway")
            break
        if now - last_report > 15:
            progress(f"waiting for releases to progress: {phases}")
            last_report = now
        time.sleep(1)
    seconds = time.monotonic() - started
    progress(f"{progressing}/{len(apps)} Progressing after {seconds:.0f}s")
    # a few more intervals: every release has analysed at least once and a backlog of
    # first analyses (the engine may be behind) does not count as steady state
    time.sleep(3 * INTERVAL)
    return {"settle_s": round(seconds, 1), "progressing_at_start": progressing}


def _window(
    cluster: Cluster,
    prometheus: Prometheus,
    engine: BenchEngine,
    flow_schema: str,
    seconds: float,
    progress: Progress,
) -> dict[str, Any]:
    pids = cluster.component_pids()
    api_pid, etcd_pid = pids["kube-apiserver"], pids["etcd"]
    client_before = engine.flushed_client_requests()
    api_before = cluster.counters()
    prom_before = prometheus.query_counts()
    engine_before = engine.snapshot()
    apiserver_before, etcd_before = procstat.snapshot(api_pid), procstat.snapshot(etcd_pid)
    assert engine.sampler is not None
    engine.sampler.reset()
    wall_start = time.time()
    progress(f"measuring for {seconds:.0f}s")
    time.sleep(seconds)
    wall_end = time.time()
    # same order as before the window, so the two counts cover the same span
    client_after = engine.flushed_client_requests()
    api_after = cluster.counters()
    prom_after = prometheus.query_counts()
    engine_after = engine.snapshot()
    apiserver_after, etcd_after = procstat.snapshot(api_pid), procstat.snapshot(etcd_pid)
    usage = procstat.usage(engine_before, engine_after, engine.sampler.max_rss)
    return {
        "window_wall": [wall_start, wall_end],
        "window_s": round(wall_end - wall_start, 2),
        "engine_cpu_percent": round(usage.cpu_percent, 1),
        "engine_rss_mib": round(usage.rss_bytes / 2**20, 1),
        "engine_max_rss_mib": round(usage.max_rss_in_window / 2**20, 1),
        "engine_peak_rss_mib": round(usage.peak_rss_bytes / 2**20, 1),
        "apiserver_cpu_percent": round(
            procstat.usage(apiserver_before, apiserver_after).cpu_percent, 1
        ),
        "etcd_cpu_percent": round(procstat.usage(etcd_before, etcd_after).cpu_percent, 1),
        "server_requests": api_after.of_schema(flow_schema) - api_before.of_schema(flow_schema),
        "server_requests_all_clients": api_after.all_requests() - api_before.all_requests(),
        "server_all_clients_by_resource": counter_delta(
            api_before.by_resource(), api_after.by_resource()
        ),
        "client_requests": sum(client_after.values()) - sum(client_before.values()),
        "client_by_resource": counter_delta(
            {k: float(v) for k, v in client_before.items()},
            {k: float(v) for k, v in client_after.items()},
        ),
        "prometheus_http_queries": prom_after[0] - prom_before[0],
        "prometheus_evaluations": prom_after[1] - prom_before[1],
    }


def _wall(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _history(cluster: Cluster, namespaces: list[str]) -> list[list[float]]:
    """Every release's analysis times (wall clock), from status.history."""
    custom = k8s.CustomObjectsApi(cluster.client)
    out = []
    for namespace in namespaces:
        items = custom.list_namespaced_custom_object(
            "canarybot.io", "v1alpha1", namespace, "canaryreleases"
        )["items"]
        for item in items:
            out.append(sorted(_wall(h["at"]) for h in status_of(item).get("history", [])))
    return out


def _analyses(
    cluster: Cluster, namespaces: list[str], window: list[float], engine: BenchEngine
) -> dict[str, Any]:
    """Analysis times from status.history: steps in the window and how late each was.

    An analysis is stamped when its ``advance`` starts but written when it ends, which
    under load is many seconds later: wait until the count for the window stops growing,
    or the analyses still in flight at the end of the window would go uncounted.
    """
    start, end = window
    deadline = time.monotonic() + 180
    previous = -1
    while True:
        history = _history(cluster, namespaces)
        steps = sum(1 for times in history for t in times if start <= t < end)
        if steps == previous or time.monotonic() > deadline:
            break
        previous = steps
        time.sleep(5)
    lags: list[float] = []
    for times in history:
        for before, current in itertools.pairwise(times):
            if start <= current < end:
                lags.append(current - before - INTERVAL)
    advances = [a for a in engine.advances() if start <= a["t"] < end]
    seconds = [a["seconds"] for a in advances]
    # when, within the interval, advances start: all in one second = every release ticks
    # at the same moment (bursts) rather than spread over the interval
    phases = [0] * int(INTERVAL)
    for a in advances:
        phases[int((a["t"] - a["seconds"] - start) % INTERVAL)] += 1
    return {
        "steps": steps,
        "tick_lag_s": lags,
        "advances": len(advances),
        "advance_p50_ms": round((percentile(seconds, 0.5) or 0) * 1000, 1),
        "advance_p99_ms": round((percentile(seconds, 0.99) or 0) * 1000, 1),
        "advance_starts_per_second_of_interval": phases,
        "busiest_second_share": round(max(phases) / len(advances), 2) if advances else None,
    }


def _rows(result: Result, point: dict[str, Any]) -> None:
    n = point["count"]
    case = f"{n} rollouts"
    steps = point["steps"]
    lags = point["tick_lag_s"]
    expected = n * point["window_s"] / INTERVAL
    result.add(case, "tick lag p50", percentile(lags, 0.5), "s", f"n={len(lags)}")
    result.add(case, "tick lag p99", percentile(lags, 0.99), "s", f"interval {INTERVAL:g}s")
    result.add(case, "tick lag max", max(lags) if lags else None, "s")
    result.add(
        case,
        "analyses per release per interval",
        ratio(steps, expected),
        "",
        f"{steps} analyses in {point['window_s']:.0f}s; 1.0 = every interval",
    )
    result.add(case, "API requests per step (server)", ratio(point["server_requests"], steps), "")
    result.add(case, "API requests per step (client)", ratio(point["client_requests"], steps), "")
    result.add(
        case,
        "Prometheus queries per step",
        ratio(point["prometheus_http_queries"], steps),
        "",
        f"evaluations/step {ratio(point['prometheus_evaluations'], steps) or 0:.2f}",
    )
    result.add(case, "engine CPU", point["engine_cpu_percent"], "% of a core")
    result.add(
        case,
        "engine CPU / RSS per rollout",
        ratio(point["engine_cpu_percent"], n),
        "% of a core",
        f"RSS {ratio(point['engine_rss_mib'], n) or 0:.3f} MiB per rollout (RSS / N, floor included)",
    )
    by_kind = point.get("client_by_resource", {})
    result.add(
        case,
        "engine requests per step by kind",
        None,
        "",
        ", ".join(
            f"{kind} {ratio(count, steps) or 0:.2f}"
            for kind, count in sorted(by_kind.items())
            if not kind.startswith("WATCH")
        )[:120],
    )
    result.add(
        case,
        "engine RSS (end / max in window)",
        point["engine_rss_mib"],
        "MiB",
        f"max {point['engine_max_rss_mib']} MiB",
    )
    result.add(
        case,
        "advance duration p50 / p99",
        point["advance_p50_ms"],
        "ms",
        f"p99 {point['advance_p99_ms']} ms",
    )
    result.add(
        case,
        "advances starting in the busiest second",
        point["busiest_second_share"],
        "share",
        f"of each {INTERVAL:g}s interval; 0.1 = evenly spread",
    )
    result.add(
        case,
        "kube-apiserver / etcd CPU",
        point["apiserver_cpu_percent"],
        "% of a core",
        f"etcd {point['etcd_cpu_percent']}%",
    )
    result.add(
        case,
        "releases Progressing when measured",
        point["progressing_at_start"],
        "",
        f"reached after {point['settle_s']:.0f}s; apps ready in {point['apps_ready_s']:.0f}s",
    )
    load = point.get("load_average") or [0.0, 0.0, 0.0]
    result.add(case, "machine load average at the end (1 / 5 min)", round(load[0], 2), "", f"5 min {load[1]:.2f}")


def _growth(result: Result, points: list[dict[str, Any]]) -> None:
    """How cost grows with N: per-rollout CPU and per-step requests, relative to the first N."""
    if len(points) < 2:
        return
    base = points[0]
    base_cpu = ratio(base["engine_cpu_percent"], base["count"])
    for point in points[1:]:
        case = f"{point['count']} vs {base['count']}"
        cpu_per = ratio(point["engine_cpu_percent"], point["count"])
        result.add(
            case,
            "engine CPU per rollout, ratio",
            ratio(cpu_per, base_cpu),
            "x",
            "1.0 = linear growth",
        )
        result.add(
            case,
            "engine RSS, ratio",
            ratio(point["engine_rss_mib"], base["engine_rss_mib"]),
            "x",
            f"{point['count'] / base['count']:g}x the rollouts",
        )
        result.add(
            case,
            "API requests per step, ratio",
            ratio(
                ratio(point["server_requests"], point["steps"]),
                ratio(base["server_requests"], base["steps"]),
            ),
            "x",
        )
        result.add(
            case,
            "tick lag p99, difference",
            (percentile(point["tick_lag_s"], 0.99) or 0)
            - (percentile(base["tick_lag_s"], 0.99) or 0),
            "s",
        )
