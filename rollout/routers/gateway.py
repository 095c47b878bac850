"""Gateway API routing: canary weights on the user's own HTTPRoute (or GRPCRoute).

No second route is created. In each rule whose backendRefs point at the stable Service
(the target's name), and only there, the canary Service (``<target>-canary``) is added
as a backendRef and the weights become stable ``100 - w`` / canary ``w``. Everything
else is left as the user wrote it: other rules, matches, filters, other backends,
parentRefs, hostnames, labels and annotations. In a rule that also has backends of its
own, those keep their weights, so the canary's share there is ``w / (100 + theirs)``.

What cannot be recomputed from the route itself, the stable backendRefs' original
weights, is stored in the ``canarybot.io/route-original`` annotation by the same update
that first changes the route, so a crash at any point leaves the route restorable.
``finalize`` removes exactly what was added: every backendRef naming the canary Service
(a name canary-bot reserves) and the annotation, and puts the recorded weights back.
A change the user (or a GitOps tool) made to the route meanwhile survives. Every write
is a PUT carrying the resourceVersion that was read, retried on conflict.

With ``analysis.match`` (A/B), each stable rule also gets a canary-only copy ahead of
the user's rules, with the release's header matches added and a name
(``<target>-canary-match-<n>``) by which it is found and removed again.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rollout.kube import (
    GATEWAY_GROUP,
    GRPCROUTES,
    HTTPROUTES,
    REFERENCEGRANTS,
    Conflict,
    JsonObject,
    Kube,
    Resource,
)
from rollout.models import CanaryRelease, MatchRule
from rollout.owner import canary_name

# One error type for every router: the route cannot be used; the message says why.
from rollout.router import RouterError
from rollout.routers.status import Readiness, route_ready

__all__ = [
    "ORIGINAL_ANNOTATION",
    "ROUTE_KINDS",
    "GatewayRouter",
    "Readiness",
    "RouteOf",
    "RouteRef",
    "RouterError",
    "Sides",
    "canary_weight",
    "check_route",
    "check_use",
    "grants_canary",
    "header_matches",
    "match_rule_name",
    "points_at",
    "read_record",
    "restored",
    "route_ready",
    "stable_rules",
    "with_weight",
]

ORIGINAL_ANNOTATION = "canarybot.io/route-original"
"""Which release changed the route and the stable backendRefs' original weights."""

ROUTE_KINDS: dict[str, Resource] = {"HTTPRoute": HTTPROUTES, "GRPCRoute": GRPCROUTES}
_UPDATE_ATTEMPTS = 5
_MAX_INDEX = 1000  # the CRD allows 16 rules of 16 backendRefs
_MAX_WEIGHT = 1_000_000  # the CRD's bound on a backendRef weight
_MAX_RULES = 16  # the CRD's bounds on rules per route and matches per rule
_MAX_MATCHES = 64


@dataclass(frozen=True)
class RouteRef:
    """The user's route: ``kind``/``name`` (and ``namespace``, default the release's)."""

    name: str
    namespace: str | None = None
    kind: str = "HTTPRoute"
    group: str = GATEWAY_GROUP

    def resource(self) -> Resource:
        """Where routes of this kind live; refuses kinds canary-bot cannot route with."""
        if self.group != GATEWAY_GROUP or self.kind not in ROUTE_KINDS:
            kinds = " or ".join(f"{GATEWAY_GROUP}/{k}" for k in ROUTE_KINDS)
            raise RouterError(
                f"routeRef {self.group or 'core'}/{self.kind} {self.name} is not a route "
                f"canary-bot can shift weights on; point it at a {kinds}"
            )
        return ROUTE_KINDS[self.kind]


@dataclass(frozen=True)
class Sides:
    """The Services a release splits traffic between, in the release's namespace."""

    stable: str
    canary: str
    namespace: str

    @classmethod
    def of(cls, release: CanaryRelease) -> Sides:
        """The target's Service (stable) and ``<target>-canary``."""
        return cls(release.spec.target_ref.name, canary_name(release), release.metadata.namespace)


# --------------------------------------------------------------------- route editing


def _namespace(route: JsonObject) -> str:
    return str(route.get("metadata", {}).get("namespace", ""))


def points_at(ref: JsonObject, service: str, service_ns: str, route_ns: str) -> bool:
    """Whether a backendRef names ``service_ns/service`` (core Service, the defaults)."""
    return (
        ref.get("group", "") == ""
        and ref.get("kind", "Service") == "Service"
        and ref.get("name") == service
        and ref.get("namespace", route_ns) == service_ns
    )


def _rules(route: JsonObject) -> list[JsonObject]:
    rules: list[JsonObject] = route.get("spec", {}).get("rules") or []
    return rules


def stable_rules(route: JsonObject, sides: Sides) -> list[int]:
    """Indices of the rules with a backendRef to the stable Service."""
    ns = _namespace(route)
    return [
        i
        for i, rule in enumerate(_rules(route))
        if any(
            points_at(r, sides.stable, sides.namespace, ns) for r in rule.get("backendRefs") or []
        )
    ]


def read_record(route: JsonObject) -> JsonObject | None:
    """The annotation canary-bot left on the route, or None (also when unreadable)."""
    raw = (route.get("metadata", {}).get("annotations") or {}).get(ORIGINAL_ANNOTATION)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("weights"), list):
        return None
    # Anyone who may edit the route may edit the annotation: keep only well-formed
    # [rule, backend, weight] entries.
    record["weights"] = [
        w
        for w in record["weights"]
        if isinstance(w, list)
        and len(w) == 3
        and all(type(i) is int and 0 <= i < _MAX_INDEX for i in w[:2])
        and (w[2] is None or (type(w[2]) is int and 0 <= w[2] <= _MAX_WEIGHT))
    ]
    return record


def _canary_twin(stable_ref: JsonObject, sides: Sides) -> JsonObject:
    # Same port, namespace and per-backend filters as the stable backend it shadows.
    twin = copy.deepcopy(stable_ref)
    twin["name"] = sides.canary
    return twin


def with_weight(
    route: JsonObject,
    sides: Sides,
    owner: str,
    weight: int,
    release: str = "",
    matches: Sequence[list[JsonObject]] = (),
) -> JsonObject:
    """A copy of ``route`` with the canary at ``weight`` in every stable rule.

    ``owner`` (the release's uid) and ``release`` (its name, for messages) are recorded;
    a route another release is using is refused. Stable backendRefs seen for the first
    time have their weight recorded. Each entry of ``matches`` (HTTPRoute header
    matches, see ``header_matches``) adds a canary-only rule per stable rule.
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"weight must be 0..100, got {weight}")
    route = copy.deepcopy(route)
    _drop_match_rules(route, sides)  # rebuilt below; indices are the user's rules'
    ns = _namespace(route)
    record = read_record(route) or {"owner": owner, "release": release, "weights": []}
    if record.get("owner") != owner:
        raise RouterError(
            f"route {ns}/{route['metadata']['name']} is being used by another canary "
            f"release ({record.get('release', 'unknown')}); wait for it to finish"
        )
    recorded = {(w[0], w[1]) for w in record["weights"]}
    touched = stable_rules(route, sides)
    if not touched:
        raise RouterError(_no_stable_rule(route, sides))
    for ri in touched:
        refs: list[JsonObject] = _rules(route)[ri]["backendRefs"]
        stable = [
            bi for bi, r in enumerate(refs) if points_at(r, sides.stable, sides.namespace, ns)
        ]
        canaries = [r for r in refs if points_at(r, sides.canary, sides.namespace, ns)]
        if not canaries:
            canaries = [_canary_twin(refs[bi], sides) for bi in stable]
            refs.extend(canaries)
        for bi in stable:
            if (ri, bi) not in recorded:
                record["weights"].append([ri, bi, refs[bi].get("weight")])
            refs[bi]["weight"] = 100 - weight
        for ref in canaries:
            ref["weight"] = weight
    if matches:
        _add_match_rules(route, sides, touched, matches)
    annotations = route["metadata"].setdefault("annotations", {})
    annotations[ORIGINAL_ANNOTATION] = json.dumps(record, separators=(",", ":"), sort_keys=True)
    return route


def restored(route: JsonObject, sides: Sides, owner: str) -> JsonObject | None:
    """A copy of ``route`` as it was before ``owner`` changed it; None if it did not.

    An annotation that is there but unreadable (edited by hand) still gets the canary
    backends removed, which would otherwise point at a deleted Service; only the
    stable weights cannot be put back then.
    """
    annotations = route.get("metadata", {}).get("annotations") or {}
    if ORIGINAL_ANNOTATION not in annotations:
        return None
    record = read_record(route) or {"owner": owner, "weights": []}
    if record.get("owner") != owner:
        return None
    route = copy.deepcopy(route)
    _drop_match_rules(route, sides)
    ns = _namespace(route)
    rules = _rules(route)
    for rule in rules:
        if "backendRefs" in rule:
            rule["backendRefs"] = [
                r
                for r in rule["backendRefs"]
                if not points_at(r, sides.canary, sides.namespace, ns)
            ]
    for ri, bi, original in record["weights"]:
        refs = (rules[ri].get("backendRefs") or []) if ri < len(rules) else []
        # A backend the user moved meanwhile is theirs now: leave it alone.
        if bi < len(refs) and points_at(refs[bi], sides.stable, sides.namespace, ns):
            if original is None:
                refs[bi].pop("weight", None)
            else:
                refs[bi]["weight"] = original
    annotations = route["metadata"]["annotations"]
    del annotations[ORIGINAL_ANNOTATION]
    if not annotations:
        del route["metadata"]["annotations"]
    return route


def match_rule_name(sides: Sides, index: int) -> str:
    """The name of a canary-only rule (rule names are unique within a route)."""
    return f"{sides.canary}-match-{index}"


def _is_match_rule(rule: JsonObject, sides: Sides) -> bool:
    return str(rule.get("name", "")).startswith(f"{sides.canary}-match-")


def _drop_match_rules(route: JsonObject, sides: Sides) -> None:
    spec = route.get("spec", {})
    if spec.get("rules"):
        spec["rules"] = [r for r in spec["rules"] if not _is_match_rule(r, sides)]


def _add_match_rules(
    route: JsonObject, sides: Sides, stable: list[int], matches: Sequence[list[JsonObject]]
) -> None:
    """Canary-only rules ahead of the user's: each stable rule's matches with the
    release's header matches added (more header matches win Gateway API's precedence,
    the order breaks ties), sending everything to the canary."""
    ns = _namespace(route)
    rules = _rules(route)
    added: list[JsonObject] = []
    for ri in stable:
        rule = copy.deepcopy(rules[ri])
        rule.pop("name", None)
        rule["backendRefs"] = [
            {**_canary_twin(r, sides), "weight": 1}
            for r in rule.get("backendRefs") or []
            if points_at(r, sides.stable, sides.namespace, ns)
        ]
        rule["matches"] = [
            {**base, "headers": [*(base.get("headers") or []), *headers]}
            for base in rule.get("matches") or [{}]
            for headers in matches
        ]
        if len(rule["matches"]) > _MAX_MATCHES:
            raise RouterError(
                f"the canary match would need {len(rule['matches'])} matches in one rule "
                f"(at most {_MAX_MATCHES}); use fewer match rules or route matches"
            )
        rule["name"] = match_rule_name(sides, len(added))
        added.append(rule)
    if len(added) + len(rules) > _MAX_RULES:
        raise RouterError(
            f"{route.get('kind', 'route')} {ns}/{route['metadata']['name']} has {len(rules)} "
            f"rules; the canary's {len(added)} match rule(s) would exceed the limit of "
            f"{_MAX_RULES}"
        )
    route["spec"]["rules"] = added + rules


def header_matches(rules: Sequence[MatchRule]) -> list[list[JsonObject]]:
    """The release's ``match`` rules as HTTPRoute header matches (one list per rule).

    As with the ingress-nginx router, a ``cookie`` header with ``exact`` names a cookie
    whose value ``always`` selects the canary; with ``regex`` the Cookie header must
    match it. Other headers match exactly or by regular expression.
    """
    result: list[list[JsonObject]] = []
    for rule in rules:
        headers: list[JsonObject] = []
        for name, matcher in rule.headers.items():
            if name.lower() == "cookie" and matcher.exact:
                # Envoy matches the whole value: any cookies around ours.
                value = rf"(.*;\s*)?{re.escape(matcher.exact)}=always(;.*)?"
                headers.append({"type": "RegularExpression", "name": "Cookie", "value": value})
            elif matcher.exact is not None:
                headers.append({"type": "Exact", "name": name, "value": matcher.exact})
            elif matcher.regex is not None:
                headers.append({"type": "RegularExpression", "name": name, "value": matcher.regex})
        if headers:
            result.append(headers)
    return result


def canary_weight(route: JsonObject, sides: Sides) -> int:
    """The weight of the first weighted canary backendRef (0 when none is left)."""
    ns = _namespace(route)
    for rule in _rules(route):
        if _is_match_rule(rule, sides):
            continue
        for ref in rule.get("backendRefs") or []:
            if points_at(ref, sides.canary, sides.namespace, ns):
                return int(ref.get("weight", 1))
    return 0


def _no_stable_rule(route: JsonObject, sides: Sides) -> str:
    kind = route.get("kind", "route")
    return (
        f"{kind} {_namespace(route)}/{route.get('metadata', {}).get('name')} has no rule with "
        f"a backendRef to Service {sides.namespace}/{sides.stable}; add one (the stable "
        "side), canary-bot adds the canary next to it"
    )


# ------------------------------------------------------------------------ checks


def check_route(route: JsonObject, sides: Sides, owner: str) -> None:
    """Refuse a route canary-bot must not change; the message says how to fix it."""
    if (
        route.get("apiVersion", "").split("/")[0] != GATEWAY_GROUP
        or route.get("kind") not in ROUTE_KINDS
    ):
        raise RouterError(
            f"{route.get('kind', 'object')} {route.get('metadata', {}).get('name')} is not "
            f"an HTTPRoute or GRPCRoute ({GATEWAY_GROUP})"
        )
    if not stable_rules(route, sides):
        raise RouterError(_no_stable_rule(route, sides))
    record = read_record(route)
    if record is not None and record.get("owner") != owner:
        raise RouterError(
            f"{route['kind']} {_namespace(route)}/{route['metadata']['name']} is being used "
            "by another canary release; wait for it to finish"
        )
    ns = _namespace(route)
    if record is None and any(
        points_at(r, sides.canary, sides.namespace, ns)
        for rule in _rules(route)
        for r in rule.get("backendRefs") or []
    ):
        raise RouterError(
            f"{route['kind']} {ns}/{route['metadata']['name']} already has a backendRef to "
            f"{sides.canary}; remove it: canary-bot adds and removes the canary backend itself"
        )


def grants_canary(grants: list[JsonObject], route_kind: str, route_ns: str, canary: str) -> bool:
    """Whether a ReferenceGrant lets ``route_ns``'s routes of that kind use ``canary``."""
    for grant in grants:
        spec = grant.get("spec", {})
        from_ok = any(
            f.get("group") == GATEWAY_GROUP
            and f.get("kind") == route_kind
            and f.get("namespace") == route_ns
            for f in spec.get("from") or []
        )
        to_ok = any(
            t.get("group", "") == ""
            and t.get("kind") == "Service"
            and t.get("name", canary) in (canary, "")
            for t in spec.get("to") or []
        )
        if from_ok and to_ok:
            return True
    return False


async def check_use(kube: Kube, route: JsonObject, sides: Sides, owner: str) -> None:
    """``check_route``, and for a route in another namespace than the Services, the
    ReferenceGrant that lets it use the canary Service."""
    check_route(route, sides, owner)
    ns, kind, name = _namespace(route), str(route.get("kind")), route["metadata"]["name"]
    if ns != sides.namespace:
        grants = await kube.list_objects(REFERENCEGRANTS, sides.namespace)
        if not grants_canary(grants, kind, ns, sides.canary):
            raise RouterError(
                f"{kind} {ns}/{name} is in another namespace than Service "
                f"{sides.namespace}/{sides.canary}; add a ReferenceGrant in "
                f"{sides.namespace} from {kind} in {ns} to Service {sides.canary} "
                "(or to all Services)"
            )


# ------------------------------------------------------------------------ router


RouteOf = Callable[[CanaryRelease], RouteRef]


class GatewayRouter:
    """``Router`` that shifts weights on the user's Gateway API route.

    ``route_of`` says which route a release uses (a fixed ``RouteRef`` for one route,
    or a function of the release, e.g. reading its ``routeRef``).
    """

    def __init__(self, kube: Kube, route_of: RouteRef | RouteOf) -> None:
        self.kube = kube
        self._route_of: RouteOf = (
            (lambda _release: route_of) if isinstance(route_of, RouteRef) else route_of
        )

    def _where(self, release: CanaryRelease) -> tuple[RouteRef, Resource, str]:
        ref = self._route_of(release)
        return ref, ref.resource(), ref.namespace or release.metadata.namespace

    async def _get(self, release: CanaryRelease) -> JsonObject:
        ref, resource, ns = self._where(release)
        route = await self.kube.get(resource, ns, ref.name)
        if route is None:
            raise RouterError(f"{ref.kind} {ns}/{ref.name} not found; create it or fix routeRef")
        return route

    async def check(self, release: CanaryRelease) -> None:
        """Refuse, before anything changes, a route this release cannot use."""
        await self._check(release, await self._get(release))

    async def _check(self, release: CanaryRelease, route: JsonObject) -> None:
        await check_use(self.kube, route, Sides.of(release), release.metadata.uid)

    async def _update(
        self,
        release: CanaryRelease,
        edit: Callable[[JsonObject], JsonObject | None],
        route: JsonObject | None = None,
    ) -> JsonObject | None:
        """Edit and PUT with the resourceVersion read (``route``, if just read); a
        conflict means someone else wrote meanwhile: read again and retry."""
        ref, resource, ns = self._where(release)
        for attempt in range(_UPDATE_ATTEMPTS):
            current = route if route is not None and attempt == 0 else await self._get(release)
            changed = edit(current)
            if changed is None or changed == current:
                return current
            try:
                return await self.kube.replace(resource, ns, ref.name, changed)
            except Conflict:
                if attempt == _UPDATE_ATTEMPTS - 1:
                    raise  # a temporary error: the next tick tries again
        return None  # pragma: no cover - the loop returns or raises

    async def reconcile(self, release: CanaryRelease, weight: int) -> None:
        """Put the canary at ``weight`` in every rule that points at the stable Service.

        The full check (with the ReferenceGrant lookup) runs until this release's first
        write; after that a step costs one GET and one PUT, and a grant removed later
        shows in ``route_ready`` (ResolvedRefs False).
        """
        route = await self._get(release)
        record = read_record(route)
        if record is None or record.get("owner") != release.metadata.uid:
            await self._check(release, route)
        sides, owner = Sides.of(release), release.metadata.uid
        matches = header_matches(release.spec.analysis.match)
        await self._update(
            release,
            lambda current: with_weight(current, sides, owner, weight, release.key, matches),
            route,
        )

    async def get_weight(self, release: CanaryRelease) -> int | None:
        """The canary weight on the route; None when this release has not changed it
        (or the route is gone)."""
        try:
            route = await self._get(release)
        except RouterError:
            return None
        record = read_record(route)
        if record is None or record.get("owner") != release.metadata.uid:
            return None
        return canary_weight(route, Sides.of(release))

    async def finalize(self, release: CanaryRelease) -> None:
        """Give the route back as it was (the caller sets weight 0 first)."""
        sides, owner = Sides.of(release), release.metadata.uid
        try:
            await self._update(release, lambda route: restored(route, sides, owner))
        except RouterError:
            return  # the route is gone: nothing of ours is left on it

    async def waiting_for(self, release: CanaryRelease) -> str:
        """Which parent and condition the route still waits for; '' when it is in force."""
        ref, _, ns = self._where(release)
        try:
            readiness = route_ready(await self._get(release))
        except RouterError as exc:
            return str(exc)
        return "" if readiness.ready else f"{ref.kind} {ns}/{ref.name}: {readiness.waiting_for}"

    async def ready(self, release: CanaryRelease) -> Readiness:
        """``route_ready`` on the route as it is now."""
        return route_ready(await self._get(release))
