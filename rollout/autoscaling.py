"""How many pods the canary runs, and its HorizontalPodAutoscaler.

The canary carries at most ``maxWeight`` percent of the traffic, so by default
(``spec.canaryReplicas: auto``) it gets that share of the target's pods, rounded up and at
least one: ``ceil(target replicas x maxWeight / 100)``. A target with 10 replicas and
``maxWeight: 50`` gets a 5-pod canary, not a second set of 10.

When an ``autoscaling/v2`` HorizontalPodAutoscaler scales the target, the canary gets
its own HPA, ``<target>-canary``: the same metrics and behaviour, with ``minReplicas`` and
``maxReplicas`` scaled by the same rule. It is owned by the release and deleted with the
canary Deployment. An explicit ``spec.canaryReplicas: <n>`` fixes the canary at ``n``
pods and creates no HPA.
"""

from __future__ import annotations

import contextlib
import copy
import math

from rollout.kube import Conflict, JsonObject, Kube, Resource
from rollout.models import CanaryRelease
from rollout.owner import canary_name, owned_by, owned_metadata

HORIZONTAL_POD_AUTOSCALERS = Resource("autoscaling", "v2", "horizontalpodautoscalers")


def share_of(count: int, max_weight: int) -> int:
    """``ceil(count x max_weight / 100)``, never below one pod."""
    return max(1, math.ceil(max(count, 0) * max_weight / 100))


def canary_replicas(release: CanaryRelease, target: JsonObject) -> int:
    """The canary Deployment's replica count for ``target`` (see the module docstring)."""
    wanted = release.spec.canary_replicas
    if wanted != "auto":
        return int(wanted)
    replicas = target.get("spec", {}).get("replicas")
    return share_of(1 if replicas is None else int(replicas), release.spec.analysis.max_weight)


def scales_deployment(hpa: JsonObject, deployment: str) -> bool:
    """Whether ``hpa`` scales the Deployment named ``deployment``."""
    ref = hpa.get("spec", {}).get("scaleTargetRef", {})
    group = str(ref.get("apiVersion", "apps/v1")).split("/")[0]
    return ref.get("kind") == "Deployment" and ref.get("name") == deployment and group == "apps"


def canary_autoscaler(release: CanaryRelease, target_hpa: JsonObject) -> JsonObject:
    """The canary's HPA: the target HPA's metrics and behaviour, bounds scaled down."""
    spec = target_hpa.get("spec", {})
    max_weight = release.spec.analysis.max_weight
    minimum = share_of(int(spec.get("minReplicas", 1)), max_weight)
    maximum = max(minimum, share_of(int(spec.get("maxReplicas", 1)), max_weight))
    canary_spec: JsonObject = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": canary_name(release),
        },
        "minReplicas": minimum,
        "maxReplicas": maximum,
    }
    for key in ("metrics", "behavior"):
        if key in spec:
            canary_spec[key] = copy.deepcopy(spec[key])
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": owned_metadata(release, canary_name(release)),
        "spec": canary_spec,
    }


class Autoscalers:
    """Creates and removes the canary's HPA (idempotent, only this release's)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def target_autoscaler(self, release: CanaryRelease) -> JsonObject | None:
        """The HPA that scales the target Deployment, if there is one."""
        hpas = await self.kube.list_objects(HORIZONTAL_POD_AUTOSCALERS, release.metadata.namespace)
        target = release.spec.target_ref.name
        matching = [h for h in hpas if scales_deployment(h, target) and not owned_by(h, release)]
        return matching[0] if matching else None

    async def ensure(self, release: CanaryRelease) -> None:
        """Give the canary an HPA when the target has one and the count is ``auto``."""
        if release.spec.canary_replicas != "auto":
            return
        namespace = release.metadata.namespace
        if await self.kube.get(HORIZONTAL_POD_AUTOSCALERS, namespace, canary_name(release)):
            return
        target_hpa = await self.target_autoscaler(release)
        if target_hpa is None:
            return
        with contextlib.suppress(Conflict):
            await self.kube.create(
                HORIZONTAL_POD_AUTOSCALERS, namespace, canary_autoscaler(release, target_hpa)
            )

    async def delete(self, release: CanaryRelease) -> None:
        """Remove the canary's HPA if this release owns it."""
        namespace = release.metadata.namespace
        hpa = await self.kube.get(HORIZONTAL_POD_AUTOSCALERS, namespace, canary_name(release))
        if owned_by(hpa, release):
            await self.kube.delete(HORIZONTAL_POD_AUTOSCALERS, namespace, canary_name(release))
