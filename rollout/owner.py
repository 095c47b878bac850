"""Names, labels and owner references shared by every canary object.

``<target>-canary`` and ``<ingress>-canary`` are also the names Flagger and Argo Rollouts
use, so such an object may exist and belong to someone else. The engine writes only to
objects whose ownerReferences name the release (``owned_by``); anything else is refused
with ``not_owned``, which says whose the object is.
"""

from __future__ import annotations

from rollout.kube import JsonObject, KubeError
from rollout.models import API_VERSION, GROUP, KIND, CanaryRelease

RELEASE_LABEL = "canarybot.io/release"
MANAGED_BY = {"app.kubernetes.io/managed-by": "canary-bot"}


def canary_name(release: CanaryRelease) -> str:
    """``<target>-canary``: the canary Deployment's and Service's name."""
    return f"{release.spec.target_ref.name}-canary"


def canary_ingress_name(release: CanaryRelease) -> str:
    """``<ingress>-canary`` (with a routeRef there is no canary Ingress: ``<target>-canary``)."""
    ref = release.spec.ingress_ref
    return f"{ref.name if ref is not None else release.spec.target_ref.name}-canary"


def owned_metadata(
    release: CanaryRelease, name: str, labels: dict[str, str] | None = None
) -> JsonObject:
    """Metadata for a canary object: owned by the release, so deleting it cleans up."""
    return {
        "name": name,
        "namespace": release.metadata.namespace,
        "labels": {**(labels or {}), **MANAGED_BY, RELEASE_LABEL: release.metadata.name},
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": release.metadata.name,
                "uid": release.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ],
    }


def owned_by(obj: JsonObject | None, release: CanaryRelease) -> bool:
    """Whether ``obj`` belongs to ``release`` (never touch another release's canary)."""
    if obj is None:
        return False
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == release.metadata.uid for ref in refs)


class NotOwned(KubeError):
    """An object the engine would write to belongs to someone else; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(409, "NotOwned", message)


def created_by_release(obj: JsonObject, release_name: str) -> bool:
    """Whether ``obj`` is owned by the CanaryRelease ``release_name`` (same namespace)."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(_is_release_ref(ref) and ref.get("name") == release_name for ref in refs)


def _is_release_ref(ref: JsonObject) -> bool:
    return ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")


def describe_owner(obj: JsonObject) -> str:
    """Who an object belongs to, in words: ``CanaryRelease web-x7k2p`` or
    ``not created by canary-bot (owner: Canary podinfo, flagger.app/v1beta1)``."""
    meta = obj.get("metadata", {})
    refs = meta.get("ownerReferences") or []
    ours = [r for r in refs if _is_release_ref(r)]
    gone = " (being deleted)" if meta.get("deletionTimestamp") else ""
    if ours:
        return f"CanaryRelease {ours[0].get('name', '?')}{gone}"
    controller = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if controller is not None:
        kind, name = controller.get("kind", "?"), controller.get("name", "?")
        who = f"{kind} {name}, {controller.get('apiVersion', '?')}"
        return f"not created by canary-bot (owner: {who}){gone}"
    manager = (meta.get("labels") or {}).get("app.kubernetes.io/managed-by")
    if manager and manager != MANAGED_BY["app.kubernetes.io/managed-by"]:
        return f"not created by canary-bot (managed by {manager}){gone}"
    return f"not created by canary-bot{gone}"


def not_owned(kind: str, obj: JsonObject) -> NotOwned:
    """The error for a write refused because ``obj`` (a ``kind``) is someone else's."""
    name = obj.get("metadata", {}).get("name", "?")
    owner = describe_owner(obj)
    whose = f"belongs to {owner}" if owner.startswith(KIND) else f"was {owner}"
    return NotOwned(
        f"{kind} {name} {whose}; canary-bot changes only the objects it created for this "
        "release, so it left it alone"
    )
