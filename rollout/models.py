"""The CanaryRelease resource as typed, validated models.

The ``spec.analysis`` block keeps Flagger's field names, meanings and defaults so that a
user of the Flagger tutorial can paste their ``analysis:`` block unchanged. Everything is
validated here, at the boundary; inside the engine the types are trusted.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rollout.limits import (
    DAY,
    MAX_CONTROL_REQUESTS,
    MAX_HEADERS,
    MAX_IMAGES,
    MAX_MAP_ENTRIES,
    MAX_MATCH_RULES,
    MAX_METRICS,
    MAX_NAME_LENGTH,
    MAX_QUERY_LENGTH,
    MAX_URL_LENGTH,
    MAX_WEBHOOKS,
    AnalysisInterval,
    Clipped,
    ContainerName,
    Count,
    ImageRef,
    Key,
    Magnitude,
    MetricInterval,
    ShortText,
    StatusShort,
    StatusText,
    Value,
    WebhookTimeout,
)

# Re-exported: the engine, the bot and the tools read durations through the models.
from rollout.limits import fit_status as fit_status
from rollout.limits import format_duration as format_duration
from rollout.limits import parse_duration as parse_duration

GROUP = "canarybot.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CanaryRelease"
PLURAL = "canaryreleases"
SHORT_NAME = "crel"

# An OCI image reference: [registry[:port]/]path[:tag][@digest]. Kept strict enough to
# catch typos (spaces, uppercase repository names, empty tags) before anything changes.
_IMAGE = re.compile(
    r"^(?:(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
# Upper bound of an explicit spec.canaryReplicas: a typo must not start a thousand pods.
MAX_CANARY_REPLICAS = 100

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def is_valid_image(ref: str) -> bool:
    """Whether ``ref`` is a well-formed container image reference."""
    return len(ref) <= 255 and _IMAGE.match(ref) is not None


def is_dns_label(name: str) -> bool:
    """Whether ``name`` is a valid Kubernetes DNS-1123 label (namespace, Service name)."""
    return _DNS_LABEL.match(name) is not None


def is_dns_subdomain(name: str) -> bool:
    """Whether ``name`` is a valid Kubernetes object name (DNS-1123 subdomain)."""
    return len(name) <= 253 and _DNS_SUBDOMAIN.match(name) is not None


class _Model(BaseModel):
    """Base: camelCase on the wire (as in Kubernetes), snake_case in Python, frozen."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


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
    compare_to_stable: float | None = Field(
        default=None, alias="compareToStable", ge=0, le=10000
    )
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


class Analysis(_Model):
    """Flagger's ``analysis`` block: same field names, meanings and defaults.

    Flagger fields canary-bot does not act on (mirroring, session affinity, alerts) are
    accepted and ignored so that a block pasted from a Flagger Canary validates.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

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


class ObjectRef(_Model):
    """Reference to an object in the CanaryRelease's namespace."""

    name: str

    @field_validator("name")
    @classmethod
    def _object_name(cls, value: str) -> str:
        if not is_dns_subdomain(value):
            raise ValueError(f"{value!r} is not a valid Kubernetes object name")
        return value


class TargetRef(ObjectRef):
    """The Deployment a release or a Canary runs for; Flagger's shape (apiVersion, kind) too."""

    api_version: Literal["apps/v1"] | None = Field(default=None, alias="apiVersion")
    kind: Literal["Deployment"] | None = None


class IngressRef(ObjectRef):
    """The main Ingress; Flagger's shape (apiVersion, kind) is accepted as well."""

    api_version: Literal["networking.k8s.io/v1"] | None = Field(default=None, alias="apiVersion")
    kind: Literal["Ingress"] | None = None


class ServicePort(_Model):
    """The port the canary Service exposes and the container port it targets."""

    port: int = Field(default=80, ge=1, le=65535)
    target_port: (
        Annotated[int, Field(ge=1, le=65535)]
        | Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
        | None
    ) = Field(default=None, alias="targetPort")
    name: str = Field(default="http", max_length=MAX_NAME_LENGTH)


class Requester(_Model):
    """Who asked for the release (Slack user, or kubectl for GitOps)."""

    user: ShortText = ""
    user_name: ShortText = Field(default="", alias="userName")
    channel: ShortText = ""
    source: Literal["slack", "kubectl", "console"] = "kubectl"


ControlAction = Literal["abort", "promote", "pause", "resume", "approve"]


class ControlRequest(_Model):
    """A person's request to steer a running release; applied exactly once by id."""

    id: str = Field(min_length=1, max_length=64)
    action: ControlAction
    user: ShortText = ""
    user_name: ShortText = Field(default="", alias="userName")
    reason: str = Field(default="", max_length=500)
    at: datetime | None = None


def check_canary_replicas(value: Literal["auto"] | int) -> Literal["auto"] | int:
    """``value`` if it is ``auto`` or a pod count from 1 to ``MAX_CANARY_REPLICAS``."""
    if value != "auto" and not 1 <= int(value) <= MAX_CANARY_REPLICAS:
        raise ValueError(
            f"canaryReplicas must be auto or a number from 1 to {MAX_CANARY_REPLICAS}, "
            f"got {value}"
        )
    return value


class CanaryReleaseSpec(_Model):
    """What the user asked for."""

    target_ref: TargetRef = Field(alias="targetRef")
    ingress_ref: IngressRef = Field(alias="ingressRef")
    images: dict[ContainerName, ImageRef] = Field(min_length=1, max_length=MAX_IMAGES)
    service: ServicePort = Field(default_factory=ServicePort)
    analysis: Analysis = Field(default_factory=Analysis)
    progress_deadline_seconds: int = Field(
        default=600, ge=10, le=int(DAY), alias="progressDeadlineSeconds"
    )
    # How many pods the canary runs: "auto" sizes it to carry maxWeight of the traffic
    # (rollout/autoscaling.py); a number fixes the count (and the canary gets no HPA).
    canary_replicas: Literal["auto"] | int = Field(default="auto", alias="canaryReplicas")
    approval: Literal["auto", "manual"] = "auto"
    skip_analysis: bool = Field(default=False, alias="skipAnalysis")
    cluster: str = Field(default="", max_length=MAX_NAME_LENGTH)
    requested_by: Requester = Field(default_factory=Requester, alias="requestedBy")
    # Set on releases opened from a revision of a Deployment that a Canary manages: the
    # Canary, and who changed the pod template (its field manager, e.g. kubectl-set).
    canary_ref: ObjectRef | None = Field(default=None, alias="canaryRef")
    changed_by: ShortText = Field(default="", alias="changedBy")
    control_requests: list[ControlRequest] = Field(
        default_factory=list, alias="controlRequests", max_length=MAX_CONTROL_REQUESTS
    )

    @field_validator("canary_replicas")
    @classmethod
    def _canary_replicas_range(cls, value: Literal["auto"] | int) -> Literal["auto"] | int:
        return check_canary_replicas(value)

    @field_validator("images")
    @classmethod
    def _valid_images(cls, value: dict[str, str]) -> dict[str, str]:
        for container, ref in value.items():
            if not container:
                raise ValueError("images: container name is empty")
            if not is_valid_image(ref):
                raise ValueError(
                    f"images.{container}: {ref!r} is not a valid image reference "
                    "(expected e.g. stefanprodan/podinfo:6.0.3)"
                )
        return value


# Spec fields that decide what runs and how it is judged: the API server refuses any
# change to them after creation (CEL ``self == oldSelf`` rules in the CRD), so what was
# checked and authorized at start is what runs. Only ``controlRequests`` may change.
IMMUTABLE_SPEC_FIELDS = (
    "targetRef",
    "ingressRef",
    "images",
    "service",
    "analysis",
    "progressDeadlineSeconds",
    "approval",
    "skipAnalysis",
    "cluster",
    "requestedBy",
    "canaryRef",
    "changedBy",
)


class Phase(StrEnum):
    """Flagger's phase names, plus Paused."""

    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    WAITING_PROMOTION = "WaitingPromotion"
    PROMOTING = "Promoting"
    FINALISING = "Finalising"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    PAUSED = "Paused"

    @property
    def is_final(self) -> bool:
        """Whether the release has ended."""
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class MetricStatus(_Model):
    """The last measurement of one metric."""

    name: StatusShort
    value: float | None = None
    stable_value: float | None = Field(default=None, alias="stableValue")
    threshold: StatusShort = ""
    ok: bool = False
    message: StatusText = ""
    measured_at: datetime | None = Field(default=None, alias="measuredAt")


class AuditEntry(_Model):
    """One control request and what came of it."""

    id: StatusShort
    action: StatusShort
    user: StatusShort = ""
    user_name: StatusShort = Field(default="", alias="userName")
    at: datetime
    result: Literal["applied", "ignored", "refused"]
    message: StatusText = ""


class Condition(_Model):
    """A Kubernetes-style condition."""

    type: StatusShort
    status: Literal["True", "False", "Unknown"]
    reason: StatusText = ""
    message: StatusText = ""
    last_transition_time: datetime | None = Field(default=None, alias="lastTransitionTime")


EventType = Literal[
    "Started",
    "Initialized",
    "Waiting",
    "StepAdvanced",
    "Halted",
    "WaitingApproval",
    "Paused",
    "Resumed",
    "Approved",
    "Promoting",
    "Promoted",
    "RolledBack",
    "Refused",
    "Control",
]


class RolloutEvent(_Model):
    """A significant event, kept in ``status.events`` (an outbox) until delivered.

    ``seq`` increases by one per event of a release, so a notifier delivers each exactly
    once by remembering the last ``seq`` it delivered.
    """

    seq: Count
    type: EventType
    message: StatusText
    severity: Literal["info", "warning", "error"] = "info"
    at: datetime
    weight: int = Field(default=0, ge=0, le=100)
    phase: Phase | None = None
    details: dict[Key, Annotated[str, Clipped(1024)]] = Field(
        default_factory=dict, max_length=64
    )


class NotificationState(_Model):
    """Where a notifier reports a release (e.g. the Slack thread) and what it delivered."""

    channel: StatusShort = ""
    thread_ts: StatusShort = Field(default="", alias="threadTs")
    delivered_seq: Count = Field(default=0, alias="deliveredSeq")
    alerted: bool = False


class CanaryReleaseStatus(_Model):
    """What the engine observed and did. Written only by the leader."""

    phase: Phase = Phase.INITIALIZING
    canary_weight: int = Field(default=0, alias="canaryWeight", ge=0, le=100)
    failed_checks: Count = Field(default=0, alias="failedChecks")
    iterations: Count = 0
    step: Count = 0
    message: StatusText = ""
    reason: StatusText = ""
    observed_generation: Count = Field(default=0, alias="observedGeneration")
    stable_images: dict[Key, Annotated[str, Clipped(1024)]] = Field(
        default_factory=dict, alias="stableImages", max_length=MAX_IMAGES
    )
    started_at: datetime | None = Field(default=None, alias="startedAt")
    phase_since: datetime | None = Field(default=None, alias="phaseSince")
    last_step_at: datetime | None = Field(default=None, alias="lastStepAt")
    last_analysis_at: datetime | None = Field(default=None, alias="lastAnalysisAt")
    finished_at: datetime | None = Field(default=None, alias="finishedAt")
    paused_from: Phase | None = Field(default=None, alias="pausedFrom")
    approved: bool = False
    # The engine keeps these lists shorter (rollout.decide's MAX_* constants); the bounds
    # here are what the API server enforces on anyone who writes status.
    metrics: Annotated[list[MetricStatus], Clipped(64)] = Field(default_factory=list)
    conditions: Annotated[list[Condition], Clipped(32)] = Field(default_factory=list)
    audit: Annotated[list[AuditEntry], Clipped(100)] = Field(default_factory=list)
    events: Annotated[list[RolloutEvent], Clipped(100)] = Field(default_factory=list)
    event_seq: Count = Field(default=0, alias="eventSeq")
    history: Annotated[list[WeightPoint], Clipped(500)] = Field(default_factory=list)
    notification: NotificationState = Field(default_factory=NotificationState)


class WeightPoint(_Model):
    """One analysis sample for the end-of-rollout chart (bounded list in status)."""

    at: datetime
    weight: int = Field(ge=0, le=100)
    values: dict[Key, float | None] = Field(default_factory=dict, max_length=64)
    stable_values: dict[Key, float | None] = Field(
        default_factory=dict, alias="stableValues", max_length=64
    )
    ok: bool = True


CanaryReleaseStatus.model_rebuild()

class ObjectMeta(_Model):
    """The part of Kubernetes metadata the engine uses."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    name: str
    namespace: str
    uid: str = ""
    resource_version: str = Field(default="", alias="resourceVersion")
    generation: int = 0
    creation_timestamp: datetime | None = Field(default=None, alias="creationTimestamp")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: datetime | None = Field(default=None, alias="deletionTimestamp")


class CanaryRelease(_Model):
    """A CanaryRelease object: metadata, spec and status."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    metadata: ObjectMeta
    spec: CanaryReleaseSpec
    status: CanaryReleaseStatus = Field(default_factory=CanaryReleaseStatus)

    @property
    def key(self) -> str:
        """``name.namespace``, the way Flagger names a canary in its messages."""
        return f"{self.metadata.name}.{self.metadata.namespace}"

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> CanaryRelease:
        """Validate a raw Kubernetes object (as returned by the API server)."""
        return cls.model_validate(obj)

    def to_status_object(self) -> dict[str, Any]:
        """The status as the API server stores it (camelCase, no empty optionals)."""
        return self.status.model_dump(mode="json", by_alias=True, exclude_none=True)


def new_object(
    name: str, namespace: str, spec: CanaryReleaseSpec, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A CanaryRelease manifest ready to create."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
