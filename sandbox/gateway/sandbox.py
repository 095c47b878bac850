"""The sandbox's Gateway API data plane (``make run ROUTER=gateway``).

Contour and a real Envoy (``DataPlane``) serve an HTTPRoute ``podinfo`` in front of the
podinfo Service; the backend simulator answers on the podinfo pods' IPs (stable and
canary); a steady stream of real HTTP requests goes through Envoy; Prometheus scrapes
Envoy's stats, which the ``contour`` built-in metrics read. ``set_side`` is the
tutorial's ``curl /status/500``: it sets a side's error rate in the backends. Needs root
(the pod addresses live in a network namespace of the run's own).
"""

from __future__ import annotations

import http.client
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client as k8s

from sandbox.gateway.backends import BackendSimulator
from sandbox.gateway.dataplane import DataPlane, find_gateway_binaries
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import Side

GROUP = "gateway.networking.k8s.io"


def podinfo_route(namespace: str, parent: dict[str, str], host: str) -> dict[str, Any]:
    """The tutorial's route: every request for ``host`` to the podinfo Service."""
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "parentRefs": [parent],
            "hostnames": [host],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": "podinfo", "port": 80}],
                }
            ],
        },
    }


class GatewayTraffic:
    """Envoy, the podinfo route, its backends and a request stream, started in order."""

    def __init__(
        self, kubeconfig: Path, kubectl: Path, workdir: Path, namespace: str, rps: float
    ) -> None:
        self.namespace = namespace
        self.rps = rps
        self.host = "app.example.com"
        self.plane = DataPlane(
            kubeconfig, kubectl=kubectl, workdir=workdir, bin_dir=find_gateway_binaries()
        )
        self.backends: BackendSimulator | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def start(self, api: k8s.ApiClient, prometheus: PrometheusServer) -> None:
        """Start Envoy and Contour, the route, the backends, Prometheus's scrape, the load."""
        self.plane.start()
        k8s.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP,
            "v1",
            self.namespace,
            "httproutes",
            podinfo_route(self.namespace, self.plane.parent_ref, self.host),
        )
        self.backends = BackendSimulator(
            self.plane.kubeconfig,
            self.namespace,
            {"podinfo": "stable", "podinfo-canary": "canary"},
            netns=self.plane.pod_netns,
        )
        self.backends.start()
        address, labels = self.plane.scrape_target()
        prometheus.add_target(address, labels)
        self._thread = threading.Thread(target=self._load, name="gateway-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop everything (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.backends is not None:
            self.backends.stop()
            self.backends = None
        self.plane.stop()

    def set_side(self, side: Side, **changes: Any) -> None:
        """Change one side's behaviour in the backends (e.g. ``error_rate=0.5``)."""
        if self.backends is not None:
            self.backends.set_side(side, **changes)

    @property
    def url(self) -> str:
        """Envoy's Gateway listener."""
        return self.plane.url

    def _load(self) -> None:
        parts = urlsplit(self.plane.url)
        address = (parts.hostname or "127.0.0.1", parts.port or 80)
        conn = http.client.HTTPConnection(*address, timeout=5)
        while not self._stop.wait(1.0 / max(self.rps, 0.1)):
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                conn.getresponse().read()
                self.sent += 1
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(*address, timeout=5)
        conn.close()
