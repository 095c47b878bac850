"""Canary sizing: replicas carry maxWeight of the traffic; the canary HPA mirrors the target's."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rollout.autoscaling import canary_autoscaler, canary_replicas, scales_deployment, share_of
from rollout.models import CanaryRelease, CanaryReleaseSpec, ObjectMeta
from rollout.workloads import canary_deployment


def release(max_weight: int = 50, **spec: Any) -> CanaryRelease:
    body: dict[str, Any] = {
        "targetRef": {"name": "podinfo"},
        "ingressRef": {"name": "podinfo"},
        "images": {"podinfod": "stefanprodan/podinfo:6.0.3"},
        "analysis": {"maxWeight": max_weight, "stepWeight": 5},
        **spec,
    }
    return CanaryRelease(
        metadata=ObjectMeta(name="podinfo-x1", namespace="test", uid="uid-1"),
        spec=CanaryReleaseSpec.model_validate(body),
    )


def target(replicas: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "podinfo"}},
        "template": {
            "metadata": {"labels": {"app": "podinfo"}},
            "spec": {"containers": [{"name": "podinfod", "image": "stefanprodan/podinfo:6.0.0"}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"metadata": {"name": "podinfo", "labels": {"app": "podinfo"}}, "spec": spec}


@pytest.mark.parametrize(
    ("replicas", "max_weight", "expected"),
    [(10, 50, 5), (2, 50, 1), (3, 50, 2), (10, 5, 1), (10, 100, 10), (7, 30, 3), (0, 50, 1)],
)
def test_auto_canary_carries_max_weight_of_the_target(
    replicas: int, max_weight: int, expected: int
) -> None:
    rel = release(max_weight)
    assert canary_replicas(rel, target(replicas)) == expected
    assert canary_deployment(rel, target(replicas))["spec"]["replicas"] == expected


def test_a_target_without_replicas_counts_as_one() -> None:
    assert canary_replicas(release(50), target(None)) == 1


def test_an_explicit_count_is_used_as_given() -> None:
    rel = release(50, canaryReplicas=3)
    assert canary_deployment(rel, target(10))["spec"]["replicas"] == 3


@pytest.mark.parametrize("bad", [0, -1, 101, "half", "Auto"])
def test_canary_replicas_outside_the_bounds_is_refused_naming_the_field(bad: Any) -> None:
    with pytest.raises(ValidationError, match="canaryReplicas"):
        release(50, canaryReplicas=bad)


def test_share_of_is_ceil_and_at_least_one() -> None:
    assert [share_of(n, 50) for n in (0, 1, 2, 3, 4, 5)] == [1, 1, 1, 2, 2, 3]


def hpa(name: str, min_: int, max_: int, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "minReplicas": min_,
            "maxReplicas": max_,
            **spec,
        },
    }


def test_canary_hpa_scales_the_canary_with_the_same_metrics_and_scaled_bounds() -> None:
    metrics = [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
        }
    ]
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    body = canary_autoscaler(release(50), hpa("web", 4, 9, metrics=metrics, behavior=behavior))
    assert body["apiVersion"] == "autoscaling/v2"
    assert body["metadata"]["name"] == "podinfo-canary"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert body["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo-canary"},
        "minReplicas": 2,
        "maxReplicas": 5,
        "metrics": metrics,
        "behavior": behavior,
    }


def test_canary_hpa_never_has_max_below_min() -> None:
    body = canary_autoscaler(release(10), hpa("web", 1, 1))
    assert (body["spec"]["minReplicas"], body["spec"]["maxReplicas"]) == (1, 1)


def test_only_an_hpa_of_the_target_deployment_counts() -> None:
    assert scales_deployment(hpa("web", 1, 2), "podinfo")
    assert not scales_deployment(hpa("web", 1, 2), "other")
    rollout = hpa("web", 1, 2)
    rollout["spec"]["scaleTargetRef"] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": "podinfo",
    }
    assert not scales_deployment(rollout, "podinfo")
