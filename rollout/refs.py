"""References from a release or a Canary to the objects it acts on, and the data plane."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rollout.schema import _Model, is_dns_label, is_dns_subdomain


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


# Built-in metric sets by data plane (Flagger's provider names; rollout/providers.py).
Provider = Literal["nginx", "contour", "gatewayapi:v1", "istio", "traefik"]


class RouteRef(_Model):
    """The Gateway API route whose weights the release shifts (instead of ``ingressRef``).

    ``namespace`` defaults to the release's; a route elsewhere needs a ReferenceGrant in
    the release's namespace that lets routes of that namespace use the canary Service.
    """

    api_version: Literal["gateway.networking.k8s.io/v1"] = Field(
        default="gateway.networking.k8s.io/v1", alias="apiVersion"
    )
    kind: Literal["HTTPRoute", "GRPCRoute"] = "HTTPRoute"
    name: str = Field(max_length=253)
    namespace: str | None = Field(default=None, max_length=63)

    @field_validator("name")
    @classmethod
    def _route_name(cls, value: str) -> str:
        if not is_dns_subdomain(value):
            raise ValueError(f"{value!r} is not a valid Kubernetes object name")
        return value

    @field_validator("namespace")
    @classmethod
    def _route_namespace(cls, value: str | None) -> str | None:
        if value is not None and not is_dns_label(value):
            raise ValueError(f"{value!r} is not a valid namespace name")
        return value
