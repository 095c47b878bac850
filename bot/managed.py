"""``/canary start`` on a Deployment that a ``Canary`` protects.

The bot does not create the release itself: it writes the new image(s) into the
Deployment's pod template, the one change ``kubectl set image`` would make, and the
engine's revision path opens the release with the Canary's analysis, exactly as for a
change from kubectl, Flux or Argo CD. The field manager of that write names the Slack
user (``canary-bot-start/<user id>``) so that the card can say who made the change
without any other field of the Deployment being touched.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from bot.commands import ReleaseOptions
from rollout.kube import DEPLOYMENTS, Kube, KubeError
from rollout.models import CanaryRelease, is_valid_image
from rollout.revisions import find_canary_for
from rollout.store import ReleaseStore

# ``canary-bot-start/<Slack user id>``: the field manager of a template change made by
# /canary start (the API server keeps it in managedFields, the card shows the user).
START_MANAGER_PREFIX = "canary-bot-start/"
_USER_ID = re.compile(r"^[A-Z0-9]{1,32}$")
# How long the start reply waits for the release (and its thread) before answering
# without the link: detection is a watch event away, the thread one Slack call more.
RELEASE_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Protection:
    """The Canary that protects a Deployment."""

    canary: str
    namespace: str


def start_manager(user: str) -> str:
    """The field manager for a /canary start template write by ``user``."""
    return START_MANAGER_PREFIX + (user if _USER_ID.match(user) else "unknown")


def user_of_manager(manager: str) -> str | None:
    """The Slack user id in a ``canary-bot-start/<id>`` field manager, else None."""
    if not manager.startswith(START_MANAGER_PREFIX):
        return None
    user = manager[len(START_MANAGER_PREFIX) :]
    return user if _USER_ID.match(user) and user != "unknown" else None


async def protection_of(kube: Kube, namespace: str, deployment: str) -> Protection | None:
    """The Canary (not being deleted) whose targetRef is ``deployment``, if any."""
    canary = await find_canary_for(kube, namespace, deployment)
    return None if canary is None else Protection(canary.metadata.name, namespace)


def analysis_flags(options: ReleaseOptions) -> list[str]:
    """Flags that would change the analysis: a protected Deployment uses its Canary's."""
    given = {
        "--profile": options.profile,
        "--step": options.step_weight,
        "--max": options.max_weight,
        "--interval": options.interval,
        "--threshold": options.threshold,
        "--approval": options.approval or None,
        "--skip-analysis": options.skip_analysis or None,
        "--ingress": options.ingress,
        "--port": options.port,
    }
    return [flag for flag, value in given.items() if value is not None]


def managed_image_problem(
    deployment: str, images: dict[str, str], containers: dict[str, str]
) -> str | None:
    """Why ``images`` cannot be written into the template, or None."""
    missing = sorted(set(images) - set(containers))
    if missing:
        return (
            f"Deployment {deployment} has no container {', '.join(missing)} "
            f"(it has {', '.join(sorted(containers)) or 'none'})"
        )
    for container, image in images.items():
        if not is_valid_image(image):
            return f"{container}={image[:100]}: not a valid image reference (e.g. stefanprodan/podinfo:6.0.3)"
    if all(containers[c] == i for c, i in images.items()):
        return (
            f"Deployment {deployment}'s template already asks for these images, so there is "
            "no new revision to release. /canary status shows what its pods run."
        )
    return None


async def write_images(
    kube: Kube, namespace: str, deployment: str, images: dict[str, str], user: str
) -> None:
    """Patch the template's containers (by name) and nothing else, as kubectl set image."""
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": c, "image": i} for c, i in images.items()]}
            }
        }
    }
    await kube.request(
        "PATCH",
        DEPLOYMENTS.path(namespace, deployment),
        patch,
        content_type="application/strategic-merge-patch+json",
        query=[("fieldManager", start_manager(user))],
    )


async def wait_for_release(
    store: ReleaseStore,
    namespace: str,
    deployment: str,
    images: dict[str, str],
    known: set[str],
    *,
    with_thread: bool,
    wait_seconds: float = RELEASE_WAIT_SECONDS,
) -> CanaryRelease | None:
    """The release the revision path opened for ``images`` (with ``with_thread``, once
    its Slack thread exists).

    ``known`` are the release names that existed before the write. Returns the release
    (maybe still without a thread) at the deadline, or None if none appeared.
    """
    deadline = time.monotonic() + wait_seconds
    found: CanaryRelease | None = None
    while time.monotonic() < deadline:
        try:
            releases = await store.list_objects(namespace)
        except KubeError:
            releases = []
        for release in releases:
            if (
                release.metadata.name not in known
                and release.spec.target_ref.name == deployment
                and dict(release.spec.images) == images
            ):
                found = release
        if found is not None and (found.status.notification.thread_ts or not with_thread):
            return found
        await asyncio.sleep(0.25)
    return found
