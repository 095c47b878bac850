"""The ``clusters:`` section: what a front serving several clusters accepts and refuses."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, parse_config

TWO = """
clusters:
  - name: prod-eu
    context: kind-eu
    channels: [C0EU]
  - name: prod-us
    kubeconfig: /etc/canary-bot/clusters/prod-us/kubeconfig
    default: true
"""


def test_two_clusters_load_with_their_channels_and_default() -> None:
    config = parse_config(TWO)
    assert config.cluster_names == ["prod-eu", "prod-us"]
    eu, us = config.clusters
    assert (eu.context, eu.kubeconfig, eu.channels, eu.default) == (
        "kind-eu",
        None,
        ["C0EU"],
        False,
    )
    assert (us.context, us.default) == (None, True)


def test_without_clusters_the_display_name_is_the_one_cluster() -> None:
    assert parse_config("cluster: sandbox").cluster_names == ["sandbox"]
    assert parse_config("").cluster_names == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "clusters:\n  - {name: a, context: x}\n  - {name: a, context: y}",
            "clusters: a is listed twice",
        ),
        (
            "clusters:\n  - {name: a, context: x, channels: [C0OPS]}\n"
            "  - {name: b, context: y, channels: [C0OPS]}",
            "channel C0OPS is listed under a and b; a channel can default to one cluster only",
        ),
        (
            "clusters:\n  - {name: a, context: x, default: true}\n"
            "  - {name: b, context: y, default: true}",
            "a and b both say default: true; keep it on one",
        ),
        ("clusters:\n  - {name: a}", "cluster a needs context"),
        ("clusters:\n  - {name: Prod_EU, context: x}", "is not a cluster name"),
        ("clusters:\n  - {name: a, context: x, channels: [general]}", "is not a Slack channel"),
        ('clusters:\n  - {name: a, kubeconfig: "/a\\nb"}', "kubeconfig must be a file path"),
        ("clusters:\n  - {name: a, context: x, token: abc}", "unknown field"),
    ],
    ids=[
        "duplicate",
        "channel-twice",
        "two-defaults",
        "no-credentials",
        "bad-name",
        "bad-channel",
        "path-newline",
        "unknown-field",
    ],
)
def test_cluster_mistakes_are_refused_at_load(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert says in str(raised.value)


RULE = """
authorization:
  rules:
    - namespaces: ["*"]
      clusters: [{clusters}]
      verbs: [abort]
      users: [U0ALICE]
"""


def test_a_rule_naming_an_unknown_cluster_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(TWO + RULE.format(clusters="prod-ap"))
    assert "authorization.rules[0].clusters names 'prod-ap'" in str(raised.value)
    assert "clusters: prod-eu, prod-us" in str(raised.value)


def test_a_rule_naming_clusters_without_any_configured_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(RULE.format(clusters="prod-*"))
    assert "matches no configured cluster" in str(raised.value)


def test_a_rule_applies_only_in_the_clusters_it_names() -> None:
    config = parse_config(TWO + RULE.format(clusters="prod-e*"))
    rules = config.authorization
    assert rules.rules_for("team", "abort", "prod-eu")
    assert not rules.rules_for("team", "abort", "prod-us")
    unnamed = parse_config(TWO + RULE.replace("      clusters: [{clusters}]\n", ""))
    assert unnamed.authorization.rules_for("team", "abort", "prod-us")


def test_a_rule_with_an_empty_cluster_list_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(TWO + RULE.format(clusters=""))
    assert "needs at least one cluster name or glob" in str(raised.value)
