"""Which namespace counts as canary-bot's own, and so is protected."""

from __future__ import annotations

from rollout.controller import EngineSettings, _own_namespace


def test_the_lease_namespace_is_protected_for_a_cluster_wide_engine() -> None:
    settings = EngineSettings(own_namespace="canary-bot", namespace=None)
    assert _own_namespace(settings) == "canary-bot"


def test_an_engine_scoped_to_another_namespace_still_protects_its_own() -> None:
    settings = EngineSettings(own_namespace="canary-bot", namespace="apps")
    assert _own_namespace(settings) == "canary-bot"


def test_an_engine_scoped_to_the_namespace_it_runs_in_releases_apps_there() -> None:
    settings = EngineSettings(own_namespace="apps", namespace="apps")
    assert _own_namespace(settings) == ""
