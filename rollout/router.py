"""Traffic routing: the ``Router`` protocol and its ingress-nginx implementation.

ingress-nginx sends a share of a host/path's requests to the backend of a second Ingress
annotated ``canary: "true"``. The canary Ingress copies the main Ingress's rules with the
backend swapped for ``<target>-canary``; weight 0 keeps the object but sends no traffic.
"""

from __future__ import annotations

import copy
from typing import Protocol

from rollout.kube import INGRESSES, Conflict, JsonObject, Kube, KubeError, NotFound
from rollout.models import CanaryRelease
from rollout.owner import canary_ingress_name, canary_name, not_owned, owned_by, owned_metadata

PREFIX = "nginx.ingress.kubernetes.io/"
CANARY = PREFIX + "canary"
WEIGHT = PREFIX + "canary-weight"
BY_HEADER = PREFIX + "canary-by-header"
BY_HEADER_VALUE = PREFIX + "canary-by-header-value"
BY_HEADER_PATTERN = PREFIX + "canary-by-header-pattern"
BY_COOKIE = PREFIX + "canary-by-cookie"
_WEIGHT_POINTER = WEIGHT.replace("/", "~1")  # JSON pointer escaping (RFC 6901)
_DROPPED = ("kubectl.kubernetes.io/last-applied-configuration",)


class Router(Protocol):
    """Moves traffic between the stable and the canary side."""

    async def reconcile(self, release: CanaryRelease, weight: int) -> None:
        """Create or update the canary route at ``weight``."""
        ...

    async def get_weight(self, release: CanaryRelease) -> int | None:
        """The weight in force now; None when there is no canary route."""
        ...

    async def finalize(self, release: CanaryRelease) -> None:
        """Remove the canary route (the caller sets weight 0 first)."""
        ...

    async def waiting_for(self, release: CanaryRelease) -> str:
        """Why the weight written last is not in force yet ('' when it is): a step's
        metrics count only once it is."""
        ...


class RouterError(Exception):
    """The route cannot be built (e.g. the main Ingress is gone)."""


def canary_annotations(release: CanaryRelease, main: JsonObject, weight: int) -> dict[str, str]:
    """The main Ingress's annotations minus canary ones, plus the canary's own."""
    source = main.get("metadata", {}).get("annotations") or {}
    annotations = {
        k: v for k, v in source.items() if not k.startswith(CANARY) and k not in _DROPPED
    }
    annotations[CANARY] = "true"
    annotations[WEIGHT] = str(weight)
    for rule in release.spec.analysis.match:
        for header, matcher in rule.headers.items():
            if header.lower() == "cookie":
                if matcher.exact:
                    annotations[BY_COOKIE] = matcher.exact
            else:
                annotations[BY_HEADER] = header
                if matcher.exact:
                    annotations[BY_HEADER_VALUE] = matcher.exact
                elif matcher.regex:
                    annotations[BY_HEADER_PATTERN] = matcher.regex
    return annotations


def canary_ingress(release: CanaryRelease, main: JsonObject, weight: int) -> JsonObject:
    """The full canary Ingress built from the main one."""
    spec = copy.deepcopy(main.get("spec", {}))
    backend = {
        "service": {"name": canary_name(release), "port": {"number": release.spec.service.port}}
    }
    spec.pop("defaultBackend", None)
    spec.pop("tls", None)  # TLS stays with the main Ingress; the canary shares its host
    for rule in spec.get("rules", []):
        for path in rule.get("http", {}).get("paths", []):
            path["backend"] = copy.deepcopy(backend)
    if not spec.get("rules"):
        spec["defaultBackend"] = backend
    metadata = owned_metadata(release, canary_ingress_name(release))
    metadata["annotations"] = canary_annotations(release, main, weight)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    }


def _weight_ops(release: CanaryRelease, weight: int) -> list[JsonObject]:
    """A JSON patch that sets the weight only if the first owner is this release."""
    return [
        {"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": release.metadata.uid},
        {"op": "add", "path": "/metadata/annotations/" + _WEIGHT_POINTER, "value": str(weight)},
    ]


def weight_of(ingress: JsonObject) -> int:
    """The canary weight an Ingress carries (0 when not a canary or unparsable)."""
    annotations = ingress.get("metadata", {}).get("annotations") or {}
    if annotations.get(CANARY) != "true":
        return 0
    try:
        return int(annotations.get(WEIGHT, "0"))
    except ValueError:
        return 0


class NginxRouter:
    """``Router`` for ingress-nginx canary annotations."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def reconcile(self, release: CanaryRelease, weight: int) -> None:
        """Set the canary Ingress's weight, creating the Ingress if it is missing.

        Only this release's Ingress is ever changed: the patch tests the owner's uid in
        the same request, so an Ingress of the same name that belongs to someone else
        (another release, Flagger, a person) is left as it is and ``NotOwned`` says whose.
        """
        namespace = release.metadata.namespace
        name = canary_ingress_name(release)
        try:
            # one request in the common case: the route exists and only the weight moves
            await self.kube.json_patch(INGRESSES, namespace, name, _weight_ops(release, weight))
            return
        except NotFound:
            pass
        except KubeError as exc:
            if exc.status not in (400, 409, 422):
                raise
            await self._patch_if_owned(release, weight)
            return
        ref = release.spec.ingress_ref
        if ref is None:
            raise RouterError(f"{release.key} has no ingressRef; it routes with its routeRef")
        main = await self.kube.get(INGRESSES, namespace, ref.name)
        if main is None:
            raise RouterError(f"Ingress {ref.name} not found in {namespace}")
        try:
            await self.kube.create(INGRESSES, namespace, canary_ingress(release, main, weight))
        except Conflict:
            await self._patch_if_owned(release, weight)  # created meanwhile: whose is it?

    async def _patch_if_owned(self, release: CanaryRelease, weight: int) -> None:
        """The slow path: read the Ingress, refuse if it is not ours, else patch it."""
        namespace = release.metadata.namespace
        name = canary_ingress_name(release)
        ingress = await self.kube.get(INGRESSES, namespace, name)
        if ingress is None:
            raise Conflict(409, "Conflict", f"Ingress {name} changed meanwhile; retrying")
        if not owned_by(ingress, release):
            raise not_owned("Ingress", ingress)
        version = ingress["metadata"].get("resourceVersion", "")
        patch = {"metadata": {"resourceVersion": version, "annotations": {WEIGHT: str(weight)}}}
        await self.kube.merge_patch(INGRESSES, namespace, name, patch)

    async def get_weight(self, release: CanaryRelease) -> int | None:
        """The canary Ingress's weight, None when it does not exist."""
        ingress = await self.kube.get(
            INGRESSES, release.metadata.namespace, canary_ingress_name(release)
        )
        if ingress is None or not owned_by(ingress, release):
            return None
        return weight_of(ingress)

    async def waiting_for(self, release: CanaryRelease) -> str:
        """'': ingress-nginx reports no per-Ingress status to wait for."""
        return ""

    async def finalize(self, release: CanaryRelease) -> None:
        """Delete the canary Ingress if it is this release's."""
        namespace = release.metadata.namespace
        ingress = await self.kube.get(INGRESSES, namespace, canary_ingress_name(release))
        if owned_by(ingress, release):
            await self.kube.delete(INGRESSES, namespace, canary_ingress_name(release))
