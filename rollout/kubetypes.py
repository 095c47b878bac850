"""The Kubernetes API's vocabulary without its client: errors, resources, patch types.

Kept apart from rollout.kube (the one module that imports the client) so that code which
only names resources or catches API errors does not need the client at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rollout.models import GROUP, PLURAL, VERSION

JsonObject = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class KubeError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP status (0 when unreachable)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{reason} ({status}): {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message


class NotLeading(KubeError):
    """A write refused before it was sent: this process may no longer act (fencing)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "NotLeading", message)


# Called immediately before each mutating request: returns the seconds the request may
# take (its timeout), or raises ``NotLeading`` when it must not be sent at all.
WriteGuard = Callable[[], float]

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Without a guard or an explicit timeout, one request gives up after this long.
DEFAULT_TIMEOUT = 30.0


class NotFound(KubeError):
    """The object does not exist."""


class Conflict(KubeError):
    """Optimistic concurrency lost (resourceVersion changed) or the object exists."""


@dataclass(frozen=True)
class Resource:
    """Where a kind of object lives in the REST API."""

    group: str
    version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, sub: str = "") -> str:
        """The REST path of a collection, an object, or an object's subresource."""
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


DEPLOYMENTS = Resource("apps", "v1", "deployments")
SERVICES = Resource("", "v1", "services")
INGRESSES = Resource("networking.k8s.io", "v1", "ingresses")
EVENTS = Resource("", "v1", "events")
LEASES = Resource("coordination.k8s.io", "v1", "leases")
RELEASES = Resource(GROUP, VERSION, PLURAL)
CANARIES = Resource(GROUP, VERSION, "canaries")
# Only ``read_secret_key`` uses it: one named Secret key, read when a webhook is called.
SECRETS = Resource("", "v1", "secrets")
# Gateway API (standard channel): the user's routes and the grants that let a route in
# another namespace point at our Services.
GATEWAY_GROUP = "gateway.networking.k8s.io"
HTTPROUTES = Resource(GATEWAY_GROUP, "v1", "httproutes")
GRPCROUTES = Resource(GATEWAY_GROUP, "v1", "grpcroutes")
REFERENCEGRANTS = Resource(GATEWAY_GROUP, "v1beta1", "referencegrants")


class ReadCache(Protocol):
    """Objects kept current by watches (``rollout.cache.WatchCache``), read instead of GETs."""

    def lookup(
        self, resource: Resource, namespace: str, name: str
    ) -> tuple[bool, JsonObject | None]:
        """(served, object): served is False when the cache cannot answer for this object."""

    def select(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str,
        fields: Mapping[str, str] | None = None,
    ) -> list[JsonObject] | None:
        """The cached objects of a list (with ``fields``: only those whose dotted paths
        hold these values), or None when the cache cannot answer."""

    def written(self, resource: Resource, obj: JsonObject, *, owned: bool = False) -> None:
        """An object as a write returned it (kept when newer than the cached one);
        ``owned``: nobody else holds ``obj``, so it may be kept without a copy."""

    def invalidate(self, resource: Resource, namespace: str, name: str) -> None:
        """The cached copy is known to be stale (a write conflicted or it was deleted)."""


class RequestCounter:
    """Counts API requests by verb and resource (exported on /metrics and in benchmarks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        self.errors: dict[tuple[str, int], int] = {}

    def add(self, method: str, plural: str) -> None:
        """Record one request."""
        with self._lock:
            self.counts[(method, plural)] = self.counts.get((method, plural), 0) + 1

    def error(self, plural: str, status: int) -> None:
        """Record one failed request."""
        with self._lock:
            self.errors[(plural, status)] = self.errors.get((plural, status), 0) + 1

    @property
    def total(self) -> int:
        """All requests so far."""
        with self._lock:
            return sum(self.counts.values())


def resource_of(path: str) -> str:
    """The resource a REST path addresses: ``/apis/apps/v1/namespaces/x/deployments/y`` ->
    ``deployments``; a subresource is named with its parent (``canaryreleases/status``)."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    if not rest:
        return ""
    return f"{rest[0]}/{rest[2]}" if len(rest) > 2 else rest[0]
