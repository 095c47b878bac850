"""The config file: valid examples load, mistakes name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import ConfigError, Environment, load_config, parse_config

EXAMPLE = """
cluster: prod-eu-1
channels:
  default: C0DEPLOYS
  routes:
    - namespaces: ["team-a-*"]
      channel: C0TEAMA
authorization:
  rules:
    - namespaces: ["test", "staging-*"]
      verbs: [start, promote, abort, pause, resume, approve]
      users: [U0ALICE]
      groups: [S0SRE]
    - namespaces: ["*"]
      verbs: ["*"]
      groups: [S0ADMINS]
defaults:
  namespace: test
  profile: tutorial
  progressDeadlineSeconds: 60
profiles:
  tutorial:
    interval: 10s
    threshold: 10
    maxWeight: 50
    stepWeight: 5
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
        interval: 1m
      - name: latency
        templateRef: {name: latency-p99}
        thresholdRange: {max: 500}
    webhooks:
      - name: acceptance-test
        type: pre-rollout
        url: http://flagger-loadtester.test/
        timeout: 30s
        metadata: {type: bash, cmd: "curl -sd 'test' http://podinfo-canary/token | grep token"}
metricTemplates:
  latency-p99: |
    histogram_quantile(0.99, sum(rate(nginx_ingress_controller_request_duration_seconds_bucket{namespace="{{ namespace }}", ingress="{{ ingress }}"}[{{ interval }}])) by (le)) * 1000
"""


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "canary-bot.yaml"
    path.write_text(EXAMPLE)
    config = load_config(path)
    assert config.cluster == "prod-eu-1"
    assert config.profiles["tutorial"].weights() == list(range(5, 55, 5))
    assert config.channels.route("team-a-web") == "C0TEAMA"
    assert config.channels.route("test") == "C0DEPLOYS"
    assert [r.users for r in config.authorization.rules_for("staging-2", "abort")] == [
        ["U0ALICE"],
        [],
    ]


def test_no_file_means_an_empty_config() -> None:
    config = load_config(None)
    assert config.authorization.rules == []
    # no route and no default: no channel, wherever the command was typed
    assert config.channels.route("test") is None


@pytest.mark.parametrize(
    ("yaml_text", "says"),
    [
        ("channels: {default: deploys}", "channels.default: 'deploys' is not a Slack channel"),
        (
            "authorization: {rules: [{namespaces: [test], verbs: [abort], users: [alice]}]}",
            "authorization.rules.0.users: 'alice' is not a Slack user id",
        ),
        (
            "authorization: {rules: [{namespaces: [test], verbs: [delete], users: [U1AB]}]}",
            "authorization.rules.0.verbs.0",
        ),
        (
            "authorization: {rules: [{namespaces: [test], verbs: [abort]}]}",
            "needs at least one entry in users or groups",
        ),
        ("defaults: {profile: fast}", "defaults.profile names 'fast'"),
        ("profiles: {p: {maxWeight: 150}}", "maxWeight must be between 1 and 100"),
        ("profiles: {p: {interval: soon}}", "is not a duration"),
        ("chanels: {}", "chanels: unknown field"),
        (
            "metricTemplates: {x: 'rate(a{ns=\"{{ nmespace }}\"}[1m])'}",
            "uses {{ nmespace }}",
        ),
        (
            "profiles: {p: {metrics: [{name: m, templateRef: {name: nope}}]}}",
            "add it under metricTemplates",
        ),
        ("limits: [{maxWeight: 50}]", "a limits entry needs namespaces"),
        ("limits: [{namespaces: [prod]}]", "a limits entry sets nothing"),
        (
            "limits: [{namespaces: [prod], interval: {min: 10m, max: 1m}}]",
            "limits.0.interval: min 10m is longer than max 1m",
        ),
        ("limits: [{namespaces: [prod], interval: {max: 99999999h}}]", "is longer than 24h"),
        ("limits: [{namespaces: [prod], threshold: {min: 9, max: 3}}]", "min 9 is greater"),
        ("limits: [{namespaces: [prod], maxStepWeight: 0}]", "limits.0.maxStepWeight"),
        ("limits: [{profiles: [fast], maxWeight: 5}]", "limits[0].profiles names 'fast'"),
        ("[1, 2]", "must be a YAML mapping"),
        ("a: [", "is not valid YAML"),
    ],
)
def test_mistakes_name_the_field_and_the_fix(yaml_text: str, says: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(yaml_text, "canary-bot.yaml")
    assert says in str(error.value)
    assert "canary-bot.yaml" in str(error.value)


def test_a_missing_file_says_how_to_point_at_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set CANARY_BOT_CONFIG"):
        load_config(tmp_path / "missing.yaml")


def test_models_are_frozen() -> None:
    config = parse_config(EXAMPLE)
    with pytest.raises(ValueError):
        config.cluster = "other"  # type: ignore[misc]


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "sign-very-secret")
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    env = Environment()
    assert isinstance(env.slack_bot_token, SecretStr)
    assert "very-secret" not in repr(env) and "very-secret" not in str(env)
    assert env.transport == "http"
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-secret")
    assert Environment().transport == "socket"


def test_api_url_gets_the_trailing_slash_slack_sdk_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9999/api")
    assert Environment().api_url == "http://127.0.0.1:9999/api/"


def test_the_shipped_example_is_valid_and_matches_the_tutorial() -> None:
    example = Path(__file__).resolve().parents[2] / "manifests" / "canary-bot.example.yaml"
    config = load_config(example)
    tutorial = config.profiles["tutorial"]
    assert (tutorial.interval, tutorial.threshold, tutorial.max_weight, tutorial.step_weight) == (
        "10s",
        10,
        50,
        5,
    )
    assert [w.name for w in tutorial.webhooks] == ["acceptance-test", "load-test"]
    prod = config.limits[0]
    assert (prod.max_weight, prod.max_step_weight, prod.require_approval) == (50, 10, True)
    assert prod.applies("prod-eu", "latency") and not prod.applies("test", "latency")
    assert config.limits[1].applies("test", "latency")
    # "*" in an authorization rule does not grant skip-analysis; the example names it
    assert config.authorization.rules_for("test", "skip-analysis")[0].verbs == ["skip-analysis"]
