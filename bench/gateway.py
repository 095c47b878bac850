"""Gateway API through a real Envoy: the split Envoy delivers, and how fast an abort ends
the canary's traffic.

Setup: the test control plane, Contour and Envoy (``sandbox.gateway.dataplane``), a
backend simulator answering on the kwok pods' IPs, the user's HTTPRoute (a rule with a
filter to the stable Service, a second rule to another Service).

- split: ``GatewayRouter`` puts the canary at 5, 20 and 50 on the route; once every
  parent reports it in force and Contour has programmed Envoy, N real requests go
  through Envoy and the backends count which pods served them.
- abort: the engine (in this process, ``rollout.controller.Controller``, no metrics, a
  30 s interval so only the abort explains a reaction) runs a release on the route; at
  weight 20, with requests flowing, an abort request is appended to the CanaryRelease
  (what the Slack front does). Timed from that write: the canary's weight leaving the
  HTTPRoute (polled every 10 ms), and the last request a canary pod served (the
  backends' canary count stops rising; it is read every 10 ms until it stayed put 3 s).
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from bench.core import Options, Progress, Result, now_iso, percentile
from bench.env import scratch, wait_until
from rollout.controller import Controller, EngineSettings
from rollout.kube import Kube
from rollout.models import CanaryReleaseSpec, ControlRequest
from rollout.notify import LoggingNotifier
from rollout.routers.gateway import GatewayRouter, RouteRef
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from sandbox.gateway.backends import BackendSimulator
from sandbox.gateway.dataplane import DataPlane, find_gateway_binaries
from sandbox.traffic import SideSettings
from tests.gateway.helpers import create_app, create_route, release, service, user_route

NAME = "gateway"
TITLE = "Gateway API through Envoy: split per weight; abort -> weight 0 and last canary request"
ROOT = Path(__file__).resolve().parents[1]
HOST = "web.example.com"
_FAST = SideSettings(latency_ms=0.0, jitter_ms=0.0)


class _Load:
    """Requests through Envoy on one keep-alive connection until stopped."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        conn = http.client.HTTPConnection(*self._address, timeout=5)
        while not self._stop.wait(0.002):
            try:
                conn.request("GET", "/", headers={"Host": HOST})
                conn.getresponse().read()
                self.sent += 1
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(*self._address, timeout=5)
        conn.close()


def _send(url: str, count: int) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        for _ in range(count):
            conn.request("GET", "/", headers={"Host": HOST})
            conn.getresponse().read()
    finally:
        conn.close()


def run(options: Options, progress: Progress) -> Result:
    """The split at 5/20/50 and ``options.aborts`` aborts (5 with --quick)."""
    aborts = 5 if options.quick else min(options.aborts, 20)
    requests = 1000 if options.quick else 4000
    result = Result(NAME, TITLE, started_at=now_iso())
    result.params = {"requests_per_weight": requests, "aborts": aborts, "interval": "30s"}
    started = time.monotonic()
    with scratch(options.workdir, NAME) as workdir:
        bin_dir = find_gateway_binaries()
        control_plane = ControlPlane(workdir / "cluster")
        control_plane.start()
        plane = DataPlane(
            control_plane.kubeconfig,
            kubectl=control_plane.bin_dir / "kubectl",
            workdir=workdir / "gateway",
            bin_dir=bin_dir,
        )
        try:
            plane.start()
            asyncio.run(_measure(control_plane, plane, result, requests, aborts, progress))
        finally:
            plane.stop()
            control_plane.stop()
    result.seconds = time.monotonic() - started
    return result


async def _measure(
    control_plane: ControlPlane,
    plane: DataPlane,
    result: Result,
    requests: int,
    aborts: int,
    progress: Progress,
) -> None:
    api = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    kube = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
    try:
        _install_crd(api)
        for weight in (5, 20, 50):
            share = await _split(api, kube, plane, weight, requests, progress)
            result.add(f"weight {weight}", "canary share served", share, "%", f"{requests} requests")
        to_zero, to_last = await _aborts(api, kube, plane, aborts, progress)
        result.details.update({"abort_to_weight_0_s": to_zero, "abort_to_last_canary_s": to_last})
        for label, samples in (("weight 0 on the route", to_zero), ("last canary request", to_last)):
            result.add("abort", f"{label} p50", percentile(samples, 0.5), "s")
            result.add("abort", f"{label} p99", percentile(samples, 0.99), "s", f"{len(samples)} aborts")
    finally:
        kube.close()
        api.close()


def _install_crd(api: k8s.ApiClient) -> None:
    ext = k8s.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(
        yaml.safe_load((ROOT / "manifests" / "crds" / "crd.yaml").read_text())
    )
    custom = k8s.CustomObjectsApi(api)

    def serving() -> bool:
        try:
            custom.list_cluster_custom_object("canarybot.io", "v1alpha1", "canaryreleases", limit=1)
        except k8s.ApiException:
            return False
        return True

    wait_until(serving, 60, "the API server to serve CanaryReleases")


def _namespace(api: k8s.ApiClient, name: str) -> str:
    core = k8s.CoreV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))

    def has_account() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except k8s.ApiException:
            return False
        return True

    wait_until(has_account, 60, f"the default ServiceAccount in {name}")
    return name


def _remove(api: k8s.ApiClient, ns: str) -> None:
    """The namespace goes, and its route at once: every run's route serves one host."""
    k8s.CustomObjectsApi(api).delete_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", ns, "httproutes", "web"
    )
    k8s.CoreV1Api(api).delete_namespace(ns, propagation_policy="Background")


def _app(api: k8s.ApiClient, plane: DataPlane, ns: str, canary: bool) -> BackendSimulator:
    create_app(api, ns, canary=canary)
    k8s.CoreV1Api(api).create_namespaced_service(ns, service("api", "api"))
    sim = BackendSimulator(
        plane.kubeconfig,
        ns,
        {"web": "stable", "web-canary": "canary"},
        stable=_FAST,
        canary=_FAST,
        netns=plane.pod_netns,
    )
    return sim


async def _split(
    api: k8s.ApiClient, kube: Kube, plane: DataPlane, weight: int, requests: int, progress: Progress
) -> float:
    ns = _namespace(api, f"split-{weight}")
    sim = _app(api, plane, ns, canary=True)
    sim.start()
    try:
        sim.wait_serving({"stable": 2, "canary": 1})
        create_route(api, user_route(ns, plane.parent_ref))
        router, rel = GatewayRouter(kube, RouteRef("web")), release(ns)
        await router.reconcile(rel, weight)
        deadline = time.monotonic() + 60
        while not (await router.ready(rel)).ready:
            if time.monotonic() > deadline:
                raise TimeoutError("the route was not in force within 60s")
            await asyncio.sleep(0.1)

        def programmed() -> bool:  # Envoy has the weights once a canary pod answers
            before = sim.counts()["canary"]
            _send(plane.url, 50)
            return sim.counts()["canary"] > before

        wait_until(programmed, 60, "Envoy to send requests to the canary")
        before = sim.counts()
        await asyncio.to_thread(_send, plane.url, requests)
        after = sim.counts()
        share = 100 * (after["canary"] - before["canary"]) / requests
        progress(f"weight {weight}: canary pods served {share:.2f} % of {requests} requests")
        return share
    finally:
        sim.stop()
        _remove(api, ns)


def _abort_spec() -> CanaryReleaseSpec:
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "web"},
            "routeRef": {"name": "web"},
            "provider": "contour",
            "images": {"podinfo": "ghcr.io/stefanprodan/podinfo:6.0.1"},
            "service": {"port": 80, "targetPort": 9898},
            "canaryReplicas": 1,
            "analysis": {"interval": "30s", "stepWeight": 20, "maxWeight": 60},
        }
    )


def _route_weight(api: k8s.ApiClient, ns: str) -> int:
    route = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", ns, "httproutes", "web"
    )
    for rule in route["spec"]["rules"]:
        for ref in rule.get("backendRefs") or []:
            if ref["name"] == "web-canary":
                return int(ref.get("weight", 1))
    return 0


async def _aborts(
    api: k8s.ApiClient, kube: Kube, plane: DataPlane, count: int, progress: Progress
) -> tuple[list[float], list[float]]:
    to_zero: list[float] = []
    to_last: list[float] = []
    settings = EngineSettings(prometheus_url="http://127.0.0.1:9", leader_election=False)
    controller = Controller(kube, LoggingNotifier(), settings, "bench-gateway")
    await controller.start()
    store = ReleaseStore(kube)
    try:
        for i in range(count):
            ns = _namespace(api, f"abort-{i}")
            sim = _app(api, plane, ns, canary=False)
            sim.start()
            try:
                sim.wait_serving({"stable": 2})
                create_route(api, user_route(ns, plane.parent_ref))
                zero, last, rate = await _one_abort(api, store, plane, sim, ns)
            finally:
                sim.stop()
                _remove(api, ns)
            to_zero.append(zero)
            to_last.append(last)
            progress(
                f"abort {i + 1}/{count}: weight 0 after {zero:.3f}s, last canary request "
                f"{last:.3f}s (canary served {rate} requests/s before)"
            )
    finally:
        await controller.stop()
    return to_zero, to_last


async def _one_abort(
    api: k8s.ApiClient, store: ReleaseStore, plane: DataPlane, sim: BackendSimulator, ns: str
) -> tuple[float, float, int]:
    await store.create(ns, "web", _abort_spec())
    with _Load(plane.url):
        await asyncio.to_thread(
            wait_until, lambda: _route_weight(api, ns) == 20, 120, "the canary at weight 20"
        )
        await asyncio.to_thread(
            wait_until, lambda: sim.counts()["canary"] > 0, 60, "canary requests through Envoy"
        )
        # How many requests a second the canary serves just before (what "last" resolves).
        before = sim.counts()["canary"]
        await asyncio.sleep(1.0)
        # The count before the write: canary requests served while it is under way count.
        last_count = sim.counts()["canary"]
        rate = last_count - before
        requested = last_at = time.monotonic()
        await store.request_control(ns, "web", ControlRequest(id=f"abort-{ns}", action="abort"))
        zero = None
        while time.monotonic() - last_at < 3.0:
            now = time.monotonic()
            if zero is None and await asyncio.to_thread(_route_weight, api, ns) == 0:
                zero = now - requested
            served = sim.counts()["canary"]
            if served != last_count:
                last_count, last_at = served, now
            if now - requested > 60:
                raise TimeoutError("canary requests did not stop within 60s of the abort")
            await asyncio.sleep(0.01)
    return (zero if zero is not None else float("nan")), last_at - requested, rate
