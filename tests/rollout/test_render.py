"""Pure parts of the analysis and webhook modules: PromQL rendering, verdicts, payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollout.analysis import (
    QueryContext,
    QueryTemplateError,
    builtin_query,
    judge,
    query_variables,
    render_query,
)
from rollout.models import Metric, Phase, Webhook
from rollout.webhooks import describe, hook_payload, payload


def make_metric(**wire: Any) -> Metric:
    """A metric from the fields as a user writes them (camelCase)."""
    return Metric.model_validate(wire)


CTX = QueryContext(
    namespace="test",
    target="podinfo",
    ingress="podinfo",
    service="podinfo",
    port=80,
    release="podinfo",
)


# -- render_query --------------------------------------------------------------------------


def test_flagger_template_renders_with_release_variables() -> None:
    template = (
        'sum(rate(http_requests_total{namespace="{{ namespace }}",pod=~"{{ target }}-.*",'
        'status=~"{{ variables.codes }}"}[{{ interval }}])) / '
        'sum(rate(http_requests_total{namespace="{{namespace}}"}[{{interval}}]))'
    )
    metric = make_metric(name="errors", interval="2m", templateVariables={"codes": "5.."})

    query = render_query(template, query_variables(CTX, metric))

    assert query == (
        'sum(rate(http_requests_total{namespace="test",pod=~"podinfo-.*",status=~"5.."}[2m])) / '
        'sum(rate(http_requests_total{namespace="test"}[2m]))'
    )


def test_every_documented_variable_is_available() -> None:
    metric = make_metric(name="x", interval="30s")
    rendered = render_query(
        "{{ name }} {{ namespace }} {{ target }} {{ ingress }} {{ service }} "
        "{{ interval }} {{ canary }}",
        query_variables(CTX, metric),
    )
    assert rendered == "podinfo test podinfo podinfo podinfo 30s test-podinfo-canary-80"


def test_unknown_variable_is_named_in_the_error() -> None:
    with pytest.raises(QueryTemplateError) as err:
        render_query("up{ns='{{ namespce }}', x='{{ variables.nope }}'}", {"namespace": "a"})
    message = str(err.value)
    assert "{{ namespce }}" in message
    assert "{{ variables.nope }}" in message
    assert "known: namespace" in message


def test_malformed_placeholder_is_an_error_not_a_broken_query() -> None:
    with pytest.raises(QueryTemplateError, match="malformed"):
        render_query('up{namespace="{{ namespace"}', {"namespace": "a"})


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=200))
def test_text_without_placeholders_is_left_alone(text: str) -> None:
    assert render_query(text, {"namespace": "x"}) == text


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
        st.text(max_size=20),
        min_size=1,
        max_size=5,
    )
)
def test_every_placeholder_is_replaced_by_its_value(variables: dict[str, str]) -> None:
    template = " | ".join(f"{{{{ {name} }}}}" for name in variables)
    assert render_query(template, variables) == " | ".join(variables.values())


def test_builtin_queries_read_the_main_ingress_and_split_by_canary_label() -> None:
    canary = builtin_query(CTX, "request-success-rate", "1m")
    stable = builtin_query(CTX, "request-success-rate", "1m", stable=True)
    assert 'ingress="podinfo"' in canary and 'namespace="test"' in canary
    assert 'canary!~"|-"' in canary and 'canary=~"|-"' in stable
    assert "[1m]" in canary
    p99 = builtin_query(CTX, "request-duration", "30s")
    assert p99.startswith("histogram_quantile(0.99, sum by (le) (")
    assert "_bucket{" in p99 and p99.endswith("* 1000")
    with pytest.raises(ValueError, match="built-in"):
        builtin_query(CTX, "error-rate", "1m")


# -- judge ---------------------------------------------------------------------------------


def test_low_success_rate_fails_with_the_value_and_threshold_in_words() -> None:
    metric = make_metric(name="request-success-rate", thresholdRange={"min": 99})
    result = judge(CTX, metric, 48.123, None, "q")
    assert not result.ok and not result.fail_fast
    assert result.message == "request-success-rate 48.12% (threshold >= 99)"


def test_no_value_uses_flaggers_wording_and_hints_at_the_load_test() -> None:
    metric = make_metric(name="request-success-rate", thresholdRange={"min": 99})
    result = judge(CTX, metric, None, None, "q")
    assert not result.ok
    assert result.message.startswith(
        "no values found for nginx metric request-success-rate probably podinfo.test "
        "is not receiving traffic: "
    )
    assert "load-test webhook" in result.message


def test_compare_mode_fails_a_canary_worse_than_stable_beyond_tolerance() -> None:
    metric = make_metric(name="request-success-rate", thresholdRange={"min": 90}, compareToStable=1)
    worse = judge(CTX, metric, 97.0, 99.9, "q")
    assert not worse.ok
    assert "2.90 points below stable" in worse.message
    within = judge(CTX, metric, 99.2, 99.9, "q")
    assert within.ok


def test_compare_mode_for_duration_is_relative() -> None:
    metric = make_metric(name="request-duration", thresholdRange={"max": 1000}, compareToStable=20)
    assert not judge(CTX, metric, 130.0, 100.0, "q").ok
    assert judge(CTX, metric, 115.0, 100.0, "q").ok


def test_compare_mode_without_stable_data_falls_back_to_the_threshold() -> None:
    metric = make_metric(name="request-success-rate", thresholdRange={"min": 99}, compareToStable=1)
    result = judge(CTX, metric, 99.5, None, "q")
    assert result.ok
    assert "stable side has no data" in result.message


def test_fail_fast_marks_a_value_beyond_its_range() -> None:
    metric = make_metric(name="request-success-rate", thresholdRange={"min": 99}, failFast={"min": 80})
    bad = judge(CTX, metric, 50.0, None, "q")
    assert bad.fail_fast and not bad.ok
    assert "fail-fast" in bad.message
    poor = judge(CTX, metric, 95.0, None, "q")
    assert not poor.fail_fast and not poor.ok


# -- webhook payloads ----------------------------------------------------------------------


def test_payload_has_flaggers_shape() -> None:
    body = payload("podinfo", "test", Phase.PROGRESSING, "abc123", {"cmd": "hey"})
    assert body == {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "checksum": "abc123",
        "metadata": {"cmd": "hey"},
    }
    assert json.loads(json.dumps(body)) == body


def test_event_payload_adds_message_type_and_millisecond_timestamp() -> None:
    at = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    body = payload("podinfo", "test", Phase.FAILED, "c", {}, ("Canary failed", "Warning"), now=at)
    assert body["metadata"] == {
        "eventMessage": "Canary failed",
        "eventType": "Warning",
        "timestamp": "1714564800250",
    }


def test_hook_metadata_travels_in_the_payload_and_event_fields_win() -> None:
    hook = Webhook(
        name="notify", type="event", url="http://x/", metadata={"team": "a", "eventType": "x"}
    )
    body = payload("podinfo", "test", Phase.PROGRESSING, "c", {}, ("msg", "Normal"))
    sent = hook_payload(hook, body)
    assert sent["metadata"]["team"] == "a"
    assert sent["metadata"]["eventType"] == "Normal"
    assert body["metadata"].get("team") is None  # the shared body is not changed


def test_outcome_wording_follows_the_hook_type() -> None:
    gate = Webhook(name="g", type="confirm-promotion", url="http://x/")
    check = Webhook(name="acceptance-test", type="pre-rollout", url="http://x/")
    assert describe(gate, False, "HTTP 403 Forbidden") == (
        "confirm-promotion gate g closed: HTTP 403 Forbidden"
    )
    assert describe(check, False, "HTTP 500 boom") == (
        "pre-rollout check acceptance-test failed: HTTP 500 boom"
    )
