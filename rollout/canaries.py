"""The Canary resource: one Deployment put under canary-bot's protection.

A ``Canary`` is Flagger's Canary in canary-bot's group: the spec keeps Flagger's field
names for everything canary-bot does (``targetRef``, ``ingressRef``, ``service``,
``analysis``, ``progressDeadlineSeconds``, ``skipAnalysis``, ``provider``) and adds
canary-bot's own (``channel``, ``approval``, ``profile``, ``canaryReplicas``). Each
revision of the managed Deployment becomes one ``CanaryRelease`` (rollout/revisions.py);
the releases of a Canary are its history.

A Flagger field canary-bot cannot honour is refused, by the models and by the API server,
with a message naming the field and saying what to do instead: it is never accepted and
silently ignored (a pasted Canary must not look protected in a way it is not).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from rollout.limits import (
    DAY,
    MAX_IMAGES,
    MAX_NAME_LENGTH,
    Clipped,
    Count,
    Key,
    ShortText,
    StatusShort,
    StatusText,
)
from rollout.models import (
    GROUP,
    VERSION,
    Analysis,
    Condition,
    IngressRef,
    ObjectMeta,
    RouteRef,
    ServicePort,
    TargetRef,
    check_canary_replicas,
)
from rollout.schema import _Model

KIND = "Canary"
PLURAL = "canaries"
SINGULAR = "canary"
# Flagger's Canary uses `canary`/`canaries` (its short name is none); `cbc` clashes with
# no built-in resource either, so both controllers can be installed side by side.
SHORT_NAME = "cbc"

# Flagger Canary fields canary-bot does not carry out, and what to do instead. The models
# and the CRD (hack/gen_crd.py) refuse each with this text.
REFUSED_SPEC_FIELDS: dict[str, str] = {
    "autoscalerRef": (
        "canary-bot finds the HorizontalPodAutoscaler whose scaleTargetRef is the target "
        "by itself (see canaryReplicas); remove autoscalerRef"
    ),
    "upstreamRef": "only the nginx and gatewayapi providers are supported; remove upstreamRef",
    "metricsServer": (
        "canary-bot queries the Prometheus of its configuration file; remove metricsServer"
    ),
    "revertOnDeletion": (
        "deleting a canary-bot Canary always unpauses the Deployment and leaves it serving "
        "what it serves; remove revertOnDeletion"
    ),
    "suspend": "pause a running release from Slack (Pause) or delete the Canary; remove suspend",
}
REFUSED_SERVICE_FIELDS: dict[str, str] = {
    "primary": (
        "canary-bot creates no primary Service (your Service stays the stable side); "
        "remove service.primary"
    ),
    "canary": (
        "the <target>-canary Service gets no extra labels or annotations; remove service.canary"
    ),
    "portDiscovery": "canary-bot exposes service.port only; remove service.portDiscovery",
    "portName": "the port name is service.name in canary-bot; rename service.portName to name",
    "appProtocol": "not supported by the nginx and gatewayapi routers; remove service.appProtocol",
    "gateways": "service mesh routing is not supported; remove service.gateways",
    "gatewayRefs": "service mesh routing is not supported; remove service.gatewayRefs",
    "hosts": "hosts come from the Ingress (ingressRef); remove service.hosts",
    "trafficPolicy": "service mesh routing is not supported; remove service.trafficPolicy",
    "match": "use analysis.match for header and cookie routing; remove service.match",
    "rewrite": "service mesh routing is not supported; remove service.rewrite",
    "retries": "service mesh routing is not supported; remove service.retries",
    "headers": "service mesh routing is not supported; remove service.headers",
    "corsPolicy": "service mesh routing is not supported; remove service.corsPolicy",
    "timeout": "service mesh routing is not supported; remove service.timeout",
    "backends": "service mesh routing is not supported; remove service.backends",
    "apex": "the stable Service is the one named like the target; remove service.apex",
    "delegation": "service mesh routing is not supported; remove service.delegation",
    "meshName": "service mesh routing is not supported; remove service.meshName",
}

# How many finished releases of a Canary are kept as its history (`kubectl get crel`).
HISTORY_LIMIT = 10


def _refusals(data: Any, refused: dict[str, str], prefix: str) -> None:
    if isinstance(data, dict):
        for name in refused:
            if name in data:
                raise ValueError(f"{prefix}{name} is not supported: {refused[name]}")


# The providers a Canary may name: ingress-nginx, or a Gateway API data plane (routeRef).
CanaryProvider = Literal["nginx", "contour", "gatewayapi:v1"]


class CanarySpec(_Model):
    """Which Deployment is protected, and how each of its revisions is released."""

    # Whose metrics the built-in checks read (default: nginx with ingressRef). Flagger's
    # mesh providers (istio, linkerd, appmesh...) route through objects canary-bot does not
    # write, so a pasted Canary naming one is refused rather than half honoured.
    provider: CanaryProvider | None = None
    target_ref: TargetRef = Field(alias="targetRef")
    # Exactly one of the two says where traffic is shifted.
    ingress_ref: IngressRef | None = Field(default=None, alias="ingressRef")
    route_ref: RouteRef | None = Field(default=None, alias="routeRef")
    service: ServicePort = Field(default_factory=ServicePort)
    analysis: Analysis | None = None
    progress_deadline_seconds: int = Field(
        default=600, ge=10, le=int(DAY), alias="progressDeadlineSeconds"
    )
    skip_analysis: bool = Field(default=False, alias="skipAnalysis")
    canary_replicas: Literal["auto"] | int = Field(default="auto", alias="canaryReplicas")
    approval: Literal["auto", "manual"] = "auto"
    # The Slack channel of this Canary's threads; empty: the namespace's channel.
    channel: ShortText = ""
    # An analysis profile of the configuration file, used when `analysis` is not given.
    profile: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)

    @field_validator("canary_replicas")
    @classmethod
    def _canary_replicas_range(cls, value: Literal["auto"] | int) -> Literal["auto"] | int:
        return check_canary_replicas(value)

    @model_validator(mode="after")
    def _one_router(self) -> CanarySpec:
        if (self.ingress_ref is None) == (self.route_ref is None):
            raise ValueError(
                "needs exactly one of ingressRef (ingress-nginx) and routeRef "
                "(Gateway API HTTPRoute)"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _refuse_flagger_only(cls, data: Any) -> Any:
        _refusals(data, REFUSED_SPEC_FIELDS, "spec.")
        if isinstance(data, dict):
            _refusals(data.get("service"), REFUSED_SERVICE_FIELDS, "spec.service.")
        return data


class LastRevision(_Model):
    """The newest revision of the Deployment that canary-bot saw, and what came of it."""

    release: StatusShort = ""
    template_hash: StatusShort = Field(default="", alias="templateHash")
    images: dict[Key, Annotated[str, Clipped(1024)]] = Field(
        default_factory=dict, max_length=MAX_IMAGES
    )
    changed_by: StatusShort = Field(default="", alias="changedBy")
    # Running, Succeeded, Failed, Superseded, Cancelled
    outcome: StatusShort = ""
    message: StatusText = ""
    at: datetime | None = None


class CanaryStatus(_Model):
    """What the engine observed: the stable revision, the running release, the last one."""

    # Idle, Adopting, Blocked, or the running release's phase.
    state: StatusShort = "Idle"
    release: StatusShort = ""
    stable_hash: StatusShort = Field(default="", alias="stableHash")
    stable_images: dict[Key, Annotated[str, Clipped(1024)]] = Field(
        default_factory=dict, alias="stableImages", max_length=MAX_IMAGES
    )
    # Images of the last revision as one line (printer column), e.g. podinfod=...:6.0.3
    last_images: StatusShort = Field(default="", alias="lastImages")
    last_revision: LastRevision = Field(default_factory=LastRevision, alias="lastRevision")
    # Template hashes whose release failed: the same template never starts again.
    failed_hashes: Annotated[list[StatusShort], Clipped(20)] = Field(
        default_factory=list, alias="failedHashes"
    )
    message: StatusText = ""
    observed_generation: Count = Field(default=0, alias="observedGeneration")
    adopted_at: datetime | None = Field(default=None, alias="adoptedAt")
    conditions: Annotated[list[Condition], Clipped(32)] = Field(default_factory=list)


READY = "Ready"
_AT_REST = ("Idle",)
_BLOCKED = ("Blocked", "Invalid")


def ready_condition(status: CanaryStatus, now: datetime) -> Condition:
    """The Canary's ``Ready`` condition, from its state (``kubectl wait
    --for=condition=Ready canary/<name>`` waits for it):

    - True, Idle: nothing runs and the pods run what the spec asks for;
    - False, Running: a release runs (or the Deployment is being adopted);
    - False, Blocked: canary-bot cannot protect the Deployment (the message says why);
    - False, LeftPaused: the last release was rolled back, so the Deployment stays paused
      with a spec its pods do not run until a fixed revision or a revert is pushed.

    ``lastTransitionTime`` changes only when status or reason does.
    """
    if status.state in _BLOCKED:
        value, reason = "False", "Blocked"
    elif status.state not in _AT_REST:
        value, reason = "False", "Running"
    elif status.last_revision.outcome == "Failed":
        value, reason = "False", "LeftPaused"
    else:
        value, reason = "True", "Idle"
    since = now
    for old in status.conditions:
        if old.type == READY and old.status == value and old.reason == reason:
            since = old.last_transition_time or now
    return Condition.model_validate(
        {
            "type": READY,
            "status": value,
            "reason": reason,
            "message": status.message,
            "lastTransitionTime": since,
        }
    )


class Canary(_Model):
    """A Canary object: one Deployment protected by canary-bot, Flagger's Canary in shape."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    metadata: ObjectMeta
    spec: CanarySpec
    status: CanaryStatus = Field(default_factory=CanaryStatus)

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> Canary:
        """Validate a raw Kubernetes object (as returned by the API server)."""
        return cls.model_validate(obj)

    def to_status_object(self) -> dict[str, Any]:
        """The status as the API server stores it (camelCase, no empty optionals)."""
        return self.status.model_dump(mode="json", by_alias=True, exclude_none=True)


API_VERSION = f"{GROUP}/{VERSION}"
