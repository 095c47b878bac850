"""The canary the benchmarks release: the tutorial's podinfo with a chosen analysis block."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client as k8s

from rollout.models import CanaryReleaseSpec, new_object
from sandbox.prometheus import PrometheusServer, ScrapeSlot
from sandbox.traffic import TrafficSimulator

OLD = "stefanprodan/podinfo:6.0.0"
NEW = "stefanprodan/podinfo:6.0.3"


def analysis(
    interval: str,
    *,
    threshold: int = 5,
    step_weight: int = 10,
    max_weight: int = 50,
    window: str = "10s",
    fail_fast: float | None = None,
) -> dict[str, Any]:
    """The tutorial's analysis block with the request-success-rate check (min 99 %)."""
    metric: dict[str, Any] = {
        "name": "request-success-rate",
        "thresholdRange": {"min": 99},
        "interval": window,
    }
    if fail_fast is not None:
        metric["failFast"] = {"min": fail_fast}
    return {
        "interval": interval,
        "threshold": threshold,
        "maxWeight": max_weight,
        "stepWeight": step_weight,
        "metrics": [metric],
    }


def release_spec(app: str, analysis_block: dict[str, Any], image: str = NEW) -> CanaryReleaseSpec:
    """A CanaryRelease spec for the podinfo-shaped Deployment ``app``."""
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": app},
            "ingressRef": {"name": app},
            "images": {"podinfod": image},
            "service": {"port": 80, "targetPort": 9898},
            "progressDeadlineSeconds": 600,
            "analysis": analysis_block,
        }
    )


def create_release(
    api: k8s.ApiClient, namespace: str, name: str, spec: CanaryReleaseSpec
) -> dict[str, Any]:
    """Create a CanaryRelease as kubectl would (no engine code involved)."""
    body = new_object(name, namespace, spec)
    result: dict[str, Any] = k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        "canarybot.io", "v1alpha1", namespace, "canaryreleases", body
    )
    return result


class Traffic:
    """One TrafficSimulator per app, each exposed through its own Prometheus scrape slot."""

    def __init__(self, prometheus: PrometheusServer, kubeconfig: str) -> None:
        self.prometheus = prometheus
        self.kubeconfig = kubeconfig
        self.sims: dict[tuple[str, str], TrafficSimulator] = {}
        self._slots: list[ScrapeSlot] = []
        self._lock = threading.Lock()

    def start(self, apps: list[tuple[str, str]], **settings: Any) -> None:
        """Start a simulator for every (namespace, app); returns once all are scraped."""

        def one(app: tuple[str, str]) -> None:
            namespace, name = app
            sim = TrafficSimulator(
                namespace, name, name, 80, kubeconfig=self.kubeconfig, **settings
            )
            sim.start()
            # acquired concurrently: new slots then share one target-discovery round trip
            slot = self.prometheus.acquire_slot(timeout=90)
            slot.attach(sim.render_metrics)
            with self._lock:
                self.sims[app] = sim
                self._slots.append(slot)
            self.prometheus.wait_for_target_up(slot.address, timeout=60, since=slot.attached_at)

        with ThreadPoolExecutor(max_workers=max(1, len(apps))) as pool:
            list(pool.map(one, apps))

    def stop(self) -> None:
        """Stop every simulator and give the slots back."""
        for slot in self._slots:
            self.prometheus.release_slot(slot)
        for sim in self.sims.values():
            sim.stop()
        self._slots.clear()
        self.sims.clear()
