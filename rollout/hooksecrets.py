"""Webhook URLs and metadata kept in a Secret, read when the hook is called.

Where: canary-bot's own namespace (``EngineSettings.secret_namespace``, by default the
namespace it runs in), never the release's. Profiles are the platform team's, so their
credentials stay in the platform team's namespace instead of being copied into every
application namespace; and a person who may only write CanaryReleases in their own
namespace cannot make canary-bot read that namespace's Secrets for them. canary-bot's Role
may ``get`` only the Secrets it names (``canary-bot-webhooks`` in the shipped manifests),
so even a CanaryRelease that names another Secret gets a refusal, not its contents.

A value read here goes into one HTTP request and nowhere else: not into the release, its
status, Events, Slack or logs. Errors name the Secret and key, never the value.
"""

from __future__ import annotations

from typing import Protocol

from rollout.kube import Kube, KubeError
from rollout.models import SecretKeyRef


class SecretUnavailable(Exception):
    """A Secret key a webhook needs cannot be read; the message says which and why."""


class SecretSource(Protocol):
    """Reads the value of one Secret key for a webhook call."""

    async def value(self, ref: SecretKeyRef) -> str:
        """The value; raises ``SecretUnavailable``."""
        ...


class NoSecrets:
    """For runners without cluster access: every reference is refused."""

    async def value(self, ref: SecretKeyRef) -> str:
        """Always raises: there is nowhere to read from."""
        raise SecretUnavailable(
            f"Secret {ref.name} (key {ref.key}) cannot be read: this engine has no Secret access"
        )


class KubeSecrets:
    """Secret keys from one namespace, read through ``Kube`` at every call (no cache)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    async def value(self, ref: SecretKeyRef) -> str:
        """The decoded value of ``ref`` in canary-bot's namespace."""
        where = f"Secret {self.namespace}/{ref.name}"
        try:
            value = await self.kube.read_secret_key(self.namespace, ref.name, ref.key)
        except KubeError as exc:
            if exc.status == 403:
                raise SecretUnavailable(
                    f"canary-bot may not read {where}; keep webhook secrets in a Secret its "
                    "Role names (canary-bot-webhooks), or add this name to that Role"
                ) from None
            raise SecretUnavailable(f"{where} cannot be read ({exc.reason or 'error'})") from None
        if value is None:
            raise SecretUnavailable(f"{where} or its key {ref.key} does not exist")
        return value


__all__ = ["KubeSecrets", "NoSecrets", "SecretSource", "SecretUnavailable"]
