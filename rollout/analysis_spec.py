"""The ``spec.analysis`` block of a CanaryRelease (and a Canary) as validated models.

It keeps Flagger's field names, meanings and defaults so that a user of the Flagger
tutorial can paste their ``analysis:`` block unchanged; the Flagger fields canary-bot does
not act on are refused by name.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rollout.limits import (
    MAX_HEADERS,
    MAX_MAP_ENTRIES,
    MAX_MATCH_RULES,
    MAX_METRICS,
    MAX_NAME_LENGTH,
    MAX_QUERY_LENGTH,
    MAX_URL_LENGTH,
    MAX_WEBHOOKS,
    AnalysisInterval,
    Key,
    Magnitude,
    MetricInterval,
    Value,
    WebhookTimeout,
    parse_duration,
)
from rollout.schema import _Model, is_dns_subdomain


class ThresholdRange(_Model):
    """Accepted range of a metric's value; either bound may be omitted."""

    min: Magnitude | None = None
    max: Magnitude | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"thresholdRange.min {self.min} is above thresholdRange.max {self.max}"
            )
        return self

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies within the range (bounds inclusive)."""
        if self.min is not None and value < self.min:
            return False
        return not (self.max is not None and value > self.max)

    def describe(self) -> str:
        """Human form, e.g. ``>= 99`` or ``<= 500`` or ``99..100``."""
        if self.min is not None and self.max is not None:
            return f"{self.min:g}..{self.max:g}"
        if self.min is not None:
            return f">= {self.min:g}"
        if self.max is not None:
            return f"<= {self.max:g}"
        return "any"


class TemplateRef(_Model):
    """Reference to a named metric template from the config file (Flagger's templateRef)."""

    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)


class Metric(_Model):
    """One analysis check. Built-ins: ``request-success-rate``, ``request-duration``."""

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    interval: MetricInterval = "1m"
    threshold_range: ThresholdRange = Field(default_factory=ThresholdRange, alias="thresholdRange")
    template_ref: TemplateRef | None = Field(default=None, alias="templateRef")
    template_variables: dict[Key, Value] = Field(
        default_factory=dict, alias="templateVariables", max_length=MAX_MAP_ENTRIES
    )
    query: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_LENGTH)
    # Comparison mode: the canary may not be worse than the stable side by more than this
    # (percentage points for success rate, percent for duration). None = absolute only.
    compare_to_stable: float | None = Field(default=None, alias="compareToStable", ge=0, le=10000)
    # Fast-fail: a value beyond this floor/ceiling rolls back at once, without threshold.
    fail_fast: ThresholdRange | None = Field(default=None, alias="failFast")

    @property
    def interval_seconds(self) -> float:
        """The rate window in seconds."""
        return parse_duration(self.interval)


WebhookType = Literal[
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
]


_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


class SecretKeyRef(_Model):
    """One key of a Secret in canary-bot's own namespace (default Secret: canary-bot-webhooks).

    The engine reads it when it calls the hook; the value is never stored in a
    CanaryRelease, shown or logged. canary-bot's Role may ``get`` only the Secrets it
    names (docs/security.md, "Secrets in profiles").
    """

    name: str = Field(max_length=253)
    key: str = Field(max_length=253)

    @field_validator("name")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if not is_dns_subdomain(value):
            raise ValueError(f"{value!r} is not a valid Secret name")
        return value

    @field_validator("key")
    @classmethod
    def _secret_key(cls, value: str) -> str:
        if not _SECRET_KEY.match(value):
            raise ValueError(f"{value!r} is not a valid Secret key (letters, digits, - . _)")
        return value


class ValueFrom(_Model):
    """Where a value comes from instead of being written inline."""

    secret_key_ref: SecretKeyRef = Field(alias="secretKeyRef")


class Webhook(_Model):
    """A Flagger-style webhook; the payload and status semantics match Flagger's.

    ``url`` or ``urlFrom`` (a Secret key holding the URL) says where the hook is.
    ``metadataFrom`` adds metadata entries read from a Secret; it needs ``urlFrom``, so
    a secret value only ever goes to a URL that the Secret's owner wrote.
    """

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    type: WebhookType = "rollout"
    url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    url_from: ValueFrom | None = Field(default=None, alias="urlFrom")
    timeout: WebhookTimeout = "10s"
    retries: int = Field(default=0, ge=0, le=10)
    # Flagger's muteAlert: a rollback caused only by this hook failing posts no alert.
    mute_alert: bool = Field(default=False, alias="muteAlert")
    metadata: dict[Key, Value] = Field(default_factory=dict, max_length=MAX_MAP_ENTRIES)
    metadata_from: dict[Key, ValueFrom] = Field(
        default_factory=dict, alias="metadataFrom", max_length=MAX_MAP_ENTRIES
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("webhook url must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> Webhook:
        if (self.url is None) == (self.url_from is None):
            raise ValueError(f"webhook {self.name} needs exactly one of url and urlFrom")
        if self.metadata_from and self.url_from is None:
            raise ValueError(
                f"webhook {self.name}: metadataFrom needs urlFrom, so that secret values "
                "only go to a URL kept in a Secret too"
            )
        both = sorted(set(self.metadata) & set(self.metadata_from))
        if both:
            raise ValueError(
                f"webhook {self.name}: {', '.join(both)} is in both metadata and metadataFrom"
            )
        return self

    @property
    def timeout_seconds(self) -> float:
        """The request timeout in seconds."""
        return parse_duration(self.timeout)

    def secret_refs(self) -> list[SecretKeyRef]:
        """Every Secret key this hook reads at call time."""
        refs = [v.secret_key_ref for v in self.metadata_from.values()]
        return ([self.url_from.secret_key_ref] if self.url_from else []) + refs


class StringMatch(_Model):
    """Header/cookie matcher, as in Flagger's ``match`` rules."""

    exact: str | None = Field(default=None, max_length=1024)
    regex: str | None = Field(default=None, max_length=1024)


class MatchRule(_Model):
    """A/B routing rule: requests with this header or cookie go to the canary."""

    headers: dict[Key, StringMatch] = Field(default_factory=dict, max_length=MAX_HEADERS)


# Flagger ``analysis`` fields canary-bot does not act on, and why. A pasted block that
# sets one is refused with this reason rather than run as if the field worked.
UNSUPPORTED_ANALYSIS_FIELDS: dict[str, str] = {
    "mirror": "traffic mirroring is not supported (ingress-nginx canaries split traffic, "
    "they do not copy it); remove it",
    "mirrorWeight": "traffic mirroring is not supported (ingress-nginx canaries split "
    "traffic, they do not copy it); remove it",
    "sessionAffinity": "session affinity is not supported; use analysis.match with a cookie "
    "header to pin users to the canary, or remove it",
    "alerts": "alert providers are not supported: failures are posted to the Slack channel "
    "that the config file routes the namespace to; remove it",
    "canaryReadyThreshold": "ready thresholds are not supported: the canary must have all "
    "its pods ready (as kubectl rollout status waits); remove it",
    "primaryReadyThreshold": "ready thresholds are not supported: the target must have all "
    "its pods ready (as kubectl rollout status waits); remove it",
}


class Analysis(_Model):
    """Flagger's ``analysis`` block: same field names, meanings and defaults.

    The Flagger fields canary-bot does not act on (mirror, mirrorWeight, sessionAffinity,
    alerts, canaryReadyThreshold, primaryReadyThreshold) and any unknown (e.g. misspelled)
    field are refused, naming the field: nothing is silently ignored. ``stepWeightPromotion`` works as in Flagger: once the target runs the new
    images, its share of the traffic grows by this step each interval instead of at once.
    """

    @model_validator(mode="before")
    @classmethod
    def _no_unsupported_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in UNSUPPORTED_ANALYSIS_FIELDS:
                    raise ValueError(
                        f"analysis.{key} is a Flagger field canary-bot does not support: "
                        f"{UNSUPPORTED_ANALYSIS_FIELDS[key]}"
                    )
        return data

    interval: AnalysisInterval = "60s"
    threshold: int = Field(default=5, ge=1, le=1000)
    max_weight: int = Field(default=50, alias="maxWeight")
    step_weight: int = Field(default=10, alias="stepWeight")
    step_weights: list[int] = Field(default_factory=list, alias="stepWeights", max_length=100)
    step_weight_promotion: int | None = Field(
        default=None, alias="stepWeightPromotion", ge=1, le=100
    )
    iterations: int | None = Field(default=None, ge=1, le=1000)
    match: list[MatchRule] = Field(default_factory=list, max_length=MAX_MATCH_RULES)
    metrics: list[Metric] = Field(default_factory=list, max_length=MAX_METRICS)
    webhooks: list[Webhook] = Field(default_factory=list, max_length=MAX_WEBHOOKS)

    @field_validator("max_weight")
    @classmethod
    def _max_weight_range(cls, value: int) -> int:
        if not 1 <= value <= 100:
            raise ValueError(f"maxWeight must be between 1 and 100, got {value}")
        return value

    @field_validator("step_weight")
    @classmethod
    def _step_weight_range(cls, value: int) -> int:
        if not 1 <= value <= 100:
            raise ValueError(f"stepWeight must be between 1 and 100, got {value}")
        return value

    @field_validator("step_weights")
    @classmethod
    def _step_weights_increasing(cls, value: list[int]) -> list[int]:
        if any(not 1 <= w <= 100 for w in value):
            raise ValueError("every stepWeights entry must be between 1 and 100")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError(f"stepWeights must increase strictly, got {value}")
        return value

    @model_validator(mode="after")
    def _match_needs_iterations(self) -> Analysis:
        if self.match and self.iterations is None:
            raise ValueError("analysis.match (A/B testing) needs analysis.iterations")
        names = [m.name for m in self.metrics]
        if len(names) != len(set(names)):
            raise ValueError("metric names in analysis.metrics must be unique")
        hooks = [w.name for w in self.webhooks]
        if len(hooks) != len(set(hooks)):
            raise ValueError("webhook names in analysis.webhooks must be unique")
        return self

    @property
    def interval_seconds(self) -> float:
        """Seconds between analysis runs."""
        return parse_duration(self.interval)

    def weights(self) -> list[int]:
        """The canary weights in order, never above ``maxWeight``."""
        if self.step_weights:
            steps = [w for w in self.step_weights if w <= self.max_weight]
            return steps or [self.max_weight]
        steps = list(range(self.step_weight, self.max_weight + 1, self.step_weight))
        if not steps or steps[-1] != self.max_weight:
            steps.append(self.max_weight)
        return steps

    def webhooks_of(self, kind: WebhookType) -> list[Webhook]:
        """The webhooks of one type, in declaration order."""
        return [w for w in self.webhooks if w.type == kind]
