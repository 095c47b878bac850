"""Flagger-compatible webhooks: the same JSON POST, status rules and load tester.

A hook is called with ``{"name", "namespace", "phase", "checksum", "metadata"}``; the
hook's own ``metadata`` (e.g. the load tester's ``cmd``) travels in ``metadata``, and
event hooks add ``eventMessage``, ``eventType`` and ``timestamp`` (Unix milliseconds as a
string) to it. An answer with an HTTP status above 202 is a failure, and so is a
connection error or a timeout. That is what flagger-loadtester expects, so its command
runner and its gates (``/gate/check``: 200 open, 403 closed) work unchanged.

Decisions, and where they differ from Flagger:

- ``timeout`` bounds the whole call, retries included (as Flagger's request context
  does), so a tick never waits longer on a hook than its timeout says.
- ``retries`` extra attempts are made after connection errors, 429 and 5xx other than
  501, with a short doubling backoff (0.2 s, 0.4 s, ... at most 2 s). Other answers are
  final: a closed gate's 403 is an answer, not a glitch.
- Event hooks use the hook's ``timeout`` (Flagger fixes 5 s).
- Messages carry the status and a short, single-line piece of the body (at most 200
  characters, control and bidi characters removed); never the URL, which may hold
  credentials or tokens (a redirect target is shown masked, see ``egress.mask_url``).
- Redirects are never followed (Flagger follows them): a 3xx is a failed call whose
  message says where the hook redirected. Following one would turn the POST into a GET
  on a target nobody reviewed.
- Before connecting, the hook's host is checked against the ``EgressPolicy`` on the
  resolved address (link-local and cloud metadata addresses are refused by default);
  a refusal is final, not retried.
- ``urlFrom`` and ``metadataFrom`` are read from a Secret at every call
  (``rollout.hooksecrets``); the values go into the request only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from rollout.egress import (
    EgressPolicy,
    GuardedResolver,
    describe_refusal,
    error_text,
    mask_url,
    plain_text,
)
from rollout.hooksecrets import NoSecrets, SecretSource, SecretUnavailable
from rollout.models import Phase, Webhook

log = logging.getLogger("canary_bot.webhooks")

WebhookPayload = dict[str, Any]
"""The JSON body of a webhook call, as built by :func:`payload`."""

SessionFactory = Callable[[], aiohttp.ClientSession]

# The body is read only this far: enough for an error message, bounded for a chatty hook.
_MAX_BODY_BYTES = 4096
_MAX_BODY_CHARS = 200
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 2.0

# What a success and a failure mean depends on the hook type: gates open or stay closed,
# checks pass or fail, notifications are delivered or not.
_GATES: frozenset[str] = frozenset(
    {"confirm-rollout", "confirm-traffic-increase", "confirm-promotion", "rollback"}
)


@dataclass(frozen=True)
class WebhookResult:
    """The outcome of one hook: ``status`` is the last HTTP status, 0 when none came."""

    name: str
    type: str
    ok: bool
    status: int
    message: str
    duration_ms: float


def payload(
    name: str,
    namespace: str,
    phase: Phase,
    checksum: str,
    metadata: Mapping[str, str],
    event: tuple[str, str] | None = None,
    *,
    now: datetime | None = None,
) -> WebhookPayload:
    """Flagger's webhook JSON for the release ``name`` in ``namespace``.

    ``event`` is ``(message, event_type)`` (Flagger's order; ``event_type`` is
    ``Normal`` or ``Warning``); with it, ``eventMessage``, ``eventType`` and
    ``timestamp`` (milliseconds since the epoch, as a string; ``now`` or the current
    time) are added to ``metadata``.
    """
    meta = dict(metadata)
    if event is not None:
        message, event_type = event
        at = now if now is not None else datetime.now(UTC)
        meta.update(
            eventMessage=message,
            eventType=event_type,
            timestamp=str(int(at.timestamp() * 1000)),
        )
    return {
        "name": name,
        "namespace": namespace,
        "phase": str(phase),
        "checksum": checksum,
        "metadata": meta,
    }


def hook_payload(
    hook: Webhook, body: WebhookPayload, secret_metadata: Mapping[str, str] | None = None
) -> WebhookPayload:
    """``body`` as sent to ``hook``: the hook's metadata merged in, as Flagger sends it.

    ``secret_metadata`` are the ``metadataFrom`` values. Keys already in the body's
    metadata (the event fields) take precedence.
    """
    meta = {**hook.metadata, **(secret_metadata or {}), **body.get("metadata", {})}
    return {**body, "metadata": meta}


class _Unusable(Exception):
    """The hook cannot be called (refused address, unreadable Secret); final, no retry."""


def _retryable(status: int) -> bool:
    return status == 429 or (status >= 500 and status != 501)


def _short_body(raw: bytes) -> str:
    return plain_text(raw.decode("utf-8", errors="replace"), _MAX_BODY_CHARS)


def _where(url: str) -> str:
    """``host:port`` of a URL, without user info, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    """``connection refused``, ``Name or service not known``: the OS's reason, short."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, socket.gaierror) and os_error.strerror:
        return os_error.strerror
    if isinstance(os_error, OSError) and os_error.errno:
        return os.strerror(os_error.errno).lower()
    return type(exc).__name__


def describe(hook: Webhook, ok: bool, detail: str) -> str:
    """A one-line outcome in the words of the hook's type."""
    kind = hook.type
    if kind in _GATES:
        verdict = "open" if ok else "closed"
        return f"{kind} gate {hook.name} {verdict}: {detail}"
    if kind == "event":
        return f"event webhook {hook.name} {'delivered' if ok else 'failed'}: {detail}"
    return f"{kind} check {hook.name} {'passed' if ok else 'failed'}: {detail}"


class WebhookRunner:
    """Calls webhooks over HTTP with Flagger's semantics, within an ``EgressPolicy``.

    A fresh ``aiohttp.ClientSession`` is made for each ``call`` / ``call_all`` (from
    ``session_factory`` when given, and closed afterwards): hooks are called a few times
    per analysis interval, so a long-lived session would save nothing and would tie the
    runner to one event loop. The session's connector resolves through a
    ``GuardedResolver``, so what the policy checked is what is connected to. A
    ``session_factory`` replaces that connector; the host check before each call stays.
    ``resolver`` replaces the system's DNS lookups (the policy still applies).
    """

    def __init__(
        self,
        session_factory: SessionFactory | None = None,
        *,
        backoff: float = _BACKOFF_FIRST,
        user_agent: str = "canary-bot",
        policy: EgressPolicy | None = None,
        secrets: SecretSource | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._backoff = backoff
        self._user_agent = user_agent
        self.policy = policy or EgressPolicy()
        self.secrets: SecretSource = secrets or NoSecrets()
        self._resolver = resolver

    def _session(self) -> aiohttp.ClientSession:
        if self._session_factory is not None:
            return self._session_factory()
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.policy, self._resolver), use_dns_cache=False
        )
        return aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": self._user_agent}, trust_env=False
        )

    async def call(self, hook: Webhook, payload: WebhookPayload) -> WebhookResult:
        """POST ``payload`` (plus the hook's metadata) to the hook's URL; never raises."""
        async with self._session() as session:
            return await self._call(session, hook, payload)

    async def call_all(
        self, hooks: Sequence[Webhook], payload: WebhookPayload
    ) -> list[WebhookResult]:
        """Call ``hooks`` concurrently; results come back in the hooks' order."""
        if not hooks:
            return []
        async with self._session() as session:
            return list(await asyncio.gather(*(self._call(session, h, payload) for h in hooks)))

    async def _target(self, hook: Webhook) -> tuple[str, dict[str, str]]:
        """The URL to call and the ``metadataFrom`` values; ``_Unusable`` if not callable."""
        try:
            if hook.url_from is not None:
                url = (await self.secrets.value(hook.url_from.secret_key_ref)).strip()
                if not url.startswith(("http://", "https://")):
                    ref = hook.url_from.secret_key_ref
                    raise _Unusable(
                        f"the URL in Secret {ref.name} (key {ref.key}) does not start with "
                        "http:// or https://"
                    )
            else:
                url = hook.url or ""
            extra = {
                key: await self.secrets.value(source.secret_key_ref)
                for key, source in hook.metadata_from.items()
            }
        except SecretUnavailable as exc:
            raise _Unusable(str(exc)) from None
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            raise _Unusable("the URL cannot be parsed") from None
        refused = self.policy.host_refusal(host)
        if refused is not None:
            raise _Unusable(_refused(refused))
        return url, extra

    async def _call(
        self, session: aiohttp.ClientSession, hook: Webhook, body: WebhookPayload
    ) -> WebhookResult:
        started = time.perf_counter()
        try:
            url, extra = await self._target(hook)
        except _Unusable as exc:
            return self._result(hook, False, 0, f"not called: {exc}", started)
        sent = hook_payload(hook, body, extra)
        timeout = hook.timeout_seconds
        attempts = 0
        status = 0
        detail = "not called"
        ok = False
        try:
            async with asyncio.timeout(timeout):
                while True:
                    attempts += 1
                    status, detail, retry = await self._attempt(session, url, sent)
                    ok = 0 < status <= 202
                    if ok or not retry or attempts > hook.retries:
                        break
                    await asyncio.sleep(min(self._backoff * 2 ** (attempts - 1), _BACKOFF_MAX))
        except TimeoutError:
            # Keep what an earlier attempt said: "500 then silence" differs from silence.
            last = f"; last answer {detail}" if status else ""
            ok, detail = False, f"no answer within {hook.timeout}{last}"
        if attempts > 1:
            detail += f" (after {attempts} attempts)"
        return self._result(hook, ok, status, detail, started)

    @staticmethod
    def _result(hook: Webhook, ok: bool, status: int, detail: str, started: float) -> WebhookResult:
        result = WebhookResult(
            name=hook.name,
            type=hook.type,
            ok=ok,
            status=status,
            message=describe(hook, ok, detail),
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        if not ok:
            log.info(result.message, extra={"webhook": hook.name, "type": hook.type})
        return result

    async def _attempt(
        self, session: aiohttp.ClientSession, url: str, body: WebhookPayload
    ) -> tuple[int, str, bool]:
        """One POST: ``(status, detail, worth retrying)``; status 0 when nothing answered."""
        try:
            async with session.post(url, json=body, allow_redirects=False) as response:
                raw = await response.content.read(_MAX_BODY_BYTES)
                status = response.status
                if 300 <= status < 400:
                    where = response.headers.get("Location", "")
                    target = mask_url(where) if where else "nowhere (no Location header)"
                    return (
                        status,
                        f"HTTP {status}: the hook redirected to {target}; redirects are not "
                        "followed, so point the hook at its final URL",
                        False,
                    )
                detail = f"HTTP {status}"
                text = _short_body(raw)
                if text and status > 202:
                    detail += f" {text}"
                return status, detail, _retryable(status)
        except aiohttp.ClientConnectorError as exc:
            refused = describe_refusal(exc)
            if refused is not None:
                return 0, f"not called: {_refused(refused)}", False
            return 0, f"cannot connect to {_where(url)} ({_connect_reason(exc)})", True
        except aiohttp.ClientError as exc:
            return 0, f"request failed ({error_text(exc, urls='the hook URL')})", True


def _refused(reason: str) -> str:
    return (
        f"refused to connect: {reason}; canary-bot does not call link-local or cloud "
        "metadata addresses (an operator can open a range with webhooks.allowCIDRs)"
    )


__all__ = [
    "SessionFactory",
    "WebhookPayload",
    "WebhookResult",
    "WebhookRunner",
    "describe",
    "hook_payload",
    "payload",
]
