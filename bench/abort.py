"""Abort latency: ``ReleaseStore.request_control(abort)`` -> canary weight 0 on the Ingress.

What a person pressing Abort waits for: the control request is appended to the
CanaryRelease (what the Slack front does), the engine sees it through its watch, rolls
back, and the canary Ingress's weight drops to 0. The time is taken by a watch on
Ingresses in this process, i.e. when the API server tells a client (as it tells
ingress-nginx) that the weight changed; the canary Ingress being deleted counts too.

Setup: a few podinfo apps with simulated traffic; each app loops "create a release, wait
until the canary gets weight 20, abort, wait for Failed, delete the release". Aborts are
serialised (one in flight at a time) so each is timed alone; the other apps keep
initialising and progressing meanwhile, so the engine is not idle. The analysis interval
is 30 s, so only the watch can explain a reaction faster than that.

The engine reports to a local Slack (sandbox.slack_fake) through the bot's notifier and
client, as it does inside the bot. The aborts are timed twice: with Slack answering, and
during a Slack outage (every Web API call answers HTTP 500, which the client retries
once). Events are delivered outside the per-release lock, so the outage should not
change the abort time: the benchmark reports the ratio of the two p99s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bench.core import Options, Progress, Result, mean, now_iso, percentile
from bench.engine import BenchEngine
from bench.env import (
    Cluster,
    Prometheus,
    scratch,
    wait_until,
)
from bench.scenario import Traffic, analysis, create_release, release_spec
from bench.watch import INGRESSES_PATH, RELEASES_PATH, Watcher, ingress_weight, status_of
from rollout.kube import Kube
from rollout.models import ControlRequest
from rollout.store import ReleaseStore
from sandbox.slack_fake import DEFAULT_CHANNELS, SlackFake

NAME = "abort"
TITLE = "Abort latency: control request -> canary weight 0 on the Ingress"
NAMESPACE = "bench-abort"
APPS = 4


def run(options: Options, progress: Progress) -> Result:
    """Measure ``options.aborts`` aborts (10 with --quick)."""
    count = 10 if options.quick else options.aborts
    result = Result(NAME, TITLE, started_at=now_iso())
    result.params = {
        "aborts": count,
        "apps": APPS,
        "analysis_interval": "30s",
        "engine": "python -m rollout (no leader election), bot's SlackNotifier",
        "slack_outage": "every Web API call answers HTTP 500 (retried once by the client)",
    }
    started = time.monotonic()
    with (
        scratch(options.workdir, NAME) as workdir,
        Cluster(workdir, progress) as cluster,
        SlackFake() as slack,
        _engine_reports_to(slack),
    ):
        identity = cluster.identity("bench-engine")
        prometheus = Prometheus(workdir, progress, slots=APPS).start()
        traffic = Traffic(prometheus.server, str(cluster.kubeconfig))
        engine = BenchEngine(identity.kubeconfig, prometheus.url, workdir)
        try:
            apps = [f"app{i}" for i in range(APPS)]
            cluster.create_namespace(NAMESPACE)
            for app in apps:
                cluster.deploy_app(NAMESPACE, app, replicas=2)
            wait_until(
                lambda: cluster.ready_deployments([NAMESPACE], set(apps)) == APPS,
                120,
                "the apps to roll out",
            )
            traffic.start([(NAMESPACE, a) for a in apps], rps=20)
            engine.start()
            progress(f"engine pid {engine.pid}; timing {count} aborts over {APPS} apps")
            samples, calls = asyncio.run(_measure(cluster, apps, count, progress))
            posts = len(slack.calls("chat.postMessage"))
            progress(f"Slack outage: every Web API call answers 500 ({posts} posts so far)")
            slack.server_errors(seconds=24 * 3600)
            outage, outage_calls = asyncio.run(_measure(cluster, apps, count, progress))
            failed = sum(1 for c in slack.calls() if not c.ok)
            slack.clear_faults()
        finally:
            engine.stop()
            traffic.stop()
            prometheus.stop()
    _report(result, "slack ok", samples, calls, count)
    _report(result, "slack 500s", outage, outage_calls, count)
    normal, during = percentile(samples, 0.99), percentile(outage, 0.99)
    ratio = during / normal if normal and during is not None else None
    result.add("slack 500s", "p99 ratio to slack ok", ratio, "x", "target: within 2x")
    result.details["slack_calls_failed_during_outage"] = failed
    result.seconds = time.monotonic() - started
    return result


@contextlib.contextmanager
def _engine_reports_to(slack: SlackFake) -> Iterator[None]:
    """Have the engine process (bench.enginehost) post to ``slack`` (see its doc)."""
    settings = {
        "CANARY_BOT_BENCH_SLACK_API": slack.api_url,
        "CANARY_BOT_BENCH_SLACK_TOKEN": slack.bot_token,
        "CANARY_BOT_BENCH_SLACK_CHANNEL": DEFAULT_CHANNELS[0].id,
    }
    os.environ.update(settings)
    try:
        yield
    finally:
        for key in settings:
            os.environ.pop(key, None)


def _report(
    result: Result, label: str, samples: list[float], calls: list[float], count: int
) -> None:
    ms = [s * 1000 for s in samples]
    call_ms = [s * 1000 for s in calls]
    case = f"{label}, n={len(ms)}"
    result.add(case, "abort -> weight 0, p50", percentile(ms, 0.5), "ms")
    result.add(case, "abort -> weight 0, p90", percentile(ms, 0.9), "ms")
    result.add(
        case,
        "abort -> weight 0, p99",
        percentile(ms, 0.99),
        "ms",
        "nearest rank: the maximum when n < 100",
    )
    result.add(case, "abort -> weight 0, mean", mean(ms), "ms")
    result.add(case, "request_control call alone, p50", percentile(call_ms, 0.5), "ms", "GET + PUT")
    result.details[label] = {"latency_ms": ms, "request_control_ms": call_ms}
    if len(ms) < count:
        result.errors.append(f"{label}: only {len(ms)} of {count} aborts completed")


async def _measure(
    cluster: Cluster, apps: list[str], count: int, progress: Progress
) -> tuple[list[float], list[float]]:
    kube = Kube.connect(kubeconfig=str(cluster.kubeconfig))
    store = ReleaseStore(kube)
    ingresses = Watcher(cluster.client, INGRESSES_PATH, ingress_weight).start()
    releases = Watcher(
        cluster.client, RELEASES_PATH, lambda o: status_of(o).get("phase", "")
    ).start()
    samples: list[float] = []
    calls: list[float] = []
    lock = asyncio.Lock()  # one abort in flight at a time
    remaining = [count]
    failures: list[str] = []

    async def loop(app: str) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            name = f"{app}-{uuid.uuid4().hex[:6]}"
            try:
                latency, call = await _one_abort(
                    cluster, store, ingresses, releases, app, name, lock
                )
            except (TimeoutError, ApiException) as exc:
                failures.append(f"{name}: {exc}")
                progress(f"{name}: {exc}")
                continue
            samples.append(latency)
            calls.append(call)
            progress(f"abort {len(samples)}/{count}: {latency * 1000:.0f} ms ({name})")

    try:
        await asyncio.gather(*(loop(app) for app in apps))
    finally:
        ingresses.stop()
        releases.stop()
        kube.close()
    return samples, calls


async def _one_abort(
    cluster: Cluster,
    store: ReleaseStore,
    ingresses: Watcher,
    releases: Watcher,
    app: str,
    name: str,
    lock: asyncio.Lock,
) -> tuple[float, float]:
    canary = f"{app}-canary"
    spec = release_spec(app, analysis("30s", step_weight=20, max_weight=60, window="10s"))
    await asyncio.to_thread(create_release, cluster.client, NAMESPACE, name, spec)
    created = time.monotonic()
    await asyncio.to_thread(
        ingresses.wait_for,
        NAMESPACE,
        canary,
        lambda w: bool(w and w > 0),
        after=created,
        timeout=120,
    )
    async with lock:
        requested = time.monotonic()
        await store.request_control(
            NAMESPACE,
            name,
            ControlRequest(id=f"abort-{name}", action="abort", user="U-bench", reason="bench"),
        )
        call = time.monotonic() - requested
        change = await asyncio.to_thread(
            ingresses.wait_for,
            NAMESPACE,
            canary,
            lambda w: not w,  # weight 0, or the canary Ingress deleted (None)
            after=requested,
            timeout=60,
        )
    latency = change.at - requested
    await asyncio.to_thread(
        releases.wait_for, NAMESPACE, name, lambda p: p == "Failed", after=created, timeout=60
    )
    await asyncio.to_thread(_delete_release, cluster, name)
    # the next release of this app starts from a clean slate (canary objects gone)
    await asyncio.to_thread(
        wait_until,
        lambda: _canary_gone(cluster, app),
        60,
        f"{app}'s canary objects to be deleted",
    )
    return latency, call


def _delete_release(cluster: Cluster, name: str) -> None:
    with contextlib.suppress(ApiException):
        k8s.CustomObjectsApi(cluster.client).delete_namespaced_custom_object(
            "canarybot.io", "v1alpha1", NAMESPACE, "canaryreleases", name
        )


def _canary_gone(cluster: Cluster, app: str) -> bool:
    probes: list[Any] = [
        lambda: k8s.AppsV1Api(cluster.client).read_namespaced_deployment(
            f"{app}-canary", NAMESPACE
        ),
        lambda: k8s.CoreV1Api(cluster.client).read_namespaced_service(f"{app}-canary", NAMESPACE),
        lambda: k8s.NetworkingV1Api(cluster.client).read_namespaced_ingress(
            f"{app}-canary", NAMESPACE
        ),
    ]
    for probe in probes:
        try:
            obj = probe()
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise
        if obj.metadata.deletion_timestamp is None:
            return False
    return True
