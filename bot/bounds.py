"""Bounds that a ``/canary start`` (typed or from the form) and ``plan`` cannot cross.

This module is the one home of the rule. ``bot.releases.build_analysis`` calls ``check``
on the analysis it merged (flags over profile over ``defaults`` over Flagger's), so a
value is refused whichever layer set it, and the message names the value, where it came
from, the bound, and where the bound came from.

Bounds come from the ``limits`` entries of the config that apply to the start's namespace
and profile; where several set the same bound the stricter wins. A bound that no entry
sets takes its built-in default (``BUILT_IN``), chosen so that a config without ``limits``
still cannot turn a canary into an unchecked rollout:

* step at most 50 %: the first step never sends more than half the traffic, and at least
  one analysis runs before all of it moves;
* interval between 1 s and 1 h: a check is always due within the hour;
* threshold between 1 and 100 failed checks.

Max weight has no built-in bound beyond the schema's 100 %: with bounded steps and
intervals the analysis still runs at every step.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from bot.config import BotConfig, LimitRule
from rollout.models import Analysis, parse_duration

# Which layer set an analysis value (``bot.releases.build_analysis`` knows).
Origin = Literal["flag", "profile", "defaults", "flagger"]

FLAGS: dict[str, str] = {
    "maxWeight": "--max",
    "stepWeight": "--step",
    "interval": "--interval",
    "threshold": "--threshold",
}


@dataclass(frozen=True)
class BuiltIn:
    """Bounds used where no ``limits`` entry sets one (None: no bound)."""

    max_weight: int | None = None
    max_step_weight: int | None = 50
    min_interval: str | None = "1s"
    max_interval: str | None = "1h"
    min_threshold: int | None = 1
    max_threshold: int | None = 100


BUILT_IN = BuiltIn()
_BUILT_IN_ORIGIN = "(built-in default; a `limits` entry in the canary-bot config can change it)"


@dataclass(frozen=True)
class Bound:
    """One bound: its value, how a person writes it, and where it comes from."""

    value: float  # seconds for intervals
    shown: str
    origin: str  # e.g. "for namespace prod (config: limits[0])"


@dataclass(frozen=True)
class Bounds:
    """Every bound for one start; None where nothing bounds the value."""

    max_weight: Bound | None
    max_step_weight: Bound | None
    min_interval: Bound | None
    max_interval: Bound | None
    min_threshold: Bound | None
    max_threshold: Bound | None
    approval: str | None  # where approval is required from, or None when it is not


def _origin(index: int, rule: LimitRule, namespace: str, profile: str | None) -> str:
    where = []
    if rule.namespaces is not None:
        where.append(f"namespace {namespace}")
    if rule.profiles is not None:
        where.append(f"profile {profile}")
    return f"for {' and '.join(where)} (config: limits[{index}])"


def _duration_bound(text: str | None, origin: str) -> Bound | None:
    return None if text is None else Bound(parse_duration(text), text, origin)


def _number_bound(value: int | None, origin: str) -> Bound | None:
    return None if value is None else Bound(value, str(value), origin)


def _pick(found: list[Bound], fallback: Bound | None, *, lowest: bool) -> Bound | None:
    """The strictest configured bound (the lowest ceiling, the highest floor)."""
    if not found:
        return fallback
    return min(found, key=lambda b: b.value) if lowest else max(found, key=lambda b: b.value)


def bounds_for(config: BotConfig, namespace: str, profile: str | None) -> Bounds:
    """The bounds for a start in ``namespace`` with ``profile`` (None: no profile)."""
    found: dict[str, list[Bound]] = {
        key: [] for key in ("weight", "step", "imin", "imax", "tmin", "tmax")
    }
    approval: str | None = None
    for index, rule in enumerate(config.limits):
        if not rule.applies(namespace, profile):
            continue
        origin = _origin(index, rule, namespace, profile)
        interval, threshold = rule.interval, rule.threshold
        candidates = {
            "weight": _number_bound(rule.max_weight, origin),
            "step": _number_bound(rule.max_step_weight, origin),
            "imin": _duration_bound(interval.min if interval else None, origin),
            "imax": _duration_bound(interval.max if interval else None, origin),
            "tmin": _number_bound(threshold.min if threshold else None, origin),
            "tmax": _number_bound(threshold.max if threshold else None, origin),
        }
        for key, bound in candidates.items():
            if bound is not None:
                found[key].append(bound)
        if rule.require_approval and approval is None:
            approval = origin
    return Bounds(
        max_weight=_pick(
            found["weight"], _number_bound(BUILT_IN.max_weight, _BUILT_IN_ORIGIN), lowest=True
        ),
        max_step_weight=_pick(
            found["step"], _number_bound(BUILT_IN.max_step_weight, _BUILT_IN_ORIGIN), lowest=True
        ),
        min_interval=_pick(
            found["imin"], _duration_bound(BUILT_IN.min_interval, _BUILT_IN_ORIGIN), lowest=False
        ),
        max_interval=_pick(
            found["imax"], _duration_bound(BUILT_IN.max_interval, _BUILT_IN_ORIGIN), lowest=True
        ),
        min_threshold=_pick(
            found["tmin"], _number_bound(BUILT_IN.min_threshold, _BUILT_IN_ORIGIN), lowest=False
        ),
        max_threshold=_pick(
            found["tmax"], _number_bound(BUILT_IN.max_threshold, _BUILT_IN_ORIGIN), lowest=True
        ),
        approval=approval,
    )


def _subject(key: str, value: object, origin: Origin, profile: str | None) -> str:
    """How the refusal names a value: the flag as typed, or the config that set it."""
    if origin == "flag":
        return f"{FLAGS[key]} {value}"
    if origin == "profile":
        return f"{key} {value} of profile {profile}"
    if origin == "defaults":
        return f"defaults.{key} {value}"
    return f"{key} {value} (Flagger's default)"


def _above(subject: str, bound: Bound, flag: str) -> str:
    return (
        f"{subject} is above the limit {bound.shown} {bound.origin}; "
        f"use {flag} {bound.shown} or less"
    )


def _below(subject: str, bound: Bound, flag: str) -> str:
    return (
        f"{subject} is below the limit {bound.shown} {bound.origin}; "
        f"use {flag} {bound.shown} or more"
    )


def largest_step(analysis: Analysis) -> int:
    """The biggest jump in canary weight the analysis makes (from 0 to the first step too)."""
    weights = analysis.weights()
    return max(b - a for a, b in itertools.pairwise([0, *weights]))


def check(
    analysis: Analysis,
    origins: Mapping[str, Origin],
    profile: str | None,
    bounds: Bounds,
) -> list[str]:
    """Every bound the analysis crosses, one sentence each (empty: within bounds).

    ``origins`` says which layer set ``maxWeight``, ``stepWeight``/``stepWeights``,
    ``interval`` and ``threshold``; values no layer set are Flagger's defaults.
    """

    def subject(key: str, value: object) -> str:
        return _subject(key, value, origins.get(key, "flagger"), profile)

    problems = []
    if bounds.max_weight is not None and analysis.max_weight > bounds.max_weight.value:
        problems.append(
            _above(subject("maxWeight", analysis.max_weight), bounds.max_weight, "--max")
        )
    step = largest_step(analysis)
    if bounds.max_step_weight is not None and step > bounds.max_step_weight.value:
        if analysis.step_weights:
            shown = _subject("stepWeights", analysis.step_weights, "profile", profile)
            named = f"{shown} (a step of {step})"
        else:
            named = subject("stepWeight", analysis.step_weight)
        problems.append(_above(named, bounds.max_step_weight, "--step"))
    seconds = analysis.interval_seconds
    named = subject("interval", analysis.interval)
    if bounds.min_interval is not None and seconds < bounds.min_interval.value:
        problems.append(_below(named, bounds.min_interval, "--interval"))
    if bounds.max_interval is not None and seconds > bounds.max_interval.value:
        problems.append(_above(named, bounds.max_interval, "--interval"))
    named = subject("threshold", analysis.threshold)
    if bounds.min_threshold is not None and analysis.threshold < bounds.min_threshold.value:
        problems.append(_below(named, bounds.min_threshold, "--threshold"))
    if bounds.max_threshold is not None and analysis.threshold > bounds.max_threshold.value:
        problems.append(_above(named, bounds.max_threshold, "--threshold"))
    return problems


def approval_note(bounds: Bounds) -> str:
    """What the start reply says when the config forces approval ("" when it does not)."""
    if bounds.approval is None:
        return ""
    return (
        f"Approval is required {bounds.approval}: the release waits for `/canary approve` "
        "before promotion."
    )

