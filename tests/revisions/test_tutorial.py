"""The seed tutorial told through the cluster door, as the issue's done-when says.

The tutorial's Canary with only its apiVersion changed (intervals shortened so the test
runs in minutes) is applied with the real kubectl; `kubectl set image ... 6.0.3` is
analysed with the real Prometheus reading the traffic simulator's ingress-nginx metrics
and promoted; with 500s on the canary side `kubectl set image ... 6.0.4` rolls back.
Every change of the canary Ingress and of every pod is watched for the whole test; the
bot posts to the Slack fake.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch

from rollout.kube import Kube
from rollout.models import CanaryRelease, Phase
from rollout.store import ReleaseStore
from sandbox.slack_fake import SlackFake
from tests.bot.harness import config_for, environment, running_bot
from tests.fixtures.slack import eventually
from tests.revisions.conftest import OLD, Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

GOOD = "stefanprodan/podinfo:6.0.3"
BAD = "stefanprodan/podinfo:6.0.4"
MAX_WEIGHT = 50
WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


def seed_canary(loadtester_url: str) -> str:
    """The tutorial's Canary (step 5), apiVersion canarybot.io/v1alpha1, test-sized."""
    return f"""
apiVersion: canarybot.io/v1alpha1
kind: Canary
metadata:
  name: podinfo
spec:
  provider: nginx
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  ingressRef:
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    name: podinfo
  progressDeadlineSeconds: 60
  service:
    port: 80
    targetPort: 9898
  analysis:
    interval: 2s
    threshold: 5
    maxWeight: {MAX_WEIGHT}
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 10s
      - name: request-duration
        thresholdRange:
          max: 500
        interval: 10s
    webhooks:
      - name: acceptance-test
        type: pre-rollout
        url: {loadtester_url}/
        timeout: 30s
        metadata:
          type: bash
          cmd: "curl -sd 'test' http://podinfo-canary/token | grep token"
      - name: load-test
        url: {loadtester_url}/
        timeout: 5s
        metadata:
          cmd: "hey -z 1m -q 10 -c 2 http://app.example.com/"
"""


class Watcher:
    """Every event of one namespaced list, handed to ``seen`` from a thread, until stopped."""

    def __init__(self, lister: Callable[..., Any], namespace: str, seen: Callable[[Any], None]) -> None:
        self._lister, self._namespace, self._seen = lister, namespace, seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        listed = self._lister(self._namespace)
        for obj in listed.items:
            self._seen(obj)
        version = listed.metadata.resource_version
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._lister, self._namespace, resource_version=version, timeout_seconds=2
                ):
                    self._seen(event["object"])
                    version = event["object"].metadata.resource_version
                    if self._stop.is_set():
                        break
            except Exception as exc:  # a gap in the record fails the test below
                self.errors.append(repr(exc))
                return
            finally:
                stream.stop()


async def final_release(store: ReleaseStore, namespace: str, count: int) -> CanaryRelease:
    """The ``count``-th release (by creation), once it has ended."""

    async def ended() -> CanaryRelease | None:
        releases = sorted(
            await store.list_objects(namespace), key=lambda r: r.metadata.creation_timestamp or ""
        )
        if len(releases) < count:
            return None
        release = releases[count - 1]
        return release if release.status.phase.is_final else None

    found: CanaryRelease = await eventually(
        ended, within=240, interval=0.5, message=f"release {count} to end"
    )
    return found


async def test_the_seed_tutorial_through_kubectl(
    cluster: Cluster,
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    traffic: Any,
    loadtester: Any,
    prometheus: Any,
    slack_fake: SlackFake,
    signing_secret: str,
) -> None:
    namespace = cluster.namespace
    weights: list[int] = []
    outside_canary: list[str] = []  # pods not of podinfo-canary that ran 6.0.4
    canary_bad: set[str] = set()

    def ingress_seen(ingress: Any) -> None:
        if ingress.metadata.name == "podinfo-canary":
            value = (ingress.metadata.annotations or {}).get(WEIGHT)
            if value is not None:
                weights.append(int(value))

    def pod_seen(pod: Any) -> None:
        if BAD not in {c.image for c in pod.spec.containers}:
            return
        owners = [o.name for o in pod.metadata.owner_references or []]
        if all(name.startswith("podinfo-canary-") for name in owners) and owners:
            canary_bad.add(pod.metadata.name)
        else:
            outside_canary.append(
                f"{pod.metadata.name} (owners {owners}, created {pod.metadata.creation_timestamp},"
                f" phase {pod.status.phase}, deleting {pod.metadata.deletion_timestamp})"
            )

    networking = k8s.NetworkingV1Api(kube_api_client)
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    log_lines: list[str] = []
    with (
        Watcher(networking.list_namespaced_ingress, namespace, ingress_seen) as ingresses,
        Watcher(cluster.core.list_namespaced_pod, namespace, pod_seen) as pods,
    ):
        async with running_bot(
            env, config_for(namespace), kube, run_engine=True, namespace=namespace
        ):
            cluster.kubectl("apply", "-f", "-", stdin=seed_canary(loadtester.url))
            await cluster.wait(
                lambda: cluster.canary_status().get("stableHash"), "the Canary to adopt podinfo"
            )

            cluster.kubectl("set", "image", "deployment/podinfo", f"podinfod={GOOD}")
            promoted = await final_release(store, namespace, 1)
            assert promoted.status.phase == Phase.SUCCEEDED, promoted.status.message
            assert promoted.spec.images == {"podinfod": GOOD}
            await cluster.wait(
                lambda: set().union(*cluster.pod_images().values()) == {GOOD},
                "every pod to run 6.0.3 after the promotion",
                timeout=120,
            )
            # what `kubectl get canaries` shows before the next change: idle, paused again
            # (a change made while promotion has the Deployment unpaused rolls out as is)
            await cluster.wait(
                lambda: cluster.canary_status().get("state") == "Idle"
                and cluster.deployment().spec.paused is True,
                "the Canary to be idle with podinfo paused again",
            )

            sim.set_side("canary", error_rate=0.5)
            cluster.kubectl("set", "image", "deployment/podinfo", f"podinfod={BAD}")
            log_lines.append(f"set image 6.0.4 at {datetime.now(UTC)}")
            rejected = await final_release(store, namespace, 2)
            log_lines.append(f"release 2 ended at {datetime.now(UTC)}")
            assert rejected.status.phase == Phase.FAILED, rejected.status.message
            assert rejected.spec.images == {"podinfod": BAD}
            status = await cluster.wait(
                lambda: "spec asks for" in str((s := cluster.canary_status()).get("message")) and s,
                "the Canary to say what runs after the rollback",
            )
            assert status["message"].startswith(
                f"spec asks for podinfod={BAD}, pods run podinfod={GOOD} (rolled back at "
            ), status
            assert status["stableImages"] == {"podinfod": GOOD}
            spec_images = {c.image for c in cluster.deployment().spec.template.spec.containers}
            assert spec_images == {BAD}  # the owner's spec stays as written

            roots = await eventually(
                lambda: (
                    found
                    if len(
                        found := [
                            m
                            for m in slack_fake.messages("C0DEPLOYS")
                            if str(m.get("text", "")).startswith("Canary ")
                        ]
                    )
                    == 2
                    else None
                ),
                within=30,
                message="one root card per release",
            )

    assert not ingresses.errors and not pods.errors, (ingresses.errors, pods.errors)
    assert weights and max(weights) == MAX_WEIGHT, weights
    assert all(0 <= w <= MAX_WEIGHT for w in weights), weights
    assert canary_bad, "the canary Deployment never ran 6.0.4"
    assert outside_canary == [], (outside_canary, log_lines)
    assert OLD not in set().union(*cluster.pod_images().values())
    root_ts = {str(m["ts"]) for m in roots}
    updated = {str(c.params.get("ts")) for c in slack_fake.calls("chat.update")}
    assert root_ts <= updated, (root_ts, updated)  # each card was edited in place
    replies = [
        m
        for m in slack_fake.messages("C0DEPLOYS", include_replies=True)
        if m.get("thread_ts") and m.get("thread_ts") != m.get("ts")
    ]
    assert {str(m["thread_ts"]) for m in replies} <= root_ts  # no thread but the two
    for ts in root_ts:
        assert slack_fake.updates_of("C0DEPLOYS", ts), ts
