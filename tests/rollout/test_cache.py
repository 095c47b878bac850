"""The watch cache on the real API server: lists, follows changes and deletions, relists
after a 410 Gone, and lets an engine step without reading anything from the server.

Each test gives the code under test its own ``Kube`` gateway, so that gateway's request
counter holds exactly the requests it sent.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from rollout.analysis import PrometheusProvider
from rollout.cache import Informer, engine_cache
from rollout.engine import Engine
from rollout.kube import DEPLOYMENTS, EVENTS, Kube, Resource
from rollout.models import CanaryReleaseSpec, Phase
from rollout.notify import LoggingNotifier
from rollout.shards import release_selector
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from sandbox.sample_app import deploy_podinfo
from tests.fixtures.engine import wait_for

pytestmark = pytest.mark.cluster

NEW = "stefanprodan/podinfo:6.0.3"
READS = ("deployments", "services", "ingresses", "canaryreleases")


@pytest.fixture
def gateway(control_plane: ControlPlane, crd: None) -> Iterator[Kube]:
    """A gateway of the test's own (its request counter is the code under test's alone)."""
    kube = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
    yield kube
    kube.close()


def deployment(name: str) -> k8s.V1Deployment:
    labels = {"app": name}
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=1,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="app", image="app:1")]),
            ),
        ),
    )


def cached(informer: Informer, namespace: str, name: str) -> dict[str, object] | None:
    served, obj = informer.lookup(namespace, name)
    assert served, f"the informer does not serve reads ({informer.stats})"
    return obj


def test_the_cache_follows_additions_changes_and_deletions(
    gateway: Kube, kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    apps = k8s.AppsV1Api(kube_api_client)
    apps.create_namespaced_deployment(namespace, deployment("before"))
    informer = Informer(gateway, DEPLOYMENTS, namespace, kind="Deployment", watch_seconds=5)
    informer.start()
    try:
        assert informer.wait_synced(30), f"no first list: {informer.stats}"
        listed = cached(informer, namespace, "before")
        assert listed is not None and listed["kind"] == "Deployment"
        assert "managedFields" not in listed["metadata"]  # type: ignore[operator]

        apps.create_namespaced_deployment(namespace, deployment("after"))
        wait_for(lambda: cached(informer, namespace, "after"), 30, "the new Deployment")
        apps.patch_namespaced_deployment("after", namespace, {"spec": {"replicas": 3}})
        wait_for(
            lambda: (
                (cached(informer, namespace, "after") or {}).get("spec", {}).get("replicas") == 3
            ),
            30,
            "the changed replica count",
        )
        apps.delete_namespaced_deployment("before", namespace)
        wait_for(
            lambda: cached(informer, namespace, "before") is None, 30, "the deleted Deployment gone"
        )
        names = {obj["metadata"]["name"] for obj in informer.select(namespace) or []}
        assert names == {"after"}
        # the watch outlives its 5 s timeout without a relist: it resumes from its version
        lists = informer.stats.lists
        apps.patch_namespaced_deployment("after", namespace, {"spec": {"replicas": 1}})
        wait_for(
            lambda: (
                (cached(informer, namespace, "after") or {}).get("spec", {}).get("replicas") == 1
            ),
            30,
            "the second change",
        )
        assert informer.stats.lists == lists
    finally:
        informer.stop()


def compact_etcd(control_plane: ControlPlane) -> None:
    """Compact etcd's history up to now (what kube-apiserver does every 5 minutes), so
    older resourceVersions are gone: through etcd's JSON gateway on its client URL."""
    args = Path(f"/proc/{control_plane.pids['kube-apiserver']}/cmdline").read_bytes()
    flag = next(a for a in args.decode().split("\0") if a.startswith("--etcd-servers="))
    url = flag.split("=", 1)[1].split(",")[0]

    def post(path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, object] = json.load(response)
            return answer

    header = post("/v3/kv/range", {"key": "Lw=="})["header"]
    revision = header["revision"]  # type: ignore[index]
    post("/v3/kv/compaction", {"revision": revision, "physical": True})


def event(name: str, namespace: str) -> k8s.CoreV1Event:
    return k8s.CoreV1Event(
        metadata=k8s.V1ObjectMeta(name=name),
        involved_object=k8s.V1ObjectReference(kind="Deployment", name="app", namespace=namespace),
        reason="Test",
        message="a test event",
    )


# kube-apiserver serves Events without its watch cache (they are too many), so a watch on
# them from a compacted version is answered from etcd: 410 Gone, as any kind's would be
# once its watch cache has moved past the version.
def test_a_version_the_server_no_longer_has_means_a_relist(
    gateway: Kube, kube_api_client: k8s.ApiClient, namespace: str, control_plane: ControlPlane
) -> None:
    k8s.CoreV1Api(kube_api_client).create_namespaced_event(namespace, event("first", namespace))
    compact_etcd(control_plane)
    informer = Informer(gateway, EVENTS, namespace, kind="Event")
    seen: list[tuple[str, str]] = []
    informer.handlers.append(lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
    informer.start(since="1")  # compacted away
    try:
        assert informer.wait_synced(30), f"no relist after the 410: {informer.stats}"
        assert informer.stats.expired == 1, informer.stats
        assert informer.stats.lists == 1
        assert cached(informer, namespace, "first") is not None
        assert ("LISTED", "first") in seen
    finally:
        informer.stop()


def test_a_kind_the_server_does_not_serve_falls_back_to_reads_by_name(
    gateway: Kube, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    # a cluster without the Gateway API CRDs: the route informers must not spin or warn
    missing = Resource("example.invalid", "v1", "widgets")
    informer = Informer(gateway, missing, namespace, kind="Widget", forbidden_retry_seconds=60)
    informer.start()
    try:
        wait_for(lambda: informer.stats.not_served, 30, f"the 404 to be seen: {informer.stats}")
        assert not informer.synced
        assert informer.lookup(namespace, "w") == (False, None)  # read by name instead
        lists = gateway.requests.counts.get(("GET", "widgets"), 0)
        time.sleep(2)  # a refused list is retried after forbidden_retry_seconds, not each second
        assert gateway.requests.counts.get(("GET", "widgets"), 0) == lists
        assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.records
    finally:
        informer.stop()


def test_a_relist_reports_what_was_deleted_meanwhile(
    gateway: Kube, kube_api_client: k8s.ApiClient, namespace: str, control_plane: ControlPlane
) -> None:
    core = k8s.CoreV1Api(kube_api_client)
    core.create_namespaced_event(namespace, event("stays", namespace))
    core.create_namespaced_event(namespace, event("goes", namespace))
    informer = Informer(gateway, EVENTS, namespace, kind="Event")
    seen: list[tuple[str, str]] = []
    informer.handlers.append(lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
    informer.start()
    assert informer.wait_synced(30)
    version = str(informer.stats.lists)  # listed once
    informer.stop()  # while stopped, a deletion happens that no watch sees
    core.delete_namespaced_event("goes", namespace)
    compact_etcd(control_plane)
    informer.start(since="1")
    try:
        assert informer.wait_synced(30), f"no relist: {informer.stats}"
        assert version == "1" and informer.stats.lists == 2
        assert ("DELETED", "goes") in seen
        assert cached(informer, namespace, "goes") is None
        assert cached(informer, namespace, "stays") is not None
    finally:
        informer.stop()


def spec() -> CanaryReleaseSpec:
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": NEW},
            "service": {"port": 80, "targetPort": 9898},
            "analysis": {"interval": "10s", "maxWeight": 50, "stepWeight": 10},
        }
    )


@pytest.mark.parametrize("with_cache", [True, False], ids=["cache", "no-cache"])
async def test_an_initializing_step_reads_nothing_from_the_server_with_the_cache(
    gateway: Kube, kube_api_client: k8s.ApiClient, namespace: str, with_cache: bool
) -> None:
    deploy_podinfo(kube_api_client, namespace)
    store = ReleaseStore(gateway)
    await store.create(namespace, "podinfo", spec())
    cache = engine_cache(gateway, namespace, release_selector(None))
    cache.start()
    try:
        assert await asyncio.to_thread(cache.wait_synced, 30), "the informers did not list"
        kube = gateway.cached(cache) if with_cache else gateway
        engine = Engine(
            kube, PrometheusProvider("http://127.0.0.1:9", {}), notifier=LoggingNotifier()
        )
        before = dict(gateway.requests.counts)
        release = await engine.advance(namespace, "podinfo")
        sent = {
            key: count - before.get(key, 0)
            for key, count in gateway.requests.counts.items()
            if count != before.get(key, 0)
        }
        assert release is not None
        assert release.status.phase != Phase.INITIALIZING or release.status.message, release
        gets = sum(n for (method, plural), n in sent.items() if method == "GET" and plural in READS)
        if with_cache:
            assert gets == 0, f"reads sent despite the cache: {sent}"
        else:
            assert gets >= 3, f"without the cache every read is a request: {sent}"
        assert sent.get(("PUT", "canaryreleases/status")) == 1, sent
        # the canary the step created is what the server has
        k8s.AppsV1Api(kube_api_client).read_namespaced_deployment("podinfo-canary", namespace)
    finally:
        cache.stop()
