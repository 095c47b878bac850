"""The local sandbox behind ``make run``: a small, real environment on this machine.

It starts the Kubernetes control plane (with kwok so Pods turn Ready), installs the
CanaryRelease and Canary CRDs, deploys the tutorial's podinfo app (Deployment, Service,
Ingress) in namespace ``test`` under the tutorial's Canary, starts Prometheus, the ingress-nginx traffic simulator for podinfo,
and a flagger-loadtester stand-in. Only the data plane is simulated: error injection
(the tutorial's ``curl /status/500``) sets the canary side's error rate.

With ``router="gateway"`` (``make run ROUTER=gateway``, needs root) the data plane is
real instead: Contour and Envoy serve an HTTPRoute ``podinfo``, real requests reach
backends that answer for the podinfo pods, Prometheus scrapes Envoy, and releases use
``routeRef`` with the ``contour`` metrics (``sandbox.gateway.sandbox``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from sandbox import set_image
from sandbox.controlplane import ControlPlane
from sandbox.gateway.sandbox import GatewayTraffic
from sandbox.loadtester import LoadRequest, LoadTester
from sandbox.prometheus import PrometheusServer
from sandbox.sample_app import deploy_podinfo
from sandbox.traffic import TrafficSimulator

CRD_DIR = Path(__file__).resolve().parents[1] / "manifests" / "crds"
CRD_PATH = CRD_DIR / "crd.yaml"
CANARY_CRD_PATH = CRD_DIR / "canaries.yaml"
NAMESPACE = "test"
BASE_RPS = 20.0


def _say(message: str) -> None:
    print(f"[sandbox] {message}", file=sys.stderr, flush=True)


class SandboxError(RuntimeError):
    """The sandbox could not start; the message says which part and why."""


class LocalSandbox:
    """Starts and stops every part of the local environment, in order."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        namespace: str = NAMESPACE,
        rps: float = BASE_RPS,
        progress: Callable[[str], None] = _say,
        router: str = "ingress",
    ) -> None:
        if router not in ("ingress", "gateway"):
            raise SandboxError(f"router must be ingress or gateway, got {router!r}")
        self.router = router
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="canary-bot-sandbox-"))
        self.namespace = namespace
        self.rps = rps
        self.progress = progress
        self.control_plane = ControlPlane(self.workdir / "cluster")
        self.prometheus = PrometheusServer(self.workdir / "prometheus")
        self.loadtester = LoadTester(on_load=self._on_load)
        self.traffic: TrafficSimulator | None = None
        self.gateway: GatewayTraffic | None = None
        self._api: k8s.ApiClient | None = None

    @property
    def kubeconfig(self) -> Path:
        """The sandbox cluster's admin kubeconfig."""
        return self.control_plane.kubeconfig

    @property
    def prometheus_url(self) -> str:
        """Prometheus's base URL."""
        return self.prometheus.url

    def start(self) -> None:
        """Bring everything up; on failure stop what was started and raise."""
        started = time.monotonic()
        try:
            self.progress(
                "starting the Kubernetes control plane (etcd, kube-apiserver, controllers, kwok)"
            )
            self.control_plane.start()
            self._api = k8s_config.new_client_from_config(config_file=str(self.kubeconfig))
            self.progress("installing the CanaryRelease and Canary CRDs")
            self._install_crd()
            self.progress(
                f"deploying podinfo (Deployment, Service, Ingress) in namespace {self.namespace}"
            )
            self._deploy_app()
            self.progress("starting Prometheus (scrapes every second)")
            self.prometheus.start()
            if self.router == "gateway":
                self._start_gateway()
            else:
                self.progress("starting the ingress-nginx traffic simulator and the load tester")
                self.traffic = TrafficSimulator(
                    self.namespace, "podinfo", "podinfo", 80, kubeconfig=self.kubeconfig, rps=self.rps
                ).start()
                self.prometheus.add_target(self.traffic.address, {"job": "ingress-nginx"})
            self.loadtester.start()
            # its webhooks point at the load tester, so it is applied once that listens
            self.progress("applying the tutorial's Canary: canary-bot now protects podinfo")
            self._protect_podinfo()
        except Exception as exc:
            self.stop()
            raise SandboxError(f"the sandbox could not start: {exc}") from exc
        self.progress(f"ready in {time.monotonic() - started:.1f}s")

    def _start_gateway(self) -> None:
        assert self._api is not None
        self.progress(
            "starting the Gateway API data plane: Contour and Envoy (a few minutes to build "
            "Contour on first use), the podinfo HTTPRoute and backends for its pods"
        )
        self.gateway = GatewayTraffic(
            self.kubeconfig,
            self.control_plane.bin_dir / "kubectl",
            self.workdir / "gateway",
            self.namespace,
            self.rps,
        )
        self.gateway.start(self._api, self.prometheus)

    def stop(self) -> None:
        """Stop everything (safe to call twice)."""
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.traffic is not None:
            self.traffic.stop()
            self.traffic = None
        self.loadtester.stop()
        self.prometheus.stop()
        if self._api is not None:
            self._api.close()
            self._api = None
        self.control_plane.stop()

    def __enter__(self) -> LocalSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a person does in the tutorial -----------------------------------------------

    def inject_errors(self, rate: float = 0.5) -> None:
        """The tutorial's ``curl /status/500`` loop: the canary answers 5xx at ``rate``."""
        if self.gateway is not None:
            self.gateway.set_side("canary", error_rate=rate)
            return
        if self.traffic is None:
            raise SandboxError("the sandbox is not running")
        self.traffic.set_side("canary", error_rate=rate)

    def set_image(self, words: list[str]) -> str:
        """The tutorial's ``kubectl set image``: applied through the API, and the real
        kubectl line to type next time. ``words`` follow ``set`` (or ``kubectl set``)."""
        if self._api is None:
            raise SandboxError("the sandbox is not running")
        try:
            change = set_image.parse(words, self.namespace)
            if not self._adopted(change.namespace, change.deployment):
                return (
                    f"canary-bot has not paused {change.deployment} yet (the Canary is still "
                    "adopting it), so this change would roll out at once; try again in a moment."
                )
            set_image.apply(self._api, change)
        except set_image.SetImageProblem as exc:
            return str(exc)
        images = ", ".join(f"{c}={i}" for c, i in change.images.items())
        return (
            f"deployment.apps/{change.deployment} image updated ({images}) in {change.namespace}.\n"
            "The same change with kubectl, against the sandbox:\n"
            f"  {change.kubectl_line(self.control_plane.bin_dir / 'kubectl', self.kubeconfig)}"
        )

    def _adopted(self, namespace: str, name: str) -> bool:
        """Whether canary-bot holds the Deployment paused, or no Canary protects it.

        Asked once, never waited for: console commands run on the loop the engine
        shares, so waiting here would keep the engine from adopting it.
        """
        custom, apps = k8s.CustomObjectsApi(self._api), k8s.AppsV1Api(self._api)
        canaries = custom.list_namespaced_custom_object(
            "canarybot.io", "v1alpha1", namespace, "canaries"
        )
        if not any(
            (c.get("spec") or {}).get("targetRef", {}).get("name") == name
            for c in canaries.get("items", [])
        ):
            return True
        try:
            return bool(apps.read_namespaced_deployment(name, namespace).spec.paused)
        except ApiException as exc:
            if exc.status == 404:
                return True  # set_image.apply says that it is missing
            raise

    def heal(self) -> None:
        """Stop injecting errors on both sides."""
        for data_plane in (self.traffic, self.gateway):
            if data_plane is not None:
                data_plane.set_side("canary", error_rate=0.0)
                data_plane.set_side("stable", error_rate=0.0)

    def config(self) -> dict[str, Any]:
        """A canary-bot config for the sandbox: the tutorial's analysis, shorter interval."""
        hooks = [
            {
                "name": "acceptance-test",
                "type": "pre-rollout",
                "url": self.loadtester.url + "/",
                "timeout": "30s",
                "metadata": {
                    "type": "bash",
                    "cmd": f"curl -sd 'test' http://podinfo-canary.{self.namespace}/token | grep token",
                },
            },
            {
                "name": "load-test",
                "type": "rollout",
                "url": self.loadtester.url + "/",
                "timeout": "5s",
                "metadata": {"cmd": "hey -z 1m -q 10 -c 2 http://app.example.com/"},
            },
        ]
        defaults: dict[str, Any] = {
            "namespace": self.namespace,
            "profile": "tutorial",
            "progressDeadlineSeconds": 60,
        }
        if self.router == "gateway":
            # Real proxying: the canary Service must target podinfo's container port.
            defaults.update(router="gateway", provider="contour", targetPort=9898)
        return {
            "cluster": "sandbox",
            "defaults": defaults,
            "profiles": {
                "tutorial": {
                    "interval": "5s",
                    "threshold": 5,
                    "maxWeight": 50,
                    "stepWeight": 10,
                    "metrics": [
                        {
                            "name": "request-success-rate",
                            "thresholdRange": {"min": 99},
                            "interval": "30s",
                        }
                    ],
                    "webhooks": hooks,
                }
            },
        }

    def canary(self) -> dict[str, Any]:
        """The tutorial's Canary for podinfo, apiVersion canarybot.io/v1alpha1.

        Its analysis is the sandbox profile's (the tutorial's checks and webhooks, a
        shorter interval, webhooks pointed at the local load tester).
        """
        routing: dict[str, Any] = {
            "provider": "nginx",
            "ingressRef": {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "name": "podinfo",
            },
        }
        if self.router == "gateway":  # the HTTPRoute podinfo, with Envoy's metrics
            routing = {
                "provider": "contour",
                "routeRef": {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "HTTPRoute",
                    "name": "podinfo",
                },
            }
        return {
            "apiVersion": "canarybot.io/v1alpha1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": self.namespace},
            "spec": {
                **routing,
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "progressDeadlineSeconds": 60,
                "service": {"port": 80, "targetPort": 9898},
                "analysis": self.config()["profiles"]["tutorial"],
            },
        }

    def write_config(self) -> Path:
        """Write ``config()`` as YAML next to the sandbox's other files."""
        path = self.workdir / "canary-bot.yaml"
        path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return path

    def summary(self) -> str:
        """What is running where, for the person at the terminal."""
        if self.gateway is not None:
            plane = f"Gateway API: Contour + Envoy at {self.gateway.url} (HTTPRoute podinfo)"
        else:
            plane = "ingress-nginx: the traffic simulator (canary Ingress weights)"
        lines = [
            f"data plane: {plane}",
            f"kubectl:    KUBECONFIG={self.kubeconfig} {self.control_plane.bin_dir}/kubectl get canaries,canaryreleases -A",
            f"Prometheus: {self.prometheus_url}",
        ]
        if self.traffic is not None:
            lines.append(f"traffic:    {self.traffic.url}/control (GET state, POST changes)")
        return "\n".join(lines)

    # -- internals ------------------------------------------------------------------------

    def _install_crd(self) -> None:
        assert self._api is not None
        ext = k8s.ApiextensionsV1Api(self._api)
        bodies = [yaml.safe_load(path.read_text()) for path in (CRD_PATH, CANARY_CRD_PATH)]
        for body in bodies:
            try:
                ext.create_custom_resource_definition(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            crds = [ext.read_custom_resource_definition(b["metadata"]["name"]) for b in bodies]
            if all(
                any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
                for crd in crds
            ) and self._serving_releases():
                return
            time.sleep(0.2)
        raise SandboxError("the CanaryRelease and Canary CRDs were not served within 30s")

    def _serving_releases(self) -> bool:
        """Whether CanaryReleases can be listed: Established comes before the API server's
        storage for them is ready, and a request in between gets 429 "storage is
        (re)initializing" (the console's first ``start`` would fail with it)."""
        custom = k8s.CustomObjectsApi(self._api)
        try:
            for plural in ("canaryreleases", "canaries"):
                custom.list_cluster_custom_object("canarybot.io", "v1alpha1", plural, limit=1)
        except ApiException as exc:
            if exc.status == 429:
                return False
            raise
        return True

    def _deploy_app(self) -> None:
        assert self._api is not None
        core = k8s.CoreV1Api(self._api)
        try:
            core.create_namespace({"metadata": {"name": self.namespace}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        deadline = time.monotonic() + 60
        while True:  # Pods are refused until the namespace's default ServiceAccount exists
            try:
                core.read_namespaced_service_account("default", self.namespace)
                break
            except ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        deploy_podinfo(self._api, self.namespace)
        apps = k8s.AppsV1Api(self._api)
        while time.monotonic() < deadline:
            status = apps.read_namespaced_deployment("podinfo", self.namespace).status
            if (status.ready_replicas or 0) >= 2:
                return
            time.sleep(0.2)
        raise SandboxError("podinfo did not become ready within 60s")

    def _protect_podinfo(self) -> None:
        """Apply the Canary: from now on canary-bot holds podinfo's pod template."""
        custom = k8s.CustomObjectsApi(self._api)
        try:
            custom.create_namespaced_custom_object(
                "canarybot.io", "v1alpha1", self.namespace, "canaries", self.canary()
            )
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _on_load(self, load: LoadRequest) -> None:
        """A ``hey`` load test adds its requests per second on top of the base traffic."""
        extra = load.total_rps or 0.0
        if self.traffic is not None and extra:
            self.traffic.set_rps(self.rps + extra)
        if self.gateway is not None and extra:
            self.gateway.rps = self.rps + extra
