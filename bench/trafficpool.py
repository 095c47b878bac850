"""One traffic generator for hundreds of apps (the scale benchmark's data plane).

A ``TrafficSimulator`` per app reads its canary Ingress itself, four times a second:
at 500 apps that alone would be 2000 API requests per second, more than the engine
under test. Here one thread lists every canary Ingress once per tick (one request,
label selector ``app.kubernetes.io/managed-by=canary-bot``), hands each simulator its
routing through the ``weight`` callable, and ticks them all; one scrape slot exports
the request counter of every app. Only ``nginx_ingress_controller_requests`` is
exported (what request-success-rate reads); the duration histograms would be 28 more
series per app for nothing.

Label values match what each simulator would export on its own (see sandbox.traffic).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from typing import Any

from kubernetes import client as k8s

from sandbox.prometheus import PrometheusServer, ScrapeSlot
from sandbox.traffic import LABEL_NAMES, REQUESTS, CanaryRouting, TrafficSimulator

MANAGED = "app.kubernetes.io/managed-by=canary-bot"


class TrafficPool:
    """Simulated ingress-nginx traffic for many ``(namespace, app)`` pairs at once."""

    def __init__(
        self,
        api: k8s.ApiClient,
        prometheus: PrometheusServer,
        apps: list[tuple[str, str]],
        *,
        rps: float,
        tick: float = 1.0,
    ) -> None:
        self.api = api
        self.prometheus = prometheus
        self.tick_seconds = tick
        self._routing: dict[tuple[str, str], CanaryRouting] = {}
        self.sims: dict[tuple[str, str], TrafficSimulator] = {}
        for namespace, app in apps:
            key = (namespace, app)
            self.sims[key] = TrafficSimulator(
                namespace,
                app,
                app,
                80,
                weight=functools.partial(self.routing_of, key),
                rps=rps,
                tick=tick,
            )
        self.list_errors = 0
        self.lists = 0
        self.slow_ticks = 0
        self._slot: ScrapeSlot | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic-pool", daemon=True)

    def routing_of(self, key: tuple[str, str]) -> CanaryRouting:
        """The routing last read for ``(namespace, app)`` (none: all traffic to stable)."""
        return self._routing.get(key, CanaryRouting())

    def start(self) -> TrafficPool:
        """Start ticking and exporting; returns once Prometheus has scraped the pool."""
        self._refresh()
        self._thread.start()
        slot = self.prometheus.acquire_slot(timeout=90)
        slot.attach(self.render)
        self._slot = slot
        self.prometheus.wait_for_target_up(slot.address, timeout=60, since=slot.attached_at)
        return self

    def stop(self) -> None:
        """Stop ticking and give the slot back."""
        self._stop.set()
        self._thread.join(timeout=10)
        if self._slot is not None:
            self.prometheus.release_slot(self._slot)
            self._slot = None

    def _refresh(self) -> None:
        """Read every canary Ingress with one LIST and update each app's routing."""
        self.lists += 1
        try:
            response = self.api.call_api(
                "/apis/networking.k8s.io/v1/ingresses",
                "GET",
                query_params=[("labelSelector", MANAGED)],
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=10,
            )
            items = json.loads(response.data).get("items", [])
        except Exception:  # like ingress-nginx: keep serving the last known routing
            self.list_errors += 1
            return
        routing: dict[tuple[str, str], CanaryRouting] = {}
        for item in items:
            meta = item["metadata"]
            name = meta["name"]
            if not name.endswith("-canary"):
                continue
            service, port = _backend(item)
            routing[(meta["namespace"], name.removesuffix("-canary"))] = (
                CanaryRouting.from_annotations(
                    meta.get("annotations") or {}, backend_service=service, backend_port=port
                )
            )
        self._routing = routing

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._refresh()
            for sim in self.sims.values():
                sim.tick()
            next_at += self.tick_seconds
            delay = next_at - time.monotonic()
            if delay < 0:
                self.slow_ticks += 1
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def render(self) -> bytes:
        """The request counter of every app, in the text exposition format."""
        lines = [
            f"# HELP {REQUESTS} Client requests served, by status (simulated)",
            f"# TYPE {REQUESTS} counter",
        ]
        for sim in list(self.sims.values()):
            state: dict[str, Any] = sim.state()
            for side, by_status in state["requests"].items():
                canary = sim.canary_upstream if side == "canary" else ""
                for status, count in sorted(by_status.items()):
                    values = {
                        "canary": canary,
                        "controller_class": sim.controller_class,
                        "controller_namespace": sim.controller_namespace,
                        "controller_pod": sim.controller_pod,
                        "ingress": sim.ingress,
                        "method": sim.method,
                        "namespace": sim.namespace,
                        "path": sim.path,
                        "service": sim.service,
                        "status": status,
                    }
                    labels = ",".join(f'{k}="{values[k]}"' for k in LABEL_NAMES)
                    lines.append(f"{REQUESTS}{{{labels}}} {float(count)}")
        return ("\n".join(lines) + "\n").encode()


def _backend(ingress: dict[str, Any]) -> tuple[str | None, str | None]:
    """The first backend Service and port of an Ingress, as ingress-nginx names upstreams."""
    spec = ingress.get("spec") or {}
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            service = (path.get("backend") or {}).get("service") or {}
            port = service.get("port") or {}
            number = port.get("number")
            return service.get("name"), str(number) if number is not None else port.get("name")
    service = (spec.get("defaultBackend") or {}).get("service") or {}
    port = service.get("port") or {}
    number = port.get("number")
    return service.get("name"), str(number) if number is not None else port.get("name")
