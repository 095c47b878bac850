"""Whether a Gateway API route is in force: every parent reports it Accepted and
ResolvedRefs for the route's current generation (``status.parents[].conditions``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollout.kube import GATEWAY_GROUP, JsonObject

__all__ = ["Readiness", "route_ready"]

_MAX_CONDITION_TEXT = 200


@dataclass(frozen=True)
class Readiness:
    """Whether the route is in force; ``waiting_for`` names the missing condition."""

    ready: bool
    waiting_for: str = ""


def _parent_key(ref: JsonObject, route_ns: str) -> tuple[Any, ...]:
    return (
        ref.get("group", GATEWAY_GROUP),
        ref.get("kind", "Gateway"),
        ref.get("namespace", route_ns),
        ref.get("name"),
        ref.get("sectionName"),
        ref.get("port"),
    )


def _short(text: Any) -> str:
    value = str(text or "").strip()
    return value if len(value) <= _MAX_CONDITION_TEXT else value[: _MAX_CONDITION_TEXT - 1] + "…"


def _missing(conditions: list[JsonObject], generation: int) -> str:
    """The first of Accepted/ResolvedRefs not True for ``generation``; '' when both are."""
    by_type = {c.get("type"): c for c in conditions if isinstance(c, dict)}
    for wanted in ("Accepted", "ResolvedRefs"):
        cond = by_type.get(wanted)
        if cond is None:
            return f"{wanted} not reported"
        observed = cond.get("observedGeneration")
        # Some implementations (Linkerd) never set observedGeneration: take them at
        # their word rather than wait forever.
        if observed is not None and int(observed) < generation:
            return f"{wanted} not yet reported for generation {generation} (seen {observed})"
        if cond.get("status") != "True":
            detail = _short(cond.get("message")) or _short(cond.get("reason"))
            return f"{wanted} is {cond.get('status')}" + (f": {detail}" if detail else "")
    return ""


def route_ready(route: JsonObject) -> Readiness:
    """Whether every parent reports the route Accepted and ResolvedRefs for its generation.

    ``waiting_for`` names the first parent and condition that is missing, for the card.
    """
    ns = str(route.get("metadata", {}).get("namespace", ""))
    generation = int(route.get("metadata", {}).get("generation", 0))
    parents = route.get("spec", {}).get("parentRefs") or []
    if not parents:
        return Readiness(False, "the route has no parentRefs (no Gateway serves it)")
    statuses = route.get("status", {}).get("parents") or []
    for parent in parents:
        key = _parent_key(parent, ns)
        label = f"{key[1]} {key[2]}/{key[3]}" + (f" ({key[4]})" if key[4] else "")
        reports = [s for s in statuses if _parent_key(s.get("parentRef") or {}, ns) == key]
        if not reports:
            return Readiness(False, f"{label} has not reported on the route yet")
        problems = [_missing(s.get("conditions") or [], generation) for s in reports]
        if all(problems):
            return Readiness(False, f"{label}: {problems[0]}")
    return Readiness(True)
