"""canary-bot's hold on a managed Deployment: ``spec.paused`` and the promotion mark.

canary-bot writes a managed Deployment only by server-side apply with field manager
``canary-bot``, and each apply states everything it wants of it:

- held (between releases, while one analyses): ``spec.paused: true``;
- promoting release R: ``spec.paused: false`` and the annotation
  ``canarybot.io/promoting: R``. The optional admission policy
  ``canary-bot-promotion-hold`` (manifests/admission/) refuses, while the annotation is
  there, any change of the pod template from anyone but canary-bot;
- let go (the Canary deleted): nothing, so both fields fall back to their defaults.

Because an apply that leaves a field out gives it up, the re-pause removes the
annotation in the same request.

``DeploymentWakeups`` turns the watch cache's Deployment events into prompt reconciles:
the revision loop then reacts to a template change during a promotion within one watch
event and one request, instead of at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from rollout.kube import DEPLOYMENTS, JsonObject, Kube

log = logging.getLogger("canary_bot.hold")

MANAGER = "canary-bot"
PROMOTING_ANNOTATION = "canarybot.io/promoting"

Key = tuple[str, str]


async def set_paused(
    kube: Kube,
    namespace: str,
    name: str,
    paused: bool | None,
    *,
    promoting: str = "",
    resource_version: str = "",
) -> None:
    """Own ``spec.paused`` of a Deployment with value ``paused``; None gives it up (the
    field then falls back to its default, unpaused, unless another manager sets it).

    ``promoting`` (the release's name, with ``paused=False`` only) also marks the
    Deployment as being promoted; any other apply removes that mark. With
    ``resource_version`` the apply is refused (``Conflict``) if the Deployment changed
    since it was read: an unpause checked against a template never applies to a newer one.
    """
    meta: JsonObject = {"name": name}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if promoting and paused is False:
        meta["annotations"] = {PROMOTING_ANNOTATION: promoting[:253]}
    body: JsonObject = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta}
    if paused is not None:
        body["spec"] = {"paused": paused}
    await kube.apply(DEPLOYMENTS, namespace, name, body, MANAGER)


def promoting_release(deployment: JsonObject) -> str:
    """The release the promotion mark names ("" when there is none)."""
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    return str(annotations.get(PROMOTING_ANNOTATION, ""))


def owns_paused(deployment: JsonObject) -> bool:
    """Whether canary-bot's field manager owns ``spec.paused`` and it is true."""
    if not deployment.get("spec", {}).get("paused"):
        return False
    for entry in deployment["metadata"].get("managedFields") or []:
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if (
            entry.get("manager") == MANAGER
            and entry.get("operation") == "Apply"
            and "f:paused" in spec
        ):
            return True
    return False


def held(deployment: JsonObject) -> bool:
    """Paused by canary-bot, with no promotion mark left over."""
    return owns_paused(deployment) and not promoting_release(deployment)


class DeploymentWakeups:
    """Deployment watch events -> the managed Deployments to look at now.

    ``on_event`` is an informer handler (it runs in the informer's thread); it hands each
    spec change (a new ``metadata.generation``; status updates keep it) of a watched
    Deployment to the event loop. ``wait`` returns the changed Deployments (latest object
    each) as soon as there are any, or an empty dict after ``timeout``.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._watched: set[Key] = set()
        self._generations: dict[Key, int] = {}
        self._due: dict[Key, JsonObject] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver to ``loop`` from now on (the revision loop's)."""
        self._loop = loop
        self._event = asyncio.Event()

    def watch(self, keys: set[Key]) -> None:
        """The managed Deployments (namespace, name) as of the last full pass."""
        self._watched = set(keys)
        self._generations = {k: g for k, g in self._generations.items() if k in keys}

    def on_event(self, kind: str, obj: JsonObject) -> None:
        """Informer handler (any thread)."""
        loop = self._loop
        if loop is None or kind not in ("ADDED", "MODIFIED", "LISTED"):
            return
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        try:
            generation = int(meta.get("generation", 0))
        except (TypeError, ValueError):
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(self._offer, key, generation, obj)

    def _offer(self, key: Key, generation: int, obj: JsonObject) -> None:
        if key not in self._watched:
            return
        seen = self._generations.get(key)
        self._generations[key] = generation
        if seen is not None and seen >= generation:
            return
        self._due[key] = obj
        if self._event is not None:
            self._event.set()

    async def wait(self, seconds: float) -> dict[Key, JsonObject]:
        """The Deployments whose spec changed, once there are any or after ``seconds``."""
        if self._event is None:
            await asyncio.sleep(max(0.0, seconds))
            return {}
        if not self._due:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), max(0.0, seconds))
        self._event.clear()
        due, self._due = self._due, {}
        return due

