"""Names, labels and owner references shared by every canary object."""

from __future__ import annotations

from rollout.kube import JsonObject
from rollout.models import API_VERSION, KIND, CanaryRelease

RELEASE_LABEL = "canarybot.io/release"
MANAGED_BY = {"app.kubernetes.io/managed-by": "canary-bot"}


def canary_name(release: CanaryRelease) -> str:
    """``<target>-canary``: the canary Deployment's and Service's name."""
    return f"{release.spec.target_ref.name}-canary"


def canary_ingress_name(release: CanaryRelease) -> str:
    """``<ingress>-canary``."""
    return f"{release.spec.ingress_ref.name}-canary"


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
