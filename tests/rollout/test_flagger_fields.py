"""A pasted Flagger block: every field works as Flagger documents it, or is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from rollout.models import UNSUPPORTED_ANALYSIS_FIELDS, CanaryReleaseSpec
from rollout.store import InvalidRelease, parse_release


def release_object(**analysis: Any) -> dict[str, Any]:
    return {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "CanaryRelease",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": "stefanprodan/podinfo:6.0.3"},
            "analysis": {"interval": "10s", **analysis},
        },
    }


def refusal(**analysis: Any) -> str:
    with pytest.raises(InvalidRelease) as caught:
        parse_release(release_object(**analysis))
    return str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("mirror", True, "traffic mirroring is not supported"),
        ("mirrorWeight", 10, "traffic mirroring is not supported"),
        ("sessionAffinity", {"cookieName": "flagger-cookie"}, "session affinity"),
        ("alerts", [{"name": "on-call", "severity": "error"}], "Slack channel"),
        ("canaryReadyThreshold", 50, "all its pods ready"),
        ("primaryReadyThreshold", 50, "all its pods ready"),
    ],
)
def test_flagger_fields_canary_bot_does_not_act_on_are_refused_with_the_reason(
    field: str, value: Any, why: str
) -> None:
    message = refusal(**{field: value})
    assert f"analysis.{field} is a Flagger field canary-bot does not support" in message
    assert why in message and "remove it" in message


def test_every_unsupported_field_has_a_test() -> None:
    assert set(UNSUPPORTED_ANALYSIS_FIELDS) == {
        "mirror",
        "mirrorWeight",
        "sessionAffinity",
        "alerts",
        "canaryReadyThreshold",
        "primaryReadyThreshold",
    }


@pytest.mark.parametrize(
    ("analysis", "where"),
    [
        ({"stepWieght": 5}, "spec.analysis.stepWieght"),
        (
            {"metrics": [{"name": "m", "tresholdRange": {"min": 1}}]},
            "spec.analysis.metrics.0.tresholdRange",
        ),
        (
            {"webhooks": [{"name": "w", "url": "http://lt/", "muteAlerts": True}]},
            "spec.analysis.webhooks.0.muteAlerts",
        ),
        (
            {"match": [{"headers": {"x-canary": {"prefix": "in"}}}], "iterations": 2},
            "spec.analysis.match.0.headers.x-canary.prefix",
        ),
    ],
)
def test_a_misspelled_or_unknown_field_is_refused_naming_it(
    analysis: dict[str, Any], where: str
) -> None:
    assert f"{where}: Extra inputs are not permitted" in refusal(**analysis)


def test_the_flagger_fields_canary_bot_acts_on_are_kept() -> None:
    spec = CanaryReleaseSpec.model_validate(
        release_object(
            stepWeightPromotion=20,
            webhooks=[
                {"name": "gate", "type": "rollback", "url": "http://lt/rollback/check"},
                {"name": "load", "url": "http://lt/", "muteAlert": True, "retries": 2},
            ],
        )["spec"]
    )
    assert spec.analysis.step_weight_promotion == 20
    assert [w.mute_alert for w in spec.analysis.webhooks] == [False, True]
