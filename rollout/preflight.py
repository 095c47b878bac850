"""Checks a release request against the cluster before anything changes.

Used twice: by the Slack front to answer a bad ``/canary start`` at once, and by the
engine when it first sees a CanaryRelease (one created with kubectl skips the front).
Reads only; never writes.
"""

from __future__ import annotations

from collections.abc import Iterable

from rollout.kube import DEPLOYMENTS, INGRESSES, RELEASES, Kube
from rollout.models import FINAL_PHASES, CanaryReleaseSpec, Phase
from rollout.ownership import ownership_problems
from rollout.routers.select import route_problems
from rollout.workloads import container_images

# Namespaces canary-bot never acts in, whatever a CanaryRelease there asks: the cluster's
# own, where a copy of a system Deployment's pod template (its ServiceAccount, secrets
# and host access) with someone else's image would be a privilege escalation.
ALWAYS_PROTECTED = frozenset({"kube-system", "kube-public", "kube-node-lease"})


def protected_namespaces(own_namespace: str = "", extra: Iterable[str] = ()) -> frozenset[str]:
    """The namespaces the engine refuses: the cluster's, its own, and the configured ones."""
    names = {n.strip() for n in extra if n.strip()}
    if own_namespace:
        names.add(own_namespace)
    return ALWAYS_PROTECTED | names


def parse_namespace_list(text: str | None) -> tuple[str, ...]:
    """``CANARY_BOT_PROTECTED_NAMESPACES``: names separated by commas or spaces."""
    return tuple(n for n in (text or "").replace(",", " ").split() if n)


def protected_refusal(namespace: str, protected: frozenset[str]) -> str | None:
    """Why a release in ``namespace`` is refused, or None when canary-bot may act there."""
    if namespace not in protected:
        return None
    return (
        f"canary-bot does not act in namespace {namespace}: it is protected "
        "(the cluster's system namespaces, canary-bot's own, and those listed in "
        "CANARY_BOT_PROTECTED_NAMESPACES); nothing was changed. Release the app from its "
        "own namespace."
    )


async def check_start(
    kube: Kube, namespace: str, name: str, spec: CanaryReleaseSpec, uid: str = ""
) -> list[str]:
    """Problems that make the release impossible, each saying how to fix it; [] if fine.

    ``uid``: the release's, once it exists (its own earlier edit of a route is fine).
    """
    problems: list[str] = []
    target = spec.target_ref.name
    deployment = await kube.get(DEPLOYMENTS, namespace, target)
    if deployment is None:
        problems.append(
            f"Deployment {target} not found in namespace {namespace}; "
            f"check the name with `kubectl get deployments -n {namespace}`"
        )
    else:
        containers = container_images(deployment)
        for container, image in spec.images.items():
            if container not in containers:
                # images only replace the target's containers: a new one would run code
                # the target's owner never deployed, under its identity
                known = ", ".join(sorted(containers)) or "none"
                problems.append(
                    f"Deployment {target} has no container named {container} "
                    f"(containers: {known}); images can only replace existing containers"
                )
            elif containers[container] == image and spec.canary_ref is None:
                # (a managed target's template already holds the revision being released)
                problems.append(
                    f"container {container} of Deployment {target} already runs {image}; "
                    "nothing to release"
                )
    if spec.ingress_ref is not None and (
        await kube.get(INGRESSES, namespace, spec.ingress_ref.name) is None
    ):
        problems.append(
            f"Ingress {spec.ingress_ref.name} not found in namespace {namespace}; the canary "
            "needs the app's Ingress to shift traffic (set it with ingress=<name>)"
        )
    problems += await route_problems(kube, namespace, spec, uid)
    of_target = await kube.list_objects(RELEASES, namespace, fields={"spec.targetRef.name": target})
    for raw in of_target:
        other = raw["metadata"]["name"]
        if other == name:
            continue
        phase = raw.get("status", {}).get("phase", Phase.INITIALIZING.value)
        other_target = raw.get("spec", {}).get("targetRef", {}).get("name")
        if other_target == target and phase not in FINAL_PHASES:
            problems.append(
                f"Deployment {target} already has a rollout in progress ({other}, {phase}); "
                f"wait for it or abort it with `/canary abort {other} -n {namespace}`"
            )
    return problems + await ownership_problems(kube, namespace, name, spec, of_target)
