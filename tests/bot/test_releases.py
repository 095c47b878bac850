"""From a start request to the spec that gets created; names; plans."""

from __future__ import annotations

import pytest

from bot.commands import ReleaseOptions
from bot.config import parse_config
from bot.releases import MAX_NAME, RequestProblem, build_spec, plan_of, release_name
from rollout.models import Requester
from tests.bot.test_config import EXAMPLE

CONFIG = parse_config(EXAMPLE)
ALICE = Requester(user="U0ALICE", userName="alice", channel="C0DEPLOYS", source="slack")


def test_the_tutorial_profile_and_defaults_make_the_spec() -> None:
    spec = build_spec(
        ReleaseOptions("podinfo", image="stefanprodan/podinfo:6.0.3"),
        CONFIG,
        ALICE,
        {"podinfod": "stefanprodan/podinfo:6.0.0"},
    )
    assert spec.images == {"podinfod": "stefanprodan/podinfo:6.0.3"}
    assert spec.ingress_ref is not None and spec.ingress_ref.name == "podinfo"
    assert spec.analysis.interval == "10s"
    assert spec.analysis.threshold == 10
    assert spec.analysis.weights()[:3] == [5, 10, 15]
    assert spec.progress_deadline_seconds == 60
    assert spec.cluster == "prod-eu-1"
    assert spec.requested_by.user == "U0ALICE"
    # the engine renders the template with the release's names (rollout.analysis)
    assert spec.analysis.metrics[1].template_ref is not None


def test_flags_override_the_profile() -> None:
    spec = build_spec(
        ReleaseOptions(
            "podinfo",
            images={"podinfod": "stefanprodan/podinfo:6.0.3"},
            step_weight=20,
            max_weight=60,
            interval="30s",
            threshold=3,
            approval=True,
            ingress="web",
            port=8080,
        ),
        CONFIG,
        ALICE,
        None,
    )
    assert spec.analysis.weights() == [20, 40, 60]
    assert (spec.analysis.interval, spec.analysis.threshold) == ("30s", 3)
    assert spec.approval == "manual"
    assert spec.ingress_ref.name == "web"
    assert spec.service.port == 8080


def test_image_needs_a_single_container() -> None:
    with pytest.raises(RequestProblem, match=r"say which one gets the image, e\.g\. app=x:1"):
        build_spec(
            ReleaseOptions("podinfo", image="x:1"), CONFIG, ALICE, {"app": "x:0", "proxy": "y:0"}
        )


def test_unknown_profile_is_refused_without_naming_the_others() -> None:
    with pytest.raises(RequestProblem) as refused:
        build_spec(ReleaseOptions("podinfo", image="x:1", profile="fast"), CONFIG, ALICE, None)
    assert str(refused.value) == (
        "there is no analysis profile named fast; ask your platform team which profile to "
        "use, or see `/canary help`"
    )
    assert "tutorial" not in str(refused.value)


def test_release_names_are_stable_per_request_and_short() -> None:
    first = release_name("podinfo", "test/trigger-1")
    assert first == release_name("podinfo", "test/trigger-1")
    assert first != release_name("podinfo", "test/trigger-2")
    assert first.startswith("podinfo-") and len(first) == len("podinfo-") + 5
    long = release_name("a" * 200, "seed")
    assert len(long) <= MAX_NAME


def test_plan_describes_steps_and_time() -> None:
    plan = plan_of(CONFIG.profiles["tutorial"])
    assert plan.minimum_seconds == 110
    text = plan.describe()
    assert "10 steps: 5% → 10%" in text and "at least 1m50s to promotion" in text
    assert "10 failed checks in a row roll back (after 1m40s at the earliest)" in text


def test_a_gateway_config_starts_releases_on_the_route_with_its_provider() -> None:
    defaults = CONFIG.defaults.model_copy(update={"router": "gateway", "provider": "contour"})
    config = CONFIG.model_copy(update={"defaults": defaults})

    spec = build_spec(
        ReleaseOptions("podinfo", image="stefanprodan/podinfo:6.0.3"),
        config,
        ALICE,
        {"podinfod": "stefanprodan/podinfo:6.0.0"},
    )

    assert spec.ingress_ref is None
    assert spec.route_ref is not None
    assert (spec.route_ref.kind, spec.route_ref.name) == ("HTTPRoute", "podinfo")
    assert spec.metrics_provider == "contour"
