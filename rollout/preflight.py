"""Checks a release request against the cluster before anything changes.

Used twice: by the Slack front to answer a bad ``/canary start`` at once, and by the
engine when it first sees a CanaryRelease (one created with kubectl skips the front).
Reads only; never writes.
"""

from __future__ import annotations

from rollout.kube import DEPLOYMENTS, INGRESSES, RELEASES, Kube
from rollout.models import CanaryReleaseSpec, Phase
from rollout.ownership import ownership_problems


async def check_start(kube: Kube, namespace: str, name: str, spec: CanaryReleaseSpec) -> list[str]:
    """Problems that make the release impossible, each saying how to fix it; [] if fine."""
    problems: list[str] = []
    target = spec.target_ref.name
    deployment = await kube.get(DEPLOYMENTS, namespace, target)
    if deployment is None:
        problems.append(
            f"Deployment {target} not found in namespace {namespace}; "
            f"check the name with `kubectl get deployments -n {namespace}`"
        )
    else:
        containers = {
            c["name"]: c.get("image", "")
            for c in deployment["spec"]["template"]["spec"].get("containers", [])
        }
        for container, image in spec.images.items():
            if container not in containers:
                known = ", ".join(sorted(containers)) or "none"
                problems.append(
                    f"Deployment {target} has no container named {container} (containers: {known})"
                )
            elif containers[container] == image:
                problems.append(
                    f"container {container} of Deployment {target} already runs {image}; "
                    "nothing to release"
                )
    if await kube.get(INGRESSES, namespace, spec.ingress_ref.name) is None:
        problems.append(
            f"Ingress {spec.ingress_ref.name} not found in namespace {namespace}; the canary "
            "needs the app's Ingress to shift traffic (set it with ingress=<name>)"
        )
    for raw in await kube.list_objects(RELEASES, namespace):
        other = raw["metadata"]["name"]
        if other == name:
            continue
        phase = raw.get("status", {}).get("phase", Phase.INITIALIZING.value)
        other_target = raw.get("spec", {}).get("targetRef", {}).get("name")
        if other_target == target and phase not in (Phase.SUCCEEDED, Phase.FAILED):
            problems.append(
                f"Deployment {target} already has a rollout in progress ({other}, {phase}); "
                f"wait for it or abort it with `/canary abort {other} -n {namespace}`"
            )
    return problems + await ownership_problems(kube, namespace, name, spec)
