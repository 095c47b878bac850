"""Bounds on /canary start flags: which apply, which wins, and what the refusal says."""

from __future__ import annotations

import pytest

from bot.bounds import bounds_for
from bot.commands import ReleaseOptions, StartCommand, parse
from bot.config import BotConfig, parse_config
from bot.releases import RequestProblem, approval_of, build_analysis, build_spec
from rollout.models import Requester

CONFIG = parse_config(
    """
defaults:
  namespace: test
  profile: tutorial
profiles:
  tutorial: {interval: 10s, threshold: 10, maxWeight: 50, stepWeight: 5}
  jumpy: {interval: 30s, threshold: 5, maxWeight: 100, stepWeights: [10, 20, 100]}
  soak: {interval: 2h, threshold: 3, maxWeight: 20, stepWeight: 10}
limits:
  - namespaces: ["prod", "prod-*"]
    maxWeight: 50
    maxStepWeight: 10
    interval: {min: 30s, max: 10m}
    threshold: {min: 2, max: 10}
    requireApproval: true
  - namespaces: ["prod-eu"]
    maxWeight: 30
  - profiles: [soak]
    interval: {max: 6h}
"""
)
ALICE = Requester(user="U0ALICE", userName="alice", source="slack")


def options(text: str) -> ReleaseOptions:
    parsed = parse(f"start podinfo image=stefanprodan/podinfo:6.0.3 {text}")
    assert isinstance(parsed, StartCommand)
    return parsed.options


def refusal(text: str, config: BotConfig = CONFIG) -> str:
    with pytest.raises(RequestProblem) as problem:
        build_analysis(options(text), config)
    return str(problem.value)


def test_each_flag_over_a_namespace_bound_is_named_with_the_bound_and_its_source() -> None:
    said = refusal("-n prod --max 100 --step 100 --interval 1h --threshold 1000")
    assert said.startswith("4 values are outside the allowed bounds:")
    assert (
        "• --max 100 is above the limit 50 for namespace prod (config: limits[0]); "
        "use --max 50 or less" in said
    )
    assert "• --step 100 is above the limit 10 for namespace prod (config: limits[0])" in said
    assert "• --interval 1h is above the limit 10m for namespace prod (config: limits[0]); " in said
    assert "use --interval 10m or less" in said
    assert "• --threshold 1000 is above the limit 10 for namespace prod (config: limits[0])" in said


def test_floors_are_bounds_too() -> None:
    said = refusal("-n prod-us --interval 5s --threshold 1 --step 5")
    assert (
        "--interval 5s is below the limit 30s for namespace prod-us (config: limits[0]); " in said
    )
    assert "use --interval 30s or more" in said
    assert "--threshold 1 is below the limit 2" in said


def test_the_stricter_of_two_matching_entries_wins() -> None:
    said = refusal("-n prod-eu --max 40 --step 10 --interval 30s --threshold 3")
    assert said == (
        "--max 40 is above the limit 30 for namespace prod-eu (config: limits[1]); "
        "use --max 30 or less"
    )
    assert build_analysis(options("-n prod-eu --max 30 --step 10 --interval 30s"), CONFIG)


def test_a_profile_value_is_bounded_and_named_as_the_profile_s() -> None:
    # the tutorial profile is too fast for prod: nobody typed --interval
    said = refusal("-n prod --step 5 --threshold 5")
    assert said == (
        "interval 10s of profile tutorial is below the limit 30s for namespace prod "
        "(config: limits[0]); use --interval 30s or more"
    )


def test_a_step_list_is_bounded_by_its_largest_step() -> None:
    said = refusal("-n staging --profile jumpy")
    assert said == (
        "stepWeights [10, 20, 100] of profile jumpy (a step of 80) is above the limit 50 "
        "(built-in default; a `limits` entry in the canary-bot config can change it); "
        "use --step 50 or less"
    )
    # --step replaces the profile's list, so the suggested fix works
    assert build_analysis(options("-n staging --profile jumpy --step 50"), CONFIG).weights() == [
        50,
        100,
    ]


def test_built_in_bounds_hold_without_any_limits_configured() -> None:
    said = refusal("--max 100 --step 100 --interval 24h --threshold 1000", parse_config(""))
    assert "--step 100 is above the limit 50 (built-in default;" in said
    assert "--interval 24h is above the limit 1h (built-in default;" in said
    assert "--threshold 1000 is above the limit 100 (built-in default;" in said
    assert "--max" not in said  # no built-in ceiling on the weight itself
    analysis = build_analysis(options("--max 100 --step 50 --interval 1h --threshold 100"), CONFIG)
    assert analysis.weights() == [50, 100]


def test_a_profile_entry_can_open_a_built_in_bound_for_that_profile_only() -> None:
    assert build_analysis(options("--profile soak"), CONFIG).interval == "2h"
    said = refusal("--profile soak --interval 7h")
    assert "--interval 7h is above the limit 6h for profile soak (config: limits[2])" in said
    assert "above the limit 1h (built-in default" in refusal("--interval 2h")


def test_approval_required_is_forced_and_said() -> None:
    spec = build_spec(
        options("-n prod --step 10 --interval 30s --threshold 5"), CONFIG, ALICE, None
    )
    assert spec.approval == "manual"
    approval, note = approval_of(options("-n prod"), CONFIG)
    assert approval == "manual"
    assert note == (
        "Approval is required for namespace prod (config: limits[0]): the release waits "
        "for `/canary approve` before promotion."
    )
    assert approval_of(options("-n test"), CONFIG) == ("auto", "")
    assert approval_of(options("-n test --approval"), CONFIG) == ("manual", "")


def test_skip_analysis_reaches_the_spec() -> None:
    spec = build_spec(options("-n test --skip-analysis"), CONFIG, ALICE, None)
    assert spec.skip_analysis is True
    assert build_spec(options("-n test"), CONFIG, ALICE, None).skip_analysis is False


def test_bounds_for_selects_by_namespace_and_profile() -> None:
    bounds = bounds_for(CONFIG, "prod-eu", "soak")
    assert bounds.max_weight is not None and bounds.max_weight.value == 30
    # the soak entry's 6h also applies, but the prod entry's 10m is stricter
    assert bounds.max_interval is not None and bounds.max_interval.shown == "10m"
    assert bounds.approval == "for namespace prod-eu (config: limits[0])"
    soak = bounds_for(CONFIG, "staging", "soak").max_interval
    assert soak is not None and soak.shown == "6h"
    none = bounds_for(CONFIG, "test", None)
    assert none.max_weight is None and none.approval is None
    assert none.max_step_weight is not None and none.max_step_weight.value == 50
