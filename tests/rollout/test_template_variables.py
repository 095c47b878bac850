"""Query template variables mean what they mean in Flagger, so pasted templates work."""

from __future__ import annotations

import re

import pytest

from rollout.analysis import TEMPLATE_VARIABLES, QueryContext, query_variables, render_query
from rollout.models import Metric

# a release named like `/canary start` names them, for a Deployment with its own names
CTX = QueryContext(
    namespace="test",
    target="podinfo",
    ingress="podinfo-ingress",
    service="podinfo",
    port=80,
    release="podinfo-x7k2p",
)
METRIC = Metric.model_validate(
    {"name": "latency", "interval": "2m", "templateVariables": {"cluster": "eu-1"}}
)


def test_name_is_the_targets_name_as_in_flagger_not_the_releases() -> None:
    variables = query_variables(CTX, METRIC)
    assert variables["name"] == "podinfo"
    assert variables["release"] == "podinfo-x7k2p"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("name", "podinfo"),
        ("namespace", "test"),
        ("target", "podinfo"),
        ("service", "podinfo"),
        ("ingress", "podinfo-ingress"),
        ("route", "podinfo"),
        ("interval", "2m"),
        ("variables.cluster", "eu-1"),
        ("canary", "test-podinfo-canary-80"),
        ("release", "podinfo-x7k2p"),
    ],
)
def test_each_variable_renders_its_value(variable: str, value: str) -> None:
    assert render_query(f"x{{{{ {variable} }}}}y", query_variables(CTX, METRIC)) == f"x{value}y"


def test_the_documented_variables_are_exactly_the_available_ones() -> None:
    available = {re.sub(r"^variables\..*", "variables.<key>", v) for v in query_variables(CTX, METRIC)}
    assert available == set(TEMPLATE_VARIABLES)


def test_flaggers_own_variables_are_all_there() -> None:
    flagger = {"name", "namespace", "target", "service", "ingress", "route", "interval"}
    assert flagger <= set(query_variables(CTX, METRIC))
