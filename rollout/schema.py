"""The base model and the name and image checks shared by the resource models.

Kept apart from the resources so that every model module (rollout.models,
rollout.analysis_spec, rollout.refs, rollout.canaries) validates names the same way.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

# An OCI image reference: [registry[:port]/]path[:tag][@digest]. Kept strict enough to
# catch typos (spaces, uppercase repository names, empty tags) before anything changes.
_IMAGE = re.compile(
    r"^(?:(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)

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
