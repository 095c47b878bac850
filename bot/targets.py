"""Read-only look at the Deployment a release targets (its containers), via ``rollout.kube``.

The front only reads Deployments, to turn ``image=<ref>`` into ``<container>=<ref>``; it
never writes them.
"""

from __future__ import annotations

from rollout.kube import DEPLOYMENTS, Kube
from rollout.workloads import container_images


async def deployment_containers(kube: Kube, namespace: str, name: str) -> dict[str, str] | None:
    """Container name → image of a Deployment's pod template; None if it does not exist."""
    deployment = await kube.get(DEPLOYMENTS, namespace, name)
    if deployment is None:
        return None
    return container_images(deployment)
