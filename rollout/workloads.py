"""Canary workloads: the ``<target>-canary`` Deployment and Service, and the target itself.

The canary Deployment is the target's pod template with the new images. Pod labels that
the target selects on get a ``-canary`` suffix so neither the target's ReplicaSets nor the
stable Service ever pick canary pods; the canary Service selects only those.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

from rollout.kube import DEPLOYMENTS, SERVICES, Conflict, JsonObject, Kube
from rollout.models import CanaryRelease
from rollout.owner import canary_name, owned_by, owned_metadata

CANARY_SUFFIX = "-canary"


@dataclass(frozen=True)
class Readiness:
    """Whether a Deployment has fully rolled out, and why not in words."""

    ready: bool
    message: str


def readiness(deployment: JsonObject | None) -> Readiness:
    """Rollout status as ``kubectl rollout status`` judges it."""
    if deployment is None:
        return Readiness(False, "deployment does not exist")
    spec = deployment.get("spec", {})
    status = deployment.get("status", {})
    wanted = int(spec.get("replicas", 1))
    generation = int(deployment["metadata"].get("generation", 0))
    if int(status.get("observedGeneration", 0)) < generation:
        return Readiness(False, "waiting for the deployment spec update to be observed")
    for condition in status.get("conditions", []):
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return Readiness(
                False, f"deployment exceeded its progress deadline: {condition.get('message', '')}"
            )
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    total = int(status.get("replicas", 0))
    if updated < wanted:
        return Readiness(False, f"{updated} of {wanted} updated replicas available")
    if total > updated:
        return Readiness(False, f"{total - updated} old replicas are pending termination")
    if available < updated:
        return Readiness(False, f"{available} of {updated} updated replicas available")
    return Readiness(True, f"{available} of {wanted} replicas available")


def container_images(deployment: JsonObject | None) -> dict[str, str]:
    """Container name -> image of a Deployment's pod template."""
    if deployment is None:
        return {}
    containers = deployment["spec"]["template"]["spec"].get("containers", [])
    return {c["name"]: c.get("image", "") for c in containers}


def _canary_labels(labels: dict[str, str], selector: dict[str, str]) -> dict[str, str]:
    return {k: (v + CANARY_SUFFIX if k in selector else v) for k, v in labels.items()}


def canary_deployment(release: CanaryRelease, target: JsonObject) -> JsonObject:
    """The canary Deployment built from the target."""
    spec = copy.deepcopy(target["spec"])
    selector: dict[str, str] = spec.get("selector", {}).get("matchLabels", {})
    canary_selector = {k: v + CANARY_SUFFIX for k, v in selector.items()}
    template = spec["template"]
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = _canary_labels(template_meta.get("labels", {}), selector)
    for container in template["spec"].get("containers", []):
        if container["name"] in release.spec.images:
            container["image"] = release.spec.images[container["name"]]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owned_metadata(release, canary_name(release), target["metadata"].get("labels")),
        "spec": {
            "replicas": spec.get("replicas", 1),
            "selector": {"matchLabels": canary_selector},
            "template": template,
            "strategy": spec.get("strategy", {"type": "RollingUpdate"}),
            "minReadySeconds": spec.get("minReadySeconds", 0),
            "revisionHistoryLimit": 2,
        },
    }


def canary_service(
    release: CanaryRelease, target: JsonObject, stable_service: JsonObject | None
) -> JsonObject:
    """A Service selecting only canary pods, on the same ports as the stable Service."""
    selector: dict[str, str] = target["spec"].get("selector", {}).get("matchLabels", {})
    port = release.spec.service
    if stable_service is not None and stable_service.get("spec", {}).get("ports"):
        ports = [
            {k: v for k, v in p.items() if k in ("name", "port", "targetPort", "protocol")}
            for p in stable_service["spec"]["ports"]
        ]
    else:
        ports = [
            {
                "name": port.name,
                "port": port.port,
                "targetPort": port.target_port or port.port,
                "protocol": "TCP",
            }
        ]
    if port.target_port is not None:
        for p in ports:
            if p["port"] == port.port:
                p["targetPort"] = port.target_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owned_metadata(release, canary_name(release)),
        "spec": {
            "type": "ClusterIP",
            "selector": {k: v + CANARY_SUFFIX for k, v in selector.items()},
            "ports": ports,
        },
    }


class Workloads:
    """Creates, observes, promotes and removes the canary workload."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def target(self, release: CanaryRelease) -> JsonObject | None:
        """The user's Deployment."""
        return await self.kube.get(
            DEPLOYMENTS, release.metadata.namespace, release.spec.target_ref.name
        )

    async def canary(self, release: CanaryRelease) -> JsonObject | None:
        """The canary Deployment."""
        return await self.kube.get(DEPLOYMENTS, release.metadata.namespace, canary_name(release))

    async def stable_service(self, release: CanaryRelease) -> JsonObject | None:
        """The Service the main Ingress points at (the target's name by convention)."""
        return await self.kube.get(
            SERVICES, release.metadata.namespace, release.spec.target_ref.name
        )

    async def ensure_canary(self, release: CanaryRelease, target: JsonObject) -> None:
        """Create the canary Service and Deployment where missing (idempotent)."""
        namespace = release.metadata.namespace
        if await self.kube.get(SERVICES, namespace, canary_name(release)) is None:
            service = canary_service(release, target, await self.stable_service(release))
            with contextlib.suppress(Conflict):
                await self.kube.create(SERVICES, namespace, service)
        if await self.canary(release) is None:
            with contextlib.suppress(Conflict):
                await self.kube.create(DEPLOYMENTS, namespace, canary_deployment(release, target))

    async def set_target_images(self, release: CanaryRelease, images: dict[str, str]) -> None:
        """Patch the target's containers to ``images`` (a normal rolling update)."""
        patch = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": c, "image": i} for c, i in sorted(images.items())]
                    }
                }
            }
        }
        await self.kube.strategic_patch(
            DEPLOYMENTS, release.metadata.namespace, release.spec.target_ref.name, patch
        )

    async def delete_canary(self, release: CanaryRelease) -> None:
        """Remove the canary Service and Deployment (only this release's).

        The Deployment goes last: a finished release whose canary Deployment still exists
        is cleaned up again (``decide``), so a crash in between leaves nothing behind.
        """
        namespace = release.metadata.namespace
        for resource in (SERVICES, DEPLOYMENTS):
            obj = await self.kube.get(resource, namespace, canary_name(release))
            if owned_by(obj, release):
                await self.kube.delete(resource, namespace, canary_name(release))
