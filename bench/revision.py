"""Revision latency: ``kubectl set image`` on a managed Deployment -> canary pod Ready,
and -> the release's first Slack post.

Each app is the tutorial's podinfo under a ``Canary`` (canarybot.io/v1alpha1). A run
patches the Deployment's pod template as ``kubectl set image`` does (strategic merge,
field manager ``kubectl-set``); the clock starts when the API server has answered that
patch. Two ends are timed:

- canary Ready: the ``<app>-canary`` Deployment reports a ready replica (kwok marks pods
  Ready as soon as they are scheduled, so this is canary-bot's own detection and
  creation time plus the Deployment controller's);
- first Slack post: the first ``chat.postMessage`` the Slack fake receives in the
  namespace's channel after the patch (the thread root, the status card).

``canary-bot run`` (engine on, no leader election) runs as its own process against the
fake. Every run releases a different app, so runs never wait for each other's release.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from bench.core import Options, Progress, Result, mean, now_iso, percentile
from bench.env import REPO, Cluster, Prometheus, scratch, wait_until
from bench.scenario import NEW, analysis
from sandbox import slack_requests
from sandbox.slack_fake import SlackFake

NAME = "revision"
TITLE = "Revision latency: kubectl set image on a managed Deployment -> canary Ready, first Slack post"
NAMESPACE = "bench-rev"
CHANNEL = "C0DEPLOYS"
USER = slack_requests.DEFAULT_USER_ID
SECRET = "bench-signing-secret"

CONFIG = textwrap.dedent(
    f"""\
    cluster: bench
    channels:
      default: {CHANNEL}
    authorization:
      rules:
        - namespaces: ["{NAMESPACE}"]
          verbs: ["*"]
          users: ["{USER}"]
    defaults:
      namespace: {NAMESPACE}
    """
)


@dataclass
class Run:
    """One revision's measurement (seconds after the patch was answered)."""

    app: str
    to_canary_ready: float | None = None
    to_first_post: float | None = None


def canary_object(app: str, namespace: str) -> dict[str, Any]:
    """The tutorial's Canary for ``app`` (apiVersion canarybot.io/v1alpha1)."""
    return {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": app, "namespace": namespace},
        "spec": {
            "provider": "nginx",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": app},
            "progressDeadlineSeconds": 600,
            "service": {"port": 80, "targetPort": 9898},
            # slow steps: the release stays running while the run is measured
            "analysis": analysis("60s", threshold=5, step_weight=10, max_weight=50),
        },
    }


def run(options: Options, progress: Progress) -> Result:
    """``options.runs`` revisions (3 with --quick), one app each."""
    runs = max(1, options.runs)
    result = Result(NAME, TITLE, started_at=now_iso())
    result.params = {
        "runs": runs,
        "change": "strategic merge patch of spec.template containers, fieldManager kubectl-set",
        "start": "the API server's answer to the patch",
        "canary_ready": "<app>-canary Deployment status.readyReplicas >= 1 (kwok pods)",
        "first_post": "first chat.postMessage in the channel after the patch",
        "bot": "canary-bot run (HTTP mode, engine on, no leader election), own process",
    }
    started = time.monotonic()
    measured: list[Run] = []
    try:
        with scratch(options.workdir, NAME) as workdir:
            measured = _run(workdir, runs, progress)
    except Exception as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
    _rows(result, measured, runs)
    result.seconds = time.monotonic() - started
    return result


def _rows(result: Result, measured: list[Run], runs: int) -> None:
    for label, values in (
        ("set image -> canary pod Ready", [r.to_canary_ready for r in measured]),
        ("set image -> first Slack post", [r.to_first_post for r in measured]),
    ):
        samples = [v for v in values if v is not None]
        note = f"{len(samples)} of {runs} runs"
        result.add(label, "p50", percentile(samples, 0.5), "s", note)
        result.add(label, "p99", percentile(samples, 0.99), "s", note)
        result.add(label, "mean", mean(samples), "s", note)
        result.add(label, "max", max(samples) if samples else None, "s", note)


def _run(workdir: Path, runs: int, progress: Progress) -> list[Run]:
    apps = [f"rev{i:02d}" for i in range(runs)]
    with Cluster(workdir, progress) as cluster, SlackFake() as fake:
        cluster.create_namespace(NAMESPACE)
        prometheus = Prometheus(workdir, progress).start()
        for app in apps:
            cluster.deploy_app(NAMESPACE, app, replicas=2)
        wait_until(
            lambda: cluster.ready_deployments([NAMESPACE], set(apps)) == len(apps),
            300,
            f"{len(apps)} apps to roll out",
            interval=1,
        )
        bot = _start_bot(workdir, cluster.kubeconfig, prometheus.url, fake)
        try:
            wait_until(bot.ready, 90, "canary-bot to be ready", interval=0.5)
            custom = k8s.CustomObjectsApi(cluster.client)
            for app in apps:
                custom.create_namespaced_custom_object(
                    "canarybot.io", "v1alpha1", NAMESPACE, "canaries", canary_object(app, NAMESPACE)
                )
            wait_until(
                lambda: all(_paused(cluster, a) for a in apps), 120, "the apps to be adopted"
            )
            progress(f"{len(apps)} Deployments adopted by their Canaries")
            measured = []
            for app in apps:
                measured.append(_measure(cluster, fake, app))
                progress(
                    f"{app}: canary Ready after {_fmt(measured[-1].to_canary_ready)}, "
                    f"first post after {_fmt(measured[-1].to_first_post)}"
                )
            return measured
        finally:
            progress(f"bot log: {bot.log}")
            bot.stop()
            prometheus.stop()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _paused(cluster: Cluster, app: str) -> bool:
    deployment = k8s.AppsV1Api(cluster.client).read_namespaced_deployment(app, NAMESPACE)
    return bool(deployment.spec.paused)


def _measure(cluster: Cluster, fake: SlackFake, app: str, timeout: float = 120) -> Run:
    apps = k8s.AppsV1Api(cluster.client)
    body = {"spec": {"template": {"spec": {"containers": [{"name": "podinfod", "image": NEW}]}}}}
    apps.patch_namespaced_deployment(app, NAMESPACE, body, field_manager="kubectl-set")
    t0_wall, t0 = time.time(), time.monotonic()
    measured = Run(app)
    deadline = t0 + timeout
    while time.monotonic() < deadline and (
        measured.to_canary_ready is None or measured.to_first_post is None
    ):
        if measured.to_canary_ready is None and _canary_ready(apps, app):
            measured.to_canary_ready = time.monotonic() - t0
        if measured.to_first_post is None:
            posts = [
                c.at
                for c in fake.calls("chat.postMessage")
                if c.at >= t0_wall and c.params.get("channel") == CHANNEL and app in str(c.params)
            ]
            if posts:
                measured.to_first_post = min(posts) - t0_wall
        time.sleep(0.05)  # sampling period: bounds the error of each sample
    return measured


def _canary_ready(apps: k8s.AppsV1Api, app: str) -> bool:
    try:
        canary = apps.read_namespaced_deployment(f"{app}-canary", NAMESPACE)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return bool((canary.status.ready_replicas or 0) >= 1)


@dataclass
class BotChild:
    """``canary-bot run`` as a child process, logging to a file."""

    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200; raises if the process died."""
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"canary-bot exited ({self.process.returncode}):\n{tail}")
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _start_bot(workdir: Path, kubeconfig: Path, prometheus_url: str, fake: SlackFake) -> BotChild:
    config = workdir / "canary-bot.yaml"
    config.write_text(CONFIG)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KUBECONFIG"))},
        "PYTHONPATH": str(REPO),
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.api_url,
        "KUBECONFIG": str(kubeconfig),
        "PROMETHEUS_URL": prometheus_url,
        "CANARY_BOT_CONFIG": str(config),
    }
    log = workdir / "canary-bot.log"
    metrics_port = _free_port()
    argv = [
        sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())",
        "run", "--host", "127.0.0.1", "--port", str(_free_port()),
        "--metrics-port", str(metrics_port), "--no-leader-election", "--namespace", NAMESPACE,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env
        )
    return BotChild(process, metrics_port, log)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
