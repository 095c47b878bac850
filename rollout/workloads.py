"""Canary workloads: the ``<target>-canary`` Deployment and Service, and the target itself.

The canary Deployment is the target's pod template with the new images. Pod labels that
the target selects on get a ``-canary`` suffix so neither the target's ReplicaSets nor the
stable Service ever pick canary pods; the canary Service selects only those.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass
from datetime import datetime

from rollout.autoscaling import Autoscalers, canary_replicas
from rollout.kube import DEPLOYMENTS, SERVICES, Conflict, JsonObject, Kube, Resource
from rollout.models import CanaryRelease
from rollout.owner import canary_name, not_owned, owned_by, owned_metadata

CANARY_SUFFIX = "-canary"

log = logging.getLogger("canary_bot.workloads")


@dataclass(frozen=True)
class Readiness:
    """Whether a Deployment has fully rolled out, and why not in words."""

    ready: bool
    message: str
    # When the Deployment controller last saw progress (its Progressing condition's
    # lastUpdateTime): a slow rollout that keeps moving is not stuck.
    progressed_at: datetime | None = None


def _progressed_at(status: JsonObject) -> datetime | None:
    for condition in status.get("conditions", []):
        if condition.get("type") == "Progressing" and condition.get("lastUpdateTime"):
            with contextlib.suppress(ValueError):
                stamp = str(condition["lastUpdateTime"]).replace("Z", "+00:00")
                return datetime.fromisoformat(stamp)
    return None


def readiness(deployment: JsonObject | None) -> Readiness:
    """Rollout status as ``kubectl rollout status`` judges it."""
    if deployment is None:
        return Readiness(False, "deployment does not exist")
    state = _rollout_state(deployment)
    return Readiness(state.ready, state.message, _progressed_at(deployment.get("status", {})))


def _rollout_state(deployment: JsonObject) -> Readiness:
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
    """Container name -> image of a Deployment's pod template ({} for no Deployment)."""
    if deployment is None:
        return {}
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    return {str(c["name"]): str(c.get("image", "")) for c in containers or []}


def _canary_labels(labels: dict[str, str], selector: dict[str, str]) -> dict[str, str]:
    return {k: (v + CANARY_SUFFIX if k in selector else v) for k, v in labels.items()}


def canary_deployment(release: CanaryRelease, target: JsonObject) -> JsonObject:
    """The canary Deployment built from the target, sized to carry maxWeight of the traffic."""
    spec = copy.deepcopy(target["spec"])
    selector: dict[str, str] = spec.get("selector", {}).get("matchLabels", {})
    canary_selector = {k: v + CANARY_SUFFIX for k, v in selector.items()}
    template = spec["template"]
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = _canary_labels(template_meta.get("labels", {}), selector)
    # Only containers the target has get a new image; a name it lacks adds nothing.
    for container in template["spec"].get("containers", []):
        if container["name"] in release.spec.images:
            container["image"] = release.spec.images[container["name"]]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owned_metadata(release, canary_name(release), target["metadata"].get("labels")),
        "spec": {
            "replicas": canary_replicas(release, target),
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


class CanaryWorkloads:
    """Creates, observes, promotes and removes the canary workload."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.autoscalers = Autoscalers(kube)

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
        """Create the canary Service and Deployment where missing (idempotent).

        An existing object of the same name is used only if this release owns it;
        otherwise ``NotOwned`` names its owner and nothing is changed. A Conflict on
        create (someone was quicker) is checked the same way, not ignored.
        """
        namespace = release.metadata.namespace
        existing = await self.kube.get(SERVICES, namespace, canary_name(release))
        if existing is None:
            service = canary_service(release, target, await self.stable_service(release))
            await self._create(release, SERVICES, "Service", service)
        elif not owned_by(existing, release):
            raise not_owned("Service", existing)
        existing = await self.canary(release)
        if existing is None:
            await self._create(
                release, DEPLOYMENTS, "Deployment", canary_deployment(release, target)
            )
        elif not owned_by(existing, release):
            raise not_owned("Deployment", existing)
        await self.autoscalers.ensure(release)

    async def _create(
        self, release: CanaryRelease, resource: Resource, kind: str, body: JsonObject
    ) -> None:
        namespace = release.metadata.namespace
        try:
            await self.kube.create(resource, namespace, body)
        except Conflict:
            raced = await self.kube.get(resource, namespace, body["metadata"]["name"])
            if raced is None or owned_by(raced, release):
                return  # ours (an earlier attempt), or gone: the next tick converges
            raise not_owned(kind, raced) from None

    async def set_target_images(self, release: CanaryRelease, images: dict[str, str]) -> None:
        """Patch the target's existing containers to ``images`` (a normal rolling update).

        Never adds a container: a strategic merge patch would append one whose name the
        target lacks, so such names are left out (and logged); the promotion then never
        completes and ends at its progress deadline, in a rollback.
        """
        target = await self.target(release)
        existing = container_images(target)
        unknown = sorted(set(images) - set(existing))
        if unknown:
            log.warning(
                "not adding containers %s to Deployment %s/%s: it has only %s",
                ", ".join(unknown),
                release.metadata.namespace,
                release.spec.target_ref.name,
                ", ".join(sorted(existing)) or "none",
            )
        wanted = {c: i for c, i in sorted(images.items()) if c in existing}
        if target is None or not wanted:
            return
        patch = {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": c, "image": i} for c, i in wanted.items()]}
                }
            },
        }
        await self.kube.strategic_patch(
            DEPLOYMENTS, release.metadata.namespace, release.spec.target_ref.name, patch
        )

    async def delete_canary(self, release: CanaryRelease) -> None:
        """Remove the canary's HPA, Service and Deployment (only this release's).

        The Deployment goes last: a finished release whose canary Deployment still exists
        is cleaned up again (``decide``), so a crash in between leaves nothing behind.
        """
        namespace = release.metadata.namespace
        await self.autoscalers.delete(release)
        for resource in (SERVICES, DEPLOYMENTS):
            obj = await self.kube.get(resource, namespace, canary_name(release))
            if owned_by(obj, release):
                await self.kube.delete(resource, namespace, canary_name(release))
