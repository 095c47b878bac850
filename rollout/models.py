"""The CanaryRelease resource as typed, validated models: spec, status and phases.

Everything is validated here, at the boundary; inside the engine the types are trusted.
The ``spec.analysis`` block lives in rollout.analysis_spec, the references to the objects a
release acts on in rollout.refs, and the shared base model and name checks in
rollout.schema; their names are re-exported here, so ``from rollout.models import X``
works for all of them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from rollout.analysis_spec import (
    UNSUPPORTED_ANALYSIS_FIELDS,
    Analysis,
    MatchRule,
    Metric,
    SecretKeyRef,
    StringMatch,
    TemplateRef,
    ThresholdRange,
    ValueFrom,
    Webhook,
    WebhookType,
)
from rollout.limits import (
    DAY,
    MAX_CONTROL_REQUESTS,
    MAX_IMAGES,
    MAX_NAME_LENGTH,
    Clipped,
    ContainerName,
    Count,
    ImageRef,
    Key,
    ShortText,
    StatusShort,
    StatusText,
    fit_status,
    format_duration,
    parse_duration,
)
from rollout.refs import IngressRef, ObjectRef, Provider, RouteRef, TargetRef
from rollout.schema import _Model, is_dns_label, is_dns_subdomain, is_valid_image

# Everything callers import from here, including the names that live in the modules above.
__all__ = [
    "API_VERSION",
    "FINAL_PHASES",
    "GROUP",
    "IMMUTABLE_SPEC_FIELDS",
    "KIND",
    "MAX_CANARY_REPLICAS",
    "PLURAL",
    "SHORT_NAME",
    "UNSUPPORTED_ANALYSIS_FIELDS",
    "VERSION",
    "Analysis",
    "AuditEntry",
    "CanaryRelease",
    "CanaryReleaseSpec",
    "CanaryReleaseStatus",
    "Condition",
    "ControlAction",
    "ControlRequest",
    "EventType",
    "IngressRef",
    "MatchRule",
    "Metric",
    "MetricStatus",
    "NotificationState",
    "ObjectMeta",
    "ObjectRef",
    "Phase",
    "Provider",
    "Requester",
    "RolloutEvent",
    "RouteRef",
    "SecretKeyRef",
    "ServicePort",
    "StringMatch",
    "TargetRef",
    "TemplateRef",
    "ThresholdRange",
    "ValueFrom",
    "Webhook",
    "WebhookType",
    "WeightPoint",
    "check_canary_replicas",
    "fit_status",
    "format_duration",
    "is_dns_label",
    "is_dns_subdomain",
    "is_valid_image",
    "new_object",
    "parse_duration",
]

GROUP = "canarybot.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CanaryRelease"
PLURAL = "canaryreleases"
SHORT_NAME = "crel"

# Upper bound of an explicit spec.canaryReplicas: a typo must not start a thousand pods.
MAX_CANARY_REPLICAS = 100


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
            f"canaryReplicas must be auto or a number from 1 to {MAX_CANARY_REPLICAS}, got {value}"
        )
    return value


class CanaryReleaseSpec(_Model):
    """What the user asked for."""

    target_ref: TargetRef = Field(alias="targetRef")
    # Exactly one of the two says where traffic is shifted.
    ingress_ref: IngressRef | None = Field(default=None, alias="ingressRef")
    route_ref: RouteRef | None = Field(default=None, alias="routeRef")
    # Whose metrics the built-in checks read; default: nginx with ingressRef.
    provider: Provider | None = None
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

    @model_validator(mode="after")
    def _one_router(self) -> CanaryReleaseSpec:
        if (self.ingress_ref is None) == (self.route_ref is None):
            raise ValueError(
                "needs exactly one of ingressRef (ingress-nginx) and routeRef "
                "(Gateway API HTTPRoute)"
            )
        return self

    @property
    def metrics_provider(self) -> Provider | None:
        """The provider of the built-in metrics: ``provider``, or nginx with ingressRef."""
        if self.provider is not None:
            return self.provider
        return "nginx" if self.ingress_ref is not None else None

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
    "routeRef",
    "provider",
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
        return self in FINAL_PHASES


# The phases a release ends in; as strings too (a StrEnum equals its value), so raw
# objects' ``status.phase`` can be tested without parsing them.
FINAL_PHASES: frozenset[Phase] = frozenset({Phase.SUCCEEDED, Phase.FAILED})


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
    details: dict[Key, Annotated[str, Clipped(1024)]] = Field(default_factory=dict, max_length=64)
    # A failure caused only by webhooks with muteAlert: the thread tells it, no alert.
    mute_alert: bool = Field(default=False, alias="muteAlert")


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
    # Set with an ending's outcome when the release has post-rollout hooks; cleared once
    # they were called. A crash anywhere in between calls them on the next advance.
    post_rollout_due: bool = Field(default=False, alias="postRolloutDue")
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
