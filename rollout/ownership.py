"""Preflight: the names a release will create must be free or already its own.

A release creates ``<target>-canary`` (Deployment and Service) and ``<ingress>-canary``
(Ingress). If one of them exists and belongs to another release, to another tool (Flagger
and Argo Rollouts use the same names) or to nobody, the release stops before anything is
created, and the message names the object and its owner. Two releases behind one Ingress
would move each other's canary weight, so the later one is refused, naming the first.
Reads only.
"""

from __future__ import annotations

from datetime import datetime

from rollout.kube import DEPLOYMENTS, INGRESSES, RELEASES, SERVICES, JsonObject, Kube, Resource
from rollout.models import FINAL_PHASES, CanaryReleaseSpec, Phase
from rollout.owner import created_by_release, describe_owner


async def ownership_problems(
    kube: Kube,
    namespace: str,
    name: str,
    spec: CanaryReleaseSpec,
    of_target: list[JsonObject],
) -> list[str]:
    """Why release ``name`` may not use its canary names; [] when it may. ``of_target``:
    the releases of its Deployment, as the preflight listed them."""
    releases = await _neighbours(kube, namespace, spec, of_target)
    shared = _ingress_in_use(releases, namespace, name, spec)
    problems = []
    for resource, kind, object_name in _canary_objects(spec):
        if shared is not None and resource is INGRESSES:
            continue  # the shared Ingress's canary is that release's: one message says it
        problem = await _taken(kube, resource, kind, namespace, object_name, name, releases)
        if problem is not None:
            problems.append(problem)
    return problems + ([shared] if shared else [])


async def _neighbours(
    kube: Kube, namespace: str, spec: CanaryReleaseSpec, of_target: list[JsonObject]
) -> list[JsonObject]:
    """The releases that may own this release's canary names: those of its Deployment and
    those behind its Ingress (selected by the API server, not the whole namespace)."""
    found = list(of_target)
    if spec.ingress_ref is not None:
        names = {r["metadata"]["name"] for r in found}
        behind = await kube.list_objects(
            RELEASES, namespace, fields={"spec.ingressRef.name": spec.ingress_ref.name}
        )
        found += [r for r in behind if r["metadata"]["name"] not in names]
    return found


def _canary_objects(spec: CanaryReleaseSpec) -> list[tuple[Resource, str, str]]:
    canary = f"{spec.target_ref.name}-canary"
    objects = [(DEPLOYMENTS, "Deployment", canary), (SERVICES, "Service", canary)]
    if spec.ingress_ref is not None:  # a routeRef's route is checked by its router
        objects.append((INGRESSES, "Ingress", f"{spec.ingress_ref.name}-canary"))
    return objects


async def _taken(
    kube: Kube,
    resource: Resource,
    kind: str,
    namespace: str,
    object_name: str,
    release: str,
    releases: list[JsonObject],
) -> str | None:
    obj = await kube.get(resource, namespace, object_name)
    if obj is None or created_by_release(obj, release):
        return None
    owner = describe_owner(obj)
    if owner.startswith("CanaryRelease "):
        other = owner.removeprefix("CanaryRelease ").split(" ", 1)[0]
        phase = _phase_of(releases, other)
        if not phase:  # not among the neighbours: ask for that release by name
            found = await kube.get(RELEASES, namespace, other)
            phase = _phase_of([found], other) if found is not None else ""
        if phase in FINAL_PHASES:
            # a finished release's canary, deleted right after its outcome was stored: the
            # new release creates its own once it is gone (ensure_canary waits for that)
            return None
        return (
            f"{kind} {object_name} already exists and belongs to {owner}"
            f"{f' ({phase})' if phase else ''}; wait for it to finish or abort it with "
            f"`/canary abort {other} -n {namespace}`"
        )
    return (
        f"{kind} {object_name} already exists and was {owner}; canary-bot will neither "
        f"reuse nor change it: remove it, or release with the tool that owns it"
    )


def _phase_of(releases: list[JsonObject], name: str) -> str:
    for raw in releases:
        if raw.get("metadata", {}).get("name") == name:
            return str((raw.get("status") or {}).get("phase", Phase.INITIALIZING.value))
    return ""


def _created(raw: JsonObject) -> tuple[datetime, str]:
    stamp = raw.get("metadata", {}).get("creationTimestamp") or "9999-12-31T23:59:59Z"
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")), raw["metadata"]["name"]


def _ingress_in_use(
    releases: list[JsonObject], namespace: str, name: str, spec: CanaryReleaseSpec
) -> str | None:
    """An earlier active release of another Deployment behind the same Ingress."""
    if spec.ingress_ref is None:
        return None
    mine = next((r for r in releases if r["metadata"]["name"] == name), None)
    for raw in sorted(releases, key=_created):
        other = raw["metadata"]["name"]
        if other == name:
            continue
        if mine is not None and _created(raw) > _created(mine):
            continue  # the later release is the one refused
        other_spec = raw.get("spec") or {}
        phase = (raw.get("status") or {}).get("phase", Phase.INITIALIZING.value)
        other_ingress = (other_spec.get("ingressRef") or {}).get("name")
        if phase in FINAL_PHASES or other_ingress != spec.ingress_ref.name:
            continue
        if other_spec.get("targetRef", {}).get("name") == spec.target_ref.name:
            continue  # same Deployment: preflight's "already has a rollout" says it
        target = other_spec.get("targetRef", {}).get("name", "?")
        return (
            f"Ingress {spec.ingress_ref.name} is already used by release {other} of "
            f"Deployment {target} ({phase}); two releases behind one Ingress would move each "
            f"other's canary weight: wait for {other} or abort it with "
            f"`/canary abort {other} -n {namespace}`"
        )
    return None
