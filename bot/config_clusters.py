"""The ``clusters:`` section of the config (one front, many clusters), and the Slack
channel check it shares with ``channels:``. Documented in ``bot.config``."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rollout.models import is_dns_label

_CHANNEL = re.compile(r"^(?:[CGD][A-Z0-9]{2,}|#[a-z0-9][a-z0-9._-]{0,79})$")
_CLUSTER_GLOB = re.compile(r"[a-z0-9*?\[\]-]{1,63}")
# A kubeconfig path: one printable line; its content is never read here nor printed.
_PATH = re.compile(r"[^\x00-\x1f\x7f]{1,4096}")
MAX_CLUSTERS = 50
MAX_CLUSTER_CHANNELS = 100


class _NamesClusters(Protocol):
    @property
    def clusters(self) -> list[str] | None: ...


def check_channel(value: str) -> str:
    """``value`` when it is a channel id or ``#name``; else a ``ValueError`` saying how."""
    if not _CHANNEL.match(value):
        raise ValueError(
            f"{value!r} is not a Slack channel; use a channel id such as C0123ABCD "
            "(channel details > About) or #name"
        )
    return value


def check_cluster_globs(value: list[str] | None) -> list[str] | None:
    """An authorization rule's ``clusters``: None (every cluster) or non-empty globs."""
    if value is None:
        return None
    if not value:
        raise ValueError("needs at least one cluster name or glob, or leave clusters out")
    for glob in value:
        if not _CLUSTER_GLOB.fullmatch(glob):
            raise ValueError(
                f"{glob[:70]!r} is not a cluster glob; use names like prod-eu or prod-*"
            )
    return value


class ClusterEntry(BaseModel):
    """One cluster a front serves: its `name` (a DNS label, what `--cluster` and the cards
    say) and where its credentials come from: `context`, a context of the kubeconfig the
    front reads (`KUBECONFIG`), or `kubeconfig`, a file of its own (e.g. a mounted
    Secret; with `context` too, that context of the file). `channels`: commands typed in
    these channels go to this cluster unless they name another; a channel belongs to one
    cluster only. `default: true` (one cluster at most) takes commands that name no
    cluster and come from no listed channel."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    name: str
    context: str | None = Field(default=None, min_length=1, max_length=253)
    kubeconfig: str | None = None
    channels: list[str] = Field(default_factory=list, max_length=MAX_CLUSTER_CHANNELS)
    default: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not is_dns_label(value):
            raise ValueError(
                f"{value[:70]!r} is not a cluster name; use a DNS label such as prod-eu "
                "(lowercase letters, digits and '-', at most 63)"
            )
        return value

    @field_validator("kubeconfig")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not _PATH.fullmatch(value):
            raise ValueError("kubeconfig must be a file path (one line, at most 4096 characters)")
        return value

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: list[str]) -> list[str]:
        return [check_channel(channel) for channel in value]

    @model_validator(mode="after")
    def _credentials(self) -> ClusterEntry:
        if self.context is None and self.kubeconfig is None:
            raise ValueError(
                f"cluster {self.name} needs context (a context of the front's kubeconfig) "
                "or kubeconfig (a file path, e.g. a mounted Secret)"
            )
        return self


def check_clusters(entries: list[ClusterEntry]) -> None:
    """Unique names, a channel in one cluster only, one default at most."""
    seen: set[str] = set()
    owner: dict[str, str] = {}
    for entry in entries:
        if entry.name in seen:
            raise ValueError(f"clusters: {entry.name} is listed twice; names must be unique")
        seen.add(entry.name)
        for channel in entry.channels:
            if channel in owner and owner[channel] != entry.name:
                raise ValueError(
                    f"clusters: channel {channel} is listed under {owner[channel]} and "
                    f"{entry.name}; a channel can default to one cluster only"
                )
            owner[channel] = entry.name
    defaults = [entry.name for entry in entries if entry.default]
    if len(defaults) > 1:
        raise ValueError(
            f"clusters: {' and '.join(defaults)} both say default: true; keep it on one"
        )


def check_rule_clusters(rules: Sequence[_NamesClusters], names: list[str]) -> None:
    """Every cluster glob of a rule matches a configured cluster (a typo grants nothing)."""
    for index, rule in enumerate(rules):
        for glob in rule.clusters or []:
            if not any(fnmatch.fnmatchcase(name, glob) for name in names):
                known = ", ".join(names) or "none: add them under clusters (or set cluster)"
                raise ValueError(
                    f"authorization.rules[{index}].clusters names {glob!r}, which matches "
                    f"no configured cluster (clusters: {known})"
                )
