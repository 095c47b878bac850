"""The route edits and checks of the Gateway API router, on plain objects (no cluster)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from rollout.routers.gateway import (
    ORIGINAL_ANNOTATION,
    RouteRef,
    RouterError,
    Sides,
    canary_weight,
    check_route,
    grants_canary,
    restored,
    route_ready,
    with_weight,
)
from tests.gateway.helpers import user_route

SIDES = Sides("web", "web-canary", "shop")
OWNER = "uid-1"
PARENT = {"name": "contour", "namespace": "projectcontour"}


def stored_route() -> dict[str, Any]:
    """The helpers' user route, with a second backend in the stable rule."""
    route = user_route("shop", PARENT)
    route["spec"]["rules"][0]["backendRefs"].append({"name": "legacy", "port": 80, "weight": 1})
    return route


@pytest.mark.parametrize("weight", [0, 20, 50, 100])
def test_weights_only_in_the_stable_rule(weight: int) -> None:
    route = stored_route()
    changed = with_weight(route, SIDES, OWNER, weight)
    first, second = changed["spec"]["rules"]
    assert first["backendRefs"] == [
        {"name": "web", "port": 80, "weight": 100 - weight},
        {"name": "legacy", "port": 80, "weight": 1},
        {"name": "web-canary", "port": 80, "weight": weight},
    ]
    assert first["filters"] == route["spec"]["rules"][0]["filters"]
    assert first["matches"] == route["spec"]["rules"][0]["matches"]
    assert second == route["spec"]["rules"][1]
    assert changed["spec"]["parentRefs"] == route["spec"]["parentRefs"]
    assert changed["spec"]["hostnames"] == route["spec"]["hostnames"]
    assert changed["metadata"]["labels"] == route["metadata"]["labels"]
    assert changed["metadata"]["annotations"]["team"] == "checkout"
    assert canary_weight(changed, SIDES) == weight
    assert route == stored_route(), "the input must not be modified"


def test_restored_is_the_original_after_any_number_of_steps() -> None:
    route = stored_route()
    changed = route
    for weight in (5, 20, 50, 0):
        changed = with_weight(changed, SIDES, OWNER, weight)
    assert restored(changed, SIDES, OWNER) == route


def test_original_weight_and_missing_annotations_come_back() -> None:
    route = stored_route()
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 7
    del route["metadata"]["annotations"]
    changed = with_weight(with_weight(route, SIDES, OWNER, 30), SIDES, OWNER, 60)
    assert json.loads(changed["metadata"]["annotations"][ORIGINAL_ANNOTATION])["weights"] == [
        [0, 0, 7]
    ]
    assert restored(changed, SIDES, OWNER) == route


def test_a_user_edit_during_the_release_survives_finalize() -> None:
    changed = with_weight(stored_route(), SIDES, OWNER, 20)
    changed["spec"]["hostnames"].append("www.example.com")
    changed["spec"]["rules"].append({"backendRefs": [{"name": "docs", "port": 80}]})
    back = restored(changed, SIDES, OWNER)
    assert back is not None
    assert back["spec"]["hostnames"][-1] == "www.example.com"
    assert back["spec"]["rules"][-1] == {"backendRefs": [{"name": "docs", "port": 80}]}
    assert back["spec"]["rules"][0] == stored_route()["spec"]["rules"][0]


def test_a_gitops_revert_gets_the_canary_again_and_keeps_the_original_weight() -> None:
    changed = with_weight(stored_route(), SIDES, OWNER, 20)
    changed["spec"]["rules"][0]["backendRefs"] = copy.deepcopy(
        stored_route()["spec"]["rules"][0]["backendRefs"]
    )
    again = with_weight(changed, SIDES, OWNER, 40)
    assert canary_weight(again, SIDES) == 40
    assert restored(again, SIDES, OWNER) == stored_route()


def test_another_release_cannot_take_over_the_route() -> None:
    changed = with_weight(stored_route(), SIDES, OWNER, 20, "web.shop")
    with pytest.raises(RouterError, match=r"another canary release \(web.shop\)"):
        with_weight(changed, SIDES, "uid-2", 30)
    assert restored(changed, SIDES, "uid-2") is None
    assert restored(stored_route(), SIDES, OWNER) is None


def test_no_rule_to_the_stable_service_is_refused() -> None:
    route = stored_route()
    route["spec"]["rules"] = [route["spec"]["rules"][1]]
    with pytest.raises(RouterError, match="no rule with a backendRef to Service shop/web"):
        check_route(route, SIDES, OWNER)
    with pytest.raises(RouterError, match="no rule"):
        with_weight(route, SIDES, OWNER, 10)


def test_a_stable_service_in_another_namespace_is_not_the_stable_service() -> None:
    route = stored_route()
    route["spec"]["rules"][0]["backendRefs"][0]["namespace"] = "elsewhere"
    with pytest.raises(RouterError, match="no rule"):
        check_route(route, SIDES, OWNER)


def test_not_a_route_is_refused() -> None:
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "x"}}
    with pytest.raises(RouterError, match="is not an HTTPRoute or GRPCRoute"):
        check_route(ingress, SIDES, OWNER)
    with pytest.raises(RouterError, match="not a route canary-bot can shift weights on"):
        RouteRef("web", kind="TCPRoute").resource()
    with pytest.raises(RouterError, match="not a route"):
        RouteRef("web", kind="Ingress", group="networking.k8s.io").resource()


def test_a_route_already_sending_to_the_canary_is_refused() -> None:
    route = stored_route()
    route["spec"]["rules"][1]["backendRefs"].append({"name": "web-canary", "port": 80})
    with pytest.raises(RouterError, match="already has a backendRef to web-canary"):
        check_route(route, SIDES, OWNER)


def test_reference_grants() -> None:
    grant = {
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "edge"}],
            "to": [{"group": "", "kind": "Service"}],
        }
    }
    named = copy.deepcopy(grant)
    named["spec"]["to"][0]["name"] = "web"
    assert grants_canary([grant], "HTTPRoute", "edge", "web-canary")
    assert not grants_canary([grant], "HTTPRoute", "other", "web-canary")
    assert not grants_canary([grant], "GRPCRoute", "edge", "web-canary")
    assert not grants_canary([named], "HTTPRoute", "edge", "web-canary")


def _status(generation: int, **conditions: tuple[str, int]) -> dict[str, Any]:
    route = stored_route()
    route["metadata"]["generation"] = generation
    route["status"] = {
        "parents": [
            {
                "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", **PARENT},
                "controllerName": "projectcontour.io/gateway-controller",
                "conditions": [
                    {
                        "type": kind,
                        "status": status,
                        "observedGeneration": seen,
                        "reason": "Because",
                        "message": f"{kind} says {status}",
                    }
                    for kind, (status, seen) in conditions.items()
                ],
            }
        ]
    }
    return route


def test_route_ready() -> None:
    assert route_ready(_status(2, Accepted=("True", 2), ResolvedRefs=("True", 2))).ready
    stale = route_ready(_status(3, Accepted=("True", 2), ResolvedRefs=("True", 2)))
    assert not stale.ready
    assert stale.waiting_for == (
        "Gateway projectcontour/contour: Accepted not yet reported for generation 3 (seen 2)"
    )
    refs = route_ready(_status(2, Accepted=("True", 2), ResolvedRefs=("False", 2)))
    assert refs.waiting_for == (
        "Gateway projectcontour/contour: ResolvedRefs is False: ResolvedRefs says False"
    )
    missing = route_ready(_status(2, Accepted=("True", 2)))
    assert missing.waiting_for == "Gateway projectcontour/contour: ResolvedRefs not reported"
    unreported = stored_route()
    assert route_ready(unreported).waiting_for == (
        "Gateway projectcontour/contour has not reported on the route yet"
    )


@pytest.mark.parametrize(
    "weights",
    [
        "not json",
        '{"owner": "uid-1", "weights": [["0", 0, 1], [0, -1, 1], [99999, 0, 1], [0, 0, "x"]]}',
        '{"owner": "uid-1", "weights": [[0, 0, 1, 4], [0, 0, true], {"a": 1}]}',
        '["owner", "uid-1"]',
    ],
)
def test_a_tampered_annotation_never_breaks_finalize(weights: str) -> None:
    changed = with_weight(stored_route(), SIDES, OWNER, 20)
    changed["metadata"]["annotations"][ORIGINAL_ANNOTATION] = weights
    back = restored(changed, SIDES, OWNER)
    assert back is not None
    assert [r["name"] for r in back["spec"]["rules"][0]["backendRefs"]] == ["web", "legacy"]
    assert ORIGINAL_ANNOTATION not in back["metadata"].get("annotations", {})


INSIDER = [[{"type": "Exact", "name": "x-canary", "value": "insider"}]]


def test_a_match_becomes_a_canary_only_rule_ahead_of_the_others() -> None:
    route = stored_route()
    changed = with_weight(route, SIDES, OWNER, 0, matches=INSIDER)
    again = with_weight(changed, SIDES, OWNER, 0, matches=INSIDER)
    assert again == changed, "reconciling twice adds nothing"
    first, stable, api = again["spec"]["rules"]
    assert first == {
        "name": "web-canary-match-0",
        "matches": [
            {
                "path": {"type": "PathPrefix", "value": "/"},
                "headers": [{"type": "Exact", "name": "x-canary", "value": "insider"}],
            }
        ],
        "filters": route["spec"]["rules"][0]["filters"],
        "backendRefs": [{"name": "web-canary", "port": 80, "weight": 1}],
    }
    assert [r["name"] for r in stable["backendRefs"]] == ["web", "legacy", "web-canary"]
    assert api == route["spec"]["rules"][1]
    assert canary_weight(again, SIDES) == 0
    assert restored(again, SIDES, OWNER) == route
    # Without the match the canary-only rule goes, the weights stay.
    plain = with_weight(again, SIDES, OWNER, 10)
    assert [r.get("name") for r in plain["spec"]["rules"]] == [None, None]
    assert restored(plain, SIDES, OWNER) == route


def test_match_rules_are_refused_beyond_the_routes_limits() -> None:
    route = stored_route()
    route["spec"]["rules"] = [copy.deepcopy(route["spec"]["rules"][0]) for _ in range(9)]
    with pytest.raises(RouterError, match="would exceed the limit of 16"):
        with_weight(route, SIDES, OWNER, 0, matches=INSIDER)
    many = [[{"type": "Exact", "name": "x-canary", "value": str(i)}] for i in range(65)]
    with pytest.raises(RouterError, match="at most 64"):
        with_weight(stored_route(), SIDES, OWNER, 0, matches=many)
