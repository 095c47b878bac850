"""What the bot's ServiceAccount must and must not be allowed to do.

``IN_RELEASE_NAMESPACE`` lists every request canary-bot sends to the API server, read
from the code (``rollout/kube.py`` is the only module that talks to it; the callers are
named in ``why``). The manifests' RBAC rules must grant exactly these; a new kind of
request in the code needs a line here and a rule in manifests/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RELEASES_GROUP = "canarybot.io"
GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class Access:
    """One (verb, resource) pair, as RBAC and SubjectAccessReviews name it."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    name: str = ""
    why: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(group, resource[/subresource], verb, resourceName) for set comparisons."""
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return (self.group, resource, self.verb, self.name)

    def __str__(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        group = f".{self.group}" if self.group else ""
        name = f" {self.name}" if self.name else ""
        return f"{self.verb} {resource}{group}{name}"


IN_RELEASE_NAMESPACE = [
    Access("get", "canaryreleases", RELEASES_GROUP, why="store.get_raw (engine.advance, bot)"),
    Access("list", "canaryreleases", RELEASES_GROUP, why="preflight.check_start, bot status"),
    Access("watch", "canaryreleases", RELEASES_GROUP, why="cache.Informer (--namespace)"),
    Access("create", "canaryreleases", RELEASES_GROUP, why="store.create (/canary start)"),
    Access("update", "canaryreleases", RELEASES_GROUP, why="store.request_control (PUT)"),
    Access("delete", "canaryreleases", RELEASES_GROUP, why="retention (finished beyond N)"),
    Access("update", "canaryreleases", RELEASES_GROUP, "status", why="store.write_status (PUT)"),
    Access("get", "canaries", RELEASES_GROUP, why="revisions (read a Canary)"),
    Access("list", "canaries", RELEASES_GROUP, why="revisions resync, find_canary_for"),
    Access("watch", "canaries", RELEASES_GROUP, why="revisions watch (--namespace)"),
    Access("update", "canaries", RELEASES_GROUP, why="revisions finalizer (PUT)"),
    Access("update", "canaries", RELEASES_GROUP, "status", why="revisions status (PUT)"),
    Access("get", "deployments", "apps", why="workloads.target/canary, bot.targets"),
    Access("list", "deployments", "apps", why="cache.Informer (watch cache)"),
    Access("watch", "deployments", "apps", why="cache.Informer (watch cache)"),
    Access("create", "deployments", "apps", why="workloads.ensure_canary"),
    Access("patch", "deployments", "apps", why="workloads.set_target_images (strategic)"),
    Access("delete", "deployments", "apps", why="workloads.delete_canary"),
    Access("get", "services", why="workloads.stable_service, ensure_canary"),
    Access("list", "services", why="cache.Informer (watch cache)"),
    Access("watch", "services", why="cache.Informer (watch cache)"),
    Access("create", "services", why="workloads.ensure_canary"),
    Access("delete", "services", why="workloads.delete_canary"),
    Access("get", "ingresses", "networking.k8s.io", why="router.get_weight, preflight"),
    Access("list", "ingresses", "networking.k8s.io", why="cache.Informer (watch cache)"),
    Access("watch", "ingresses", "networking.k8s.io", why="cache.Informer (watch cache)"),
    Access("create", "ingresses", "networking.k8s.io", why="router.reconcile"),
    Access("patch", "ingresses", "networking.k8s.io", why="router.reconcile (merge patch)"),
    Access("delete", "ingresses", "networking.k8s.io", why="router.finalize"),
    Access("get", "httproutes", GATEWAY_GROUP, why="routers.gateway (route, status)"),
    Access("list", "httproutes", GATEWAY_GROUP, why="cache.Informer (watch cache)"),
    Access("watch", "httproutes", GATEWAY_GROUP, why="cache.Informer (watch cache)"),
    Access("update", "httproutes", GATEWAY_GROUP, why="routers.gateway reconcile/finalize"),
    Access("get", "grpcroutes", GATEWAY_GROUP, why="routers.gateway (route, status)"),
    Access("list", "grpcroutes", GATEWAY_GROUP, why="cache.Informer (watch cache)"),
    Access("watch", "grpcroutes", GATEWAY_GROUP, why="cache.Informer (watch cache)"),
    Access("update", "grpcroutes", GATEWAY_GROUP, why="routers.gateway reconcile/finalize"),
    Access("list", "referencegrants", GATEWAY_GROUP, why="routers.gateway cross-namespace"),
    Access("get", "horizontalpodautoscalers", "autoscaling", why="autoscaling.ensure/delete"),
    Access("list", "horizontalpodautoscalers", "autoscaling", why="autoscaling.target_autoscaler"),
    Access("create", "horizontalpodautoscalers", "autoscaling", why="autoscaling.ensure"),
    Access("delete", "horizontalpodautoscalers", "autoscaling", why="autoscaling.delete"),
    Access("create", "events", why="kube.record_event"),
]

# Without --namespace the engine lists and watches releases in every namespace.
CLUSTER_WIDE = [
    Access("list", "canaryreleases", RELEASES_GROUP, why="cache.Informer (all namespaces)"),
    Access("watch", "canaryreleases", RELEASES_GROUP, why="cache.Informer (all namespaces)"),
    Access("list", "canaries", RELEASES_GROUP, why="revisions resync (all namespaces)"),
    Access("watch", "canaries", RELEASES_GROUP, why="revisions watch (all namespaces)"),
]

LEASE = "canary-bot-leader"
IN_BOT_NAMESPACE = [
    Access("create", "leases", "coordination.k8s.io", why="leader.try_acquire_or_renew"),
    Access("get", "leases", "coordination.k8s.io", name=LEASE, why="leader election"),
    Access("update", "leases", "coordination.k8s.io", name=LEASE, why="acquire/renew/release"),
]

# Things a compromised bot must not be able to do anywhere.
FORBIDDEN = [
    Access("get", "secrets"),
    Access("list", "secrets"),
    Access("watch", "secrets"),
    Access("delete", "secrets"),
    Access("create", "secrets"),
    Access("create", "clusterroles", "rbac.authorization.k8s.io"),
    Access("create", "clusterrolebindings", "rbac.authorization.k8s.io"),
    Access("create", "rolebindings", "rbac.authorization.k8s.io"),
    Access("escalate", "clusterroles", "rbac.authorization.k8s.io"),
    Access("bind", "clusterroles", "rbac.authorization.k8s.io"),
    Access("delete", "namespaces"),
    Access("create", "pods"),
    Access("create", "pods", subresource="exec"),
    Access("impersonate", "serviceaccounts"),
    Access("create", "serviceaccounts", subresource="token"),
    # Verbs on the bot's own kinds that the code never sends.
    Access("patch", "canaryreleases", RELEASES_GROUP),
    # (list and watch on Deployments are granted: the watch cache)
    Access("deletecollection", "deployments", "apps"),
    Access("update", "deployments", "apps"),
    Access("delete", "customresourcedefinitions", "apiextensions.k8s.io"),
]
# Leases other than the bot's own.
FORBIDDEN_LEASES = [
    Access("get", "leases", "coordination.k8s.io", name="kube-controller-manager"),
    Access("update", "leases", "coordination.k8s.io", name="kube-controller-manager"),
    Access("delete", "leases", "coordination.k8s.io", name=LEASE),
]


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Expand RBAC rules into (group, resource, verb, resourceName) keys."""
    keys = set()
    for rule in rules:
        names = rule.get("resourceNames") or [""]
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    for name in names:
                        keys.add((group, resource, verb, name))
    return keys
