"""Finding 3: a value no one can process is refused by the API server, naming the field.

Before the bounds, ``analysis.interval: "<400 nines>s"`` passed the CRD's pattern and made
``parse_duration`` raise OverflowError, which stopped the engine for every namespace.
Now the CRD refuses every duration, number, string and list outside what the models
accept, and ``parse_duration`` can only raise ValueError.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollout.models import Analysis, Metric, Webhook, parse_duration
from tests.deploy.kubectl import Kubectl
from tests.security.conftest import VALID, apply, with_value

NINES = "9" * 400 + "s"


# -- the models (no cluster) -------------------------------------------------------------


@given(st.text(max_size=500) | st.from_regex(r"\A[0-9]{1,500}(h|m|s|ms)\Z"))
def test_parse_duration_raises_nothing_but_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert math.isfinite(seconds) and seconds >= 0


def test_four_hundred_nines_is_a_readable_value_error() -> None:
    with pytest.raises(ValueError, match="longer than 20 characters"):
        parse_duration(NINES)


@pytest.mark.parametrize(
    ("model", "field", "value", "message"),
    [
        (Analysis, "interval", "0s", "'0s' is out of range: use a duration from 1s to 24h"),
        (Analysis, "interval", "25h", "from 1s to 24h"),
        (Metric, "interval", "48h", "from 1s to 24h"),
        (Webhook, "timeout", "1h", "from 100ms to 10m"),
    ],
)
def test_models_refuse_durations_out_of_range(
    model: Any, field: str, value: str, message: str
) -> None:
    base: dict[str, Any] = {"name": "x", "url": "http://x/"} if model is Webhook else {}
    if model is Metric:
        base = {"name": "x"}
    with pytest.raises(ValueError, match=message):
        model.model_validate({**base, field: value})


# -- the API server ------------------------------------------------------------------------

REFUSED = [
    ("spec.analysis.interval", NINES, "spec.analysis.interval: Too long: may not be more than 20"),
    (
        "spec.analysis.interval",
        "0s",
        'spec.analysis.interval: Invalid value: "string": must be a duration from 1s to 24h',
    ),
    (
        "spec.analysis.interval",
        "99999h",
        'spec.analysis.interval: Invalid value: "string": must be a duration from 1s to 24h',
    ),
    ("spec.analysis.interval", "9999999999999999999h", "spec.analysis.interval: Invalid value"),
    (
        "spec.analysis.metrics.0.interval",
        "48h",
        'spec.analysis.metrics[0].interval: Invalid value: "string": must be a duration from 1s to 24h',
    ),
    (
        "spec.analysis.webhooks.0.timeout",
        "1h",
        'spec.analysis.webhooks[0].timeout: Invalid value: "string": must be a duration from 100ms to 10m',
    ),
    (
        "spec.progressDeadlineSeconds",
        10**12,
        "spec.progressDeadlineSeconds in body should be less than or equal to 86400",
    ),
    (
        "spec.analysis.threshold",
        10**6,
        "spec.analysis.threshold in body should be less than or equal to 1000",
    ),
    (
        "spec.analysis.iterations",
        10**9,
        "spec.analysis.iterations in body should be less than or equal to 1000",
    ),
    (
        "spec.analysis.stepWeightPromotion",
        500,
        "spec.analysis.stepWeightPromotion in body should be less than or equal to 100",
    ),
    (
        "spec.analysis.stepWeights",
        [50, 10],
        'spec.analysis.stepWeights: Invalid value: "array": stepWeights must increase strictly',
    ),
    ("spec.analysis.stepWeights", [12, 12], "spec.analysis.stepWeights[1]: Duplicate value: 12"),
    (
        "spec.analysis.metrics.0.thresholdRange",
        {"min": 1e300},
        "spec.analysis.metrics[0].thresholdRange.min in body should be less than or equal to 1e+15",
    ),
    (
        "spec.analysis.metrics.0.compareToStable",
        1e9,
        "spec.analysis.metrics[0].compareToStable in body should be less than or equal to 10000",
    ),
    (
        "spec.service.targetPort",
        70000,
        'spec.service.targetPort: Invalid value: "": must be a number from 1 to 65535 or a name of 1 to 63 characters',
    ),
    ("spec.service.targetPort", "x" * 100, "spec.service.targetPort: Invalid value"),
    ("spec.service.name", "x" * 100, "spec.service.name: Too long: may not be more than 63"),
    (
        "spec.requestedBy",
        {"user": "x" * 1000},
        "spec.requestedBy.user: Too long: may not be more than 256",
    ),
    ("spec.cluster", "c" * 1000, "spec.cluster: Too long: may not be more than 63"),
    (
        "spec.images",
        {"Bad_Name": "nginx:1"},
        'spec.images: Invalid value: "object": keys must be non-empty, at most 63 characters',
    ),
    ("spec.images", {"app": "x" * 300}, "spec.images.app: Too long: may not be more than 255"),
    (
        "spec.analysis.metrics.0.query",
        "up" + " " * 9000,
        "spec.analysis.metrics[0].query: Too long: may not be more than 8192",
    ),
    (
        "spec.analysis.webhooks.0.url",
        "http://x/" + "a" * 3000,
        "spec.analysis.webhooks[0].url: Too long: may not be more than 2048",
    ),
]


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("path", "value", "message"), REFUSED, ids=[f"{p}={str(v)[:12]}" for p, v, _ in REFUSED]
)
def test_api_server_refuses_values_out_of_bounds_naming_the_field(
    kubectl: Kubectl, namespace: str, path: str, value: Any, message: str
) -> None:
    done = apply(kubectl, namespace, with_value(path, value))

    assert done.returncode != 0, f"{path}={str(value)[:40]} was accepted"
    assert 'The CanaryRelease "podinfo" is invalid' in done.stderr
    assert message in done.stderr, done.stderr


@pytest.mark.cluster
def test_the_valid_release_the_cases_start_from_is_accepted(
    kubectl: Kubectl, namespace: str
) -> None:
    done = apply(kubectl, namespace, VALID)

    assert done.returncode == 0, done.stderr
    assert "canaryrelease.canarybot.io/podinfo created" in done.stdout
