"""From a ``start``/``plan`` request to a CanaryRelease spec, and from a name to a release.

Pure except for ``resolve``, which reads releases through the ``ReleaseStore``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from bot import bounds
from bot.bounds import Origin
from bot.commands import ReleaseOptions
from bot.config import BotConfig
from rollout.egress import plain_text
from rollout.models import (
    Analysis,
    CanaryRelease,
    CanaryReleaseSpec,
    Requester,
    format_duration,
)
from rollout.store import ReleaseStore, describe_validation_error

TARGET_LABEL = "canarybot.io/target"
# Release names stay within 63 characters: they become label values and Event names.
MAX_NAME = 63
_SUFFIX_LEN = 5
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # no vowels: no words, no look-alike 0/1/o/l


class RequestProblem(Exception):
    """The request cannot become a release; the message says why and how to fix it."""


def release_name(target: str, seed: str) -> str:
    """``<target>-<suffix>``: unique per request, the same for a retry of the same request."""
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    suffix = ""
    for _ in range(_SUFFIX_LEN):
        digest, index = divmod(digest, len(_ALPHABET))
        suffix += _ALPHABET[index]
    stem = target[: MAX_NAME - _SUFFIX_LEN - 1].rstrip("-.")
    return f"{stem}-{suffix}"


def choose_images(options: ReleaseOptions, containers: dict[str, str] | None) -> dict[str, str]:
    """The ``spec.images`` map; ``image=`` needs a single-container Deployment.

    ``containers`` maps the Deployment's container names to their images (None when the
    Deployment was not found: the preflight check reports that, so a placeholder is fine).
    """
    if options.image is None:
        return dict(options.images)
    if containers is None:
        return {options.deployment: options.image}
    if len(containers) != 1:
        names = ", ".join(sorted(containers)) or "none"
        example = next(iter(sorted(containers)), "app")
        raise RequestProblem(
            f"Deployment {options.deployment} has {len(containers)} containers ({names}); "
            f"say which one gets the image, e.g. {example}={options.image}"
        )
    return {next(iter(containers)): options.image}


def find_profile(config: BotConfig, name: str) -> Analysis:
    """The analysis profile ``name``; ``RequestProblem`` without naming any other profile.

    ``plan`` is open to everyone, and profile names tell who deploys what where (team
    names, environments): a person who mistyped one is pointed to the people and help
    that know which profiles are theirs, not shown the list.
    """
    profile = config.profiles.get(name)
    if profile is None:
        raise RequestProblem(
            f"there is no analysis profile named {plain_text(name, 63)}; ask your platform "
            "team which profile to use, or see `/canary help`"
        )
    return profile


def _layers(
    options: ReleaseOptions, config: BotConfig, profile_name: str | None
) -> tuple[dict[str, Any], dict[str, Origin]]:
    """The merged analysis fields, and which layer set each of them."""
    defaults = config.defaults
    merged: dict[str, Any] = {
        key: value
        for key, value in {
            "interval": defaults.interval,
            "threshold": defaults.threshold,
            "maxWeight": defaults.max_weight,
            "stepWeight": defaults.step_weight,
        }.items()
        if value is not None
    }
    origins: dict[str, Origin] = dict.fromkeys(merged, "defaults")
    if profile_name is not None:
        profile = find_profile(config, profile_name)
        layer = profile.model_dump(mode="json", by_alias=True, exclude_unset=True)
        merged.update(layer)
        origins.update(dict.fromkeys(layer, "profile"))
    if options.step_weight is not None:
        merged.pop("stepWeights", None)  # an explicit step replaces a profile's list
    flags = {
        "maxWeight": options.max_weight,
        "stepWeight": options.step_weight,
        "interval": options.interval,
        "threshold": options.threshold,
    }
    given = {key: value for key, value in flags.items() if value is not None}
    merged.update(given)
    origins.update(dict.fromkeys(given, "flag"))
    return merged, origins


def build_analysis(options: ReleaseOptions, config: BotConfig) -> Analysis:
    """Command flags over the profile over the configured defaults over Flagger's.

    The result must stay inside the bounds of ``bot.bounds`` for the start's namespace
    and profile; a value outside them, whichever layer set it, is a ``RequestProblem``
    that names the value, the bound and where the bound comes from.
    """
    profile_name = options.profile or config.defaults.profile
    merged, origins = _layers(options, config, profile_name)
    try:
        analysis = Analysis.model_validate(merged)
    except ValidationError as exc:
        raise RequestProblem(
            f"the analysis is not valid: {describe_validation_error(exc)}"
        ) from None
    namespace = options.namespace or config.defaults.namespace
    crossed = bounds.check(
        analysis, origins, profile_name, bounds.bounds_for(config, namespace, profile_name)
    )
    if len(crossed) == 1:
        raise RequestProblem(crossed[0])
    if crossed:
        listed = "\n".join(f"• {c}" for c in crossed)
        raise RequestProblem(f"{len(crossed)} values are outside the allowed bounds:\n{listed}")
    return analysis


def approval_of(
    options: ReleaseOptions, config: BotConfig
) -> tuple[Literal["auto", "manual"], str]:
    """``spec.approval`` for a start, and the note the reply adds when the config forces it."""
    namespace = options.namespace or config.defaults.namespace
    profile = options.profile or config.defaults.profile
    note = bounds.approval_note(bounds.bounds_for(config, namespace, profile))
    if note or options.approval:
        return "manual", note
    return config.defaults.approval, ""


def build_spec(
    options: ReleaseOptions,
    config: BotConfig,
    requester: Requester,
    containers: dict[str, str] | None,
) -> CanaryReleaseSpec:
    """The spec a ``/canary start`` creates."""
    ingress = options.ingress or options.deployment
    analysis = build_analysis(options, config)
    service: dict[str, Any] = {"port": options.port or config.defaults.port}
    if config.defaults.target_port is not None:
        service["targetPort"] = config.defaults.target_port
    route: dict[str, Any] = {"ingressRef": {"name": ingress}}
    if config.defaults.router == "gateway":
        route = {"routeRef": {"kind": "HTTPRoute", "name": ingress}}
    if config.defaults.provider is not None:
        route["provider"] = config.defaults.provider
    try:
        return CanaryReleaseSpec.model_validate(
            {
                "targetRef": {"name": options.deployment},
                **route,
                "images": choose_images(options, containers),
                "service": service,
                "analysis": analysis.model_dump(mode="json", by_alias=True, exclude_none=True),
                "progressDeadlineSeconds": config.defaults.progress_deadline_seconds,
                "approval": approval_of(options, config)[0],
                "skipAnalysis": options.skip_analysis,
                "cluster": config.cluster,
                "requestedBy": requester.model_dump(mode="json", by_alias=True),
            }
        )
    except ValidationError as exc:
        raise RequestProblem(describe_validation_error(exc)) from None


@dataclass(frozen=True)
class Plan:
    """What a release would do: the weights and how long it takes without failures."""

    weights: list[int]
    interval_seconds: float
    threshold: int
    iterations: int | None

    @property
    def minimum_seconds(self) -> float:
        """One interval per step, plus one for promotion."""
        steps = self.iterations if self.iterations is not None else len(self.weights)
        return (steps + 1) * self.interval_seconds

    @property
    def rollback_after_seconds(self) -> float:
        """How soon consecutive failed checks roll a bad canary back."""
        return self.threshold * self.interval_seconds

    def describe(self) -> str:
        """Human summary, e.g. ``10 steps 5% → 50% every 10s: about 1m50s``."""
        if self.iterations is not None:
            shape = f"{self.iterations} iterations at a fixed route"
        else:
            shape = f"{len(self.weights)} steps: " + " → ".join(f"{w}%" for w in self.weights)
        return (
            f"{shape}, one every {format_duration(self.interval_seconds)}; "
            f"at least {format_duration(self.minimum_seconds)} to promotion; "
            f"{self.threshold} failed checks in a row roll back "
            f"(after {format_duration(self.rollback_after_seconds)} at the earliest)"
        )


def plan_of(analysis: Analysis) -> Plan:
    """The plan of an analysis block."""
    return Plan(
        weights=analysis.weights(),
        interval_seconds=analysis.interval_seconds,
        threshold=analysis.threshold,
        iterations=analysis.iterations,
    )


def is_active(release: CanaryRelease) -> bool:
    """Not yet Succeeded or Failed."""
    return not release.status.phase.is_final


async def releases_of(
    store: ReleaseStore, namespace: str | None, target: str | None = None
) -> list[CanaryRelease]:
    """Releases (of one Deployment, when given), oldest first.

    A release belongs to the Deployment its ``spec.targetRef`` names (the
    ``canarybot.io/target`` label a start sets says the same); only those are read and
    validated.
    """
    return await store.list_objects(namespace, target)


async def resolve(store: ReleaseStore, namespace: str, name: str) -> CanaryRelease | None:
    """A release by its own name, or a Deployment's active (else latest) release."""
    release = await store.get(namespace, name)
    if release is not None:
        return release
    candidates = await releases_of(store, namespace, name)
    active = [r for r in candidates if is_active(r)]
    if active:
        return active[-1]
    return candidates[-1] if candidates else None
