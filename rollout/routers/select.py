"""Which router a release uses, and what is checked about its route before it starts.

A release names exactly one of ``ingressRef`` (ingress-nginx: ``NginxRouter``) and
``routeRef`` (Gateway API: ``GatewayRouter`` on the user's HTTPRoute or GRPCRoute). This
is the one place that choice is made.
"""

from __future__ import annotations

from rollout.kube import Kube
from rollout.models import CanaryRelease, CanaryReleaseSpec
from rollout.providers import BUILTIN_METRICS, builtins_of
from rollout.router import NginxRouter, Router, RouterError
from rollout.routers.gateway import GatewayRouter, RouteRef, Sides, check_use

__all__ = ["ReleaseRouter", "provider_problems", "route_of", "route_problems"]


def _ref_of(spec: CanaryReleaseSpec) -> RouteRef:
    ref = spec.route_ref
    if ref is None:
        raise RouterError("the release has no routeRef")
    return RouteRef(name=ref.name, namespace=ref.namespace, kind=ref.kind)


def route_of(release: CanaryRelease) -> RouteRef:
    """The release's ``routeRef`` as the Gateway API router takes it."""
    return _ref_of(release.spec)


class ReleaseRouter:
    """``Router`` that hands each release to the router its spec names."""

    def __init__(self, kube: Kube) -> None:
        self.nginx = NginxRouter(kube)
        self.gateway = GatewayRouter(kube, route_of)

    def of(self, release: CanaryRelease) -> Router:
        """The router of ``release``: Gateway API with a routeRef, ingress-nginx otherwise."""
        return self.gateway if release.spec.route_ref is not None else self.nginx

    async def reconcile(self, release: CanaryRelease, weight: int) -> None:
        """Set the canary's weight on the release's route."""
        await self.of(release).reconcile(release, weight)

    async def get_weight(self, release: CanaryRelease) -> int | None:
        """The weight in force on the release's route; None when it has none."""
        return await self.of(release).get_weight(release)

    async def finalize(self, release: CanaryRelease) -> None:
        """Give the route back (remove the canary Ingress, or restore the HTTPRoute)."""
        await self.of(release).finalize(release)

    async def waiting_for(self, release: CanaryRelease) -> str:
        """Why the release's route is not in force yet; '' when it is."""
        return await self.of(release).waiting_for(release)


async def route_problems(
    kube: Kube, namespace: str, spec: CanaryReleaseSpec, owner: str = ""
) -> list[str]:
    """Why the release's routeRef and metrics provider cannot work; [] if they can.

    ``owner`` is the release's uid once it exists (its own earlier edit of the route is
    then no conflict). Reads only.
    """
    problems = provider_problems(spec)
    if spec.route_ref is None:
        return problems
    ref = _ref_of(spec)
    where = ref.namespace or namespace
    route = await kube.get(ref.resource(), where, ref.name)
    if route is None:
        problems.append(
            f"{ref.kind} {ref.name} not found in namespace {where}; the canary needs the "
            f"app's route to shift traffic (check it with `kubectl get {ref.kind.lower()}s "
            f"-n {where}`)"
        )
        return problems
    sides = Sides(spec.target_ref.name, f"{spec.target_ref.name}-canary", namespace)
    try:
        await check_use(kube, route, sides, owner)
    except RouterError as exc:
        problems.append(str(exc))
    return problems


def provider_problems(spec: CanaryReleaseSpec) -> list[str]:
    if spec.route_ref is not None and spec.provider == "nginx":
        return [
            "provider nginx reads ingress-nginx's metrics, which do not see traffic through "
            "a Gateway API route; set provider to contour, istio or traefik"
        ]
    builtins = [
        m.name
        for m in spec.analysis.metrics
        if m.query is None and m.template_ref is None and m.name in BUILTIN_METRICS
    ]
    if not builtins:
        return []
    try:
        builtins_of(spec.metrics_provider)
    except ValueError as exc:
        return [f"metric {builtins[0]}: {exc}"]
    return []
