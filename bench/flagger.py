"""canary-bot and Flagger side by side: same cluster, same Prometheus, same canary.

Flagger is built from its Go module (``go install github.com/fluxcd/flagger/cmd/flagger@
<version>``, binary cached under ~/.cache/canary-bot/flagger/<version>/bin) and run with
``-mesh-provider=nginx -metrics-server=<Prometheus>`` against the benchmark's control
plane, with the CRDs from its own module source (artifacts/flagger/crd.yaml). When it does
not build, the exact error is recorded and only canary-bot is measured.

The scenario, for each tool in turn (the other one is not running): ``apps`` podinfo apps
that promote and ``apps`` apps whose canary starts answering 50 % 5xx once it has weight
20, all at once, with the tutorial's analysis (interval 10 s, threshold 5, stepWeight 10,
maxWeight 50, request-success-rate >= 99 % over a 10 s window, 20 requests/s per app).
10 s is Flagger's shortest interval: Canary.GetAnalysisInterval raises anything below it.
A canary-bot rollout starts when its CanaryRelease is created; a Flagger rollout when the
Deployment's image changes (after Flagger has initialised the Canary: primary Deployment,
Services, canary Ingress). Measured from that moment until every rollout has ended:

- API requests per analysis step, counted by the API server for each tool's own user
  (APF FlowSchema), and by canary-bot itself; a step is an "Advance ..." or "Halt ..."
  Kubernetes Event (both tools emit these words);
- Prometheus queries per step, CPU time and RSS of the process;
- detection latency (errors start -> Failed and weight 0) and healthy rollout duration;
- then, with nothing to do, the idle request rate for a minute.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from bench import procstat
from bench.core import Options, Progress, Result, mean, now_iso, ratio
from bench.engine import BenchEngine
from bench.env import (
    Cluster,
    Identity,
    Prometheus,
    scratch,
    wait_until,
)
from bench.scenario import NEW, Traffic, analysis, create_release, release_spec
from bench.watch import INGRESSES_PATH, Watcher, ingress_weight, status_of
from sandbox.ports import free_port

NAME = "flagger"
TITLE = "canary-bot vs Flagger: API requests per step, CPU, RSS, detection latency"
# Flagger runs analyses at least 10 s apart (it raises shorter intervals to 10 s), so
# both tools get 10 s.
INTERVAL = 10.0
THRESHOLD = 5
IDLE_SECONDS = 60.0
CACHE = Path.home() / ".cache" / "canary-bot" / "flagger"


@dataclass
class ToolRun:
    """What one tool did in the scenario."""

    tool: str
    namespace: str
    healthy: list[str]
    failing: list[str]
    seconds: float = 0.0
    steps: int = 0
    server_requests: float = 0.0
    client_requests: float | None = None
    prometheus_queries: float = 0.0
    cpu_seconds: float = 0.0
    cpu_percent: float = 0.0
    rss_mib: float = 0.0
    max_rss_mib: float = 0.0
    idle_requests_per_min: float = 0.0
    idle_cpu_percent: float = 0.0
    detection_s: dict[str, float] = field(default_factory=dict)
    rollout_s: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def run(options: Options, progress: Progress) -> Result:
    """Build Flagger if needed, then run the scenario with each tool."""
    apps = 2 if options.quick else 3
    result = Result(NAME, TITLE, started_at=now_iso())
    result.params = {
        "flagger_version": options.flagger_version,
        "apps_per_kind": apps,
        "interval_s": INTERVAL,
        "threshold": THRESHOLD,
        "analysis": "stepWeight 10, maxWeight 50, request-success-rate >= 99 over 10s",
        "rps_per_app": 20,
        "idle_window_s": IDLE_SECONDS,
    }
    started = time.monotonic()
    flagger_bin, build_error = build_flagger(options.flagger_version, progress)
    if build_error:
        result.errors.append(build_error)
    runs: list[ToolRun] = []
    with scratch(options.workdir, NAME) as workdir, Cluster(workdir, progress) as cluster:
        prometheus = Prometheus(workdir, progress, slots=4 * apps).start()
        try:
            engine_user = cluster.identity("bench-engine")
            bot = ToolRun(
                "canary-bot",
                "bench-canary-bot",
                [f"ok{i}" for i in range(apps)],
                [f"bad{i}" for i in range(apps)],
            )
            _run_canary_bot(bot, cluster, prometheus, engine_user, workdir, progress)
            runs.append(bot)
            if flagger_bin is not None:
                flagger_user = cluster.identity("bench-flagger")
                flagger = ToolRun(
                    f"flagger {options.flagger_version}",
                    "bench-flagger",
                    [f"ok{i}" for i in range(apps)],
                    [f"bad{i}" for i in range(apps)],
                )
                try:
                    _run_flagger(
                        flagger,
                        flagger_bin,
                        options.flagger_version,
                        cluster,
                        prometheus,
                        flagger_user,
                        workdir,
                        progress,
                    )
                except Exception as exc:
                    flagger.errors.append(f"{type(exc).__name__}: {exc}")
                    progress(f"flagger run failed: {exc}")
                runs.append(flagger)
        finally:
            prometheus.stop()
    for tool in runs:
        _rows(result, tool)
        result.errors += [f"{tool.tool}: {e}" for e in tool.errors]
    result.details = {"runs": [t.__dict__ for t in runs], "flagger_binary": str(flagger_bin)}
    result.seconds = time.monotonic() - started
    return result


# -- building Flagger ------------------------------------------------------------------------------


def build_flagger(version: str, progress: Progress) -> tuple[Path | None, str]:
    """The Flagger binary (built once per version), or None and the build's exact error."""
    gobin = CACHE / version / "bin"
    binary = gobin / "flagger"
    if binary.exists():
        progress(f"using cached Flagger {version}: {binary}")
        return binary, ""
    go = shutil.which("go")
    if go is None:
        return None, "Flagger not built: no `go` on PATH"
    gobin.mkdir(parents=True, exist_ok=True)
    scratch_dir = CACHE / version / "scratch"
    scratch_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=mod", GOBIN=str(gobin))
    command = [go, "install", f"github.com/fluxcd/flagger/cmd/flagger@{version}"]
    progress(f"building Flagger {version} (a cold build takes a few minutes): {' '.join(command)}")
    done = subprocess.run(command, cwd=scratch_dir, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not binary.exists():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        return (
            None,
            f"Flagger {version} did not build (`{' '.join(command)}`, exit {done.returncode}):\n{tail}",
        )
    progress(f"built {binary}")
    return binary, ""


def flagger_crds(version: str) -> Path:
    """artifacts/flagger/crd.yaml in Flagger's module source (Go module cache)."""
    modcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    path = (
        Path(modcache)
        / "github.com"
        / "fluxcd"
        / f"flagger@{version}"
        / "artifacts"
        / "flagger"
        / "crd.yaml"
    )
    if not path.exists():
        raise FileNotFoundError(f"Flagger's CRDs are not at {path}")
    return path


# -- the scenario ------------------------------------------------------------------------------------


def _deploy(cluster: Cluster, tool: ToolRun, service: bool) -> None:
    cluster.create_namespace(tool.namespace)
    names = tool.healthy + tool.failing
    for app in names:
        cluster.deploy_app(tool.namespace, app, replicas=2, service=service)
    wait_until(
        lambda: cluster.ready_deployments([tool.namespace], set(names)) == len(names),
        180,
        f"{tool.tool}'s apps to roll out",
    )


def _inject_when_weight(
    tool: ToolRun, traffic: Traffic, ingresses: Watcher, app: str, injected: dict[str, float]
) -> None:
    """Once ``app``'s canary has weight >= 20, wait a random part of an interval, inject."""
    try:
        ingresses.wait_for(
            tool.namespace, f"{app}-canary", lambda w: bool(w and w >= 20), timeout=300
        )
    except TimeoutError as exc:
        tool.errors.append(f"{app}: {exc}")
        return
    time.sleep(random.uniform(0, INTERVAL))
    traffic.sims[(tool.namespace, app)].set_side("canary", error_rate=0.5)
    injected[app] = time.monotonic()


def _steps(cluster: Cluster, namespace: str) -> int:
    """Analysis steps: "Advance ..." and "Halt ..." Events (counting repeats)."""
    steps = 0
    for event in k8s.CoreV1Api(cluster.client).list_namespaced_event(namespace).items:
        message = event.message or ""
        if message.startswith(("Advance ", "Halt ")):
            steps += event.count or 1
    return steps


def _measure(
    tool: ToolRun,
    cluster: Cluster,
    prometheus: Prometheus,
    identity: Identity,
    pid: int,
    start_rollouts: Any,
    phase_of: Any,
    traffic: Traffic,
    client_requests: Any,
    progress: Progress,
) -> None:
    """Start the rollouts, time detection and completion, and count what the tool used."""
    ingresses = Watcher(cluster.client, INGRESSES_PATH, ingress_weight).start()
    sampler = procstat.RssSampler(pid).start()
    try:
        injected: dict[str, float] = {}
        client_before = client_requests()
        api_before = cluster.counters().of_schema(identity.flow_schema)
        prom_before = prometheus.query_counts()[0]
        cpu_before = procstat.snapshot(pid)
        began = time.monotonic()
        start_rollouts()
        threads = [
            threading.Thread(
                target=_inject_when_weight, args=(tool, traffic, ingresses, app, injected)
            )
            for app in tool.failing
        ]
        for thread in threads:
            thread.start()
        ended: dict[str, float] = {}
        deadline = time.monotonic() + 600
        apps = tool.healthy + tool.failing
        while len(ended) < len(apps) and time.monotonic() < deadline:
            for app in apps:
                if app in ended:
                    continue
                phase = phase_of(app)
                if phase in ("Succeeded", "Failed") and not ingresses.value(
                    tool.namespace, f"{app}-canary"
                ):
                    ended[app] = time.monotonic()
                    tool.outcomes[app] = phase
                    progress(f"{tool.tool} {app}: {phase} after {ended[app] - began:.1f}s")
            time.sleep(0.2)
        for thread in threads:
            thread.join(timeout=1)
        cpu_after = procstat.snapshot(pid)
        prom_after = prometheus.query_counts()[0]
        api_after = cluster.counters().of_schema(identity.flow_schema)
        client_after = client_requests()
        tool.seconds = cpu_after.at - cpu_before.at
        tool.steps = _steps(cluster, tool.namespace)
        tool.server_requests = api_after - api_before
        if client_before is not None and client_after is not None:
            tool.client_requests = client_after - client_before
        tool.prometheus_queries = prom_after - prom_before
        usage = procstat.usage(cpu_before, cpu_after, sampler.max_rss)
        tool.cpu_seconds = usage.cpu_seconds
        tool.cpu_percent = usage.cpu_percent
        tool.rss_mib = usage.rss_bytes / 2**20
        tool.max_rss_mib = usage.max_rss_in_window / 2**20
        for app in tool.failing:
            if app in injected and app in ended:
                tool.detection_s[app] = ended[app] - injected[app]
        for app in tool.healthy:
            if app in ended:
                tool.rollout_s[app] = ended[app] - began
        missing = [a for a in apps if a not in ended]
        if missing:
            tool.errors.append(f"did not end within 600s: {missing}")
        # idle: nothing left to do
        api_idle = cluster.counters().of_schema(identity.flow_schema)
        cpu_idle = procstat.snapshot(pid)
        progress(f"{tool.tool}: measuring {IDLE_SECONDS:.0f}s idle")
        time.sleep(IDLE_SECONDS)
        tool.idle_requests_per_min = (
            (cluster.counters().of_schema(identity.flow_schema) - api_idle) * 60 / IDLE_SECONDS
        )
        tool.idle_cpu_percent = procstat.usage(cpu_idle, procstat.snapshot(pid)).cpu_percent
    finally:
        sampler.stop()
        ingresses.stop()


def _run_canary_bot(
    tool: ToolRun,
    cluster: Cluster,
    prometheus: Prometheus,
    identity: Identity,
    workdir: Path,
    progress: Progress,
) -> None:
    progress("canary-bot: deploying apps")
    _deploy(cluster, tool, service=True)
    traffic = Traffic(prometheus.server, str(cluster.kubeconfig))
    traffic.start([(tool.namespace, a) for a in tool.healthy + tool.failing], rps=20)
    engine = BenchEngine(identity.kubeconfig, prometheus.url, workdir, namespace=tool.namespace)
    custom = k8s.CustomObjectsApi(cluster.client)
    try:
        engine.start()
        block = analysis(f"{INTERVAL:g}s", threshold=THRESHOLD, step_weight=10, max_weight=50)

        def start_rollouts() -> None:
            for app in tool.healthy + tool.failing:
                create_release(cluster.client, tool.namespace, app, release_spec(app, block))

        def phase_of(app: str) -> str:
            obj = custom.get_namespaced_custom_object(
                "canarybot.io", "v1alpha1", tool.namespace, "canaryreleases", app
            )
            return str(status_of(obj).get("phase", ""))

        def client_requests() -> float:
            return float(sum(engine.flushed_client_requests().values()))

        _measure(
            tool, cluster, prometheus, identity, engine.pid, start_rollouts, phase_of, traffic,
            client_requests, progress,
        )  # fmt: skip
    finally:
        engine.stop()
        traffic.stop()


def _canary(app: str, namespace: str) -> dict[str, Any]:
    """The tutorial's Flagger Canary with the benchmark's analysis numbers."""
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": app, "namespace": namespace},
        "spec": {
            "provider": "nginx",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": app},
            "progressDeadlineSeconds": 600,
            "service": {"port": 80, "targetPort": 9898},
            "analysis": {
                "interval": f"{INTERVAL:g}s",
                "threshold": THRESHOLD,
                "maxWeight": 50,
                "stepWeight": 10,
                "metrics": [
                    {
                        "name": "request-success-rate",
                        "thresholdRange": {"min": 99},
                        "interval": "10s",
                    }
                ],
            },
        },
    }


def _run_flagger(
    tool: ToolRun,
    binary: Path,
    version: str,
    cluster: Cluster,
    prometheus: Prometheus,
    identity: Identity,
    workdir: Path,
    progress: Progress,
) -> None:
    names = cluster.install_crds(flagger_crds(version))
    progress(f"installed Flagger CRDs: {', '.join(names)}")
    # Flagger creates the app's Services itself; only the Deployment and Ingress exist
    _deploy(cluster, tool, service=False)
    custom = k8s.CustomObjectsApi(cluster.client)
    for app in tool.healthy + tool.failing:
        custom.create_namespaced_custom_object(
            "flagger.app", "v1beta1", tool.namespace, "canaries", _canary(app, tool.namespace)
        )
    log_path = workdir / "flagger.log"
    command = [
        str(binary),
        f"-kubeconfig={identity.kubeconfig}",
        "-mesh-provider=nginx",
        f"-metrics-server={prometheus.url}",
        f"-namespace={tool.namespace}",
        f"-port={free_port()}",
        "-log-level=info",
        "-enable-leader-election=false",
    ]
    progress(f"starting {' '.join(command)}")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    traffic = Traffic(prometheus.server, str(cluster.kubeconfig))
    try:

        def phase_of(app: str) -> str:
            obj = custom.get_namespaced_custom_object(
                "flagger.app", "v1beta1", tool.namespace, "canaries", app
            )
            return str(status_of(obj).get("phase", ""))

        def initialised() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"flagger exited with {process.returncode}: {_tail(log_path)}")
            return all(phase_of(a) == "Initialized" for a in tool.healthy + tool.failing)

        wait_until(initialised, 300, f"Flagger to initialise the canaries (log {log_path})", 1)
        progress("Flagger initialised every Canary")
        traffic.start([(tool.namespace, a) for a in tool.healthy + tool.failing], rps=20)
        apps_api = k8s.AppsV1Api(cluster.client)

        def start_rollouts() -> None:
            for app in tool.healthy + tool.failing:
                apps_api.patch_namespaced_deployment(
                    app,
                    tool.namespace,
                    {
                        "spec": {
                            "template": {
                                "spec": {"containers": [{"name": "podinfod", "image": NEW}]}
                            }
                        }
                    },
                )

        _measure(
            tool, cluster, prometheus, identity, process.pid, start_rollouts, phase_of, traffic,
            lambda: None, progress,
        )  # fmt: skip
    finally:
        traffic.stop()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        tool.errors += [
            line for line in _tail(log_path, 400).splitlines() if '"level":"error"' in line
        ][:5]


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(FileNotFoundError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _rows(result: Result, tool: ToolRun) -> None:
    case = tool.tool
    result.add(case, "analysis steps (Advance/Halt events)", tool.steps, "")
    result.add(case, "API requests per step (server)", ratio(tool.server_requests, tool.steps), "")
    if tool.client_requests is not None:
        result.add(
            case, "API requests per step (client)", ratio(tool.client_requests, tool.steps), ""
        )
    result.add(case, "Prometheus queries per step", ratio(tool.prometheus_queries, tool.steps), "")
    result.add(
        case,
        "CPU during the rollouts",
        tool.cpu_percent,
        "% of a core",
        f"{tool.cpu_seconds:.1f} CPU-s over {tool.seconds:.0f}s",
    )
    result.add(
        case, "RSS (end / max)", round(tool.rss_mib, 1), "MiB", f"max {tool.max_rss_mib:.1f} MiB"
    )
    detection = list(tool.detection_s.values())
    result.add(
        case,
        "detection latency, mean",
        mean(detection),
        "s",
        f"max {max(detection):.1f}s, n={len(detection)}; "
        f"threshold x interval = {THRESHOLD * INTERVAL:g}s"
        if detection
        else "n=0",
    )
    result.add(case, "healthy rollout duration, mean", mean(list(tool.rollout_s.values())), "s")
    result.add(
        case,
        "idle API requests",
        tool.idle_requests_per_min,
        "per min",
        f"CPU {tool.idle_cpu_percent:.1f}%",
    )
    wrong = {
        a: o
        for a, o in tool.outcomes.items()
        if (a in tool.healthy and o != "Succeeded") or (a in tool.failing and o != "Failed")
    }
    if wrong:
        tool.errors.append(f"unexpected outcomes: {wrong}")
