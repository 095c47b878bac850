"""What the load tester records and the API tests steer it with.

:class:`Recorder` keeps, behind one lock, every call received, the failures a test
injected per webhook, the confirm and rollback gates, and the load commands started.
:class:`~sandbox.loadtester.server.LoadTester` is a Recorder that also serves HTTP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Injection", "LoadRequest", "Recorder", "Result", "WebhookCall"]


@dataclass(frozen=True)
class LoadRequest:
    """A simulated ``hey`` run, as passed to the ``on_load`` callback.

    ``qps`` is hey's per-worker rate limit (0 = unlimited), so the offered load is
    ``qps * concurrency`` requests per second (:attr:`total_rps`).
    ``duration_seconds`` is None when hey was given a request count and no rate.
    """

    canary: str
    namespace: str
    command: str
    url: str
    method: str = "GET"
    duration_seconds: float | None = None
    qps: float = 0.0
    concurrency: int = 50
    requests: int | None = None

    @property
    def total_rps(self) -> float | None:
        """Offered load in requests per second; None when hey runs unthrottled."""
        return self.qps * self.concurrency if self.qps > 0 else None


@dataclass(frozen=True)
class WebhookCall:
    """One request the load tester received, with the answer it gave."""

    method: str
    path: str
    body: bytes
    payload: dict[str, Any] | None
    status: int
    response: str
    webhook: str
    outcome: str
    received_at: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        """The canary name from the payload."""
        return str((self.payload or {}).get("name") or "")

    @property
    def namespace(self) -> str:
        """The canary namespace from the payload."""
        return str((self.payload or {}).get("namespace") or "")

    @property
    def phase(self) -> str:
        """The canary phase from the payload."""
        return str((self.payload or {}).get("phase") or "")

    @property
    def metadata(self) -> dict[str, str]:
        """The webhook metadata from the payload."""
        meta = (self.payload or {}).get("metadata") or {}
        return dict(meta)

    @property
    def cmd(self) -> str | None:
        """``metadata.cmd``, if any."""
        return self.metadata.get("cmd")


@dataclass
class Injection:
    """A test's override for one webhook: answer ``status`` (None: answer normally)
    after ``delay`` seconds, ``remaining`` more times (None: always)."""

    status: int | None
    body: str | None
    remaining: int | None
    delay: float


@dataclass
class Result:
    """The answer to one request, and the outcome word recorded with it."""

    status: int
    body: str = ""
    outcome: str = ""


class Recorder:
    """Calls, injected failures, gates and loads, shared by the server and the test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[WebhookCall] = []
        self._injections: dict[str, Injection] = {}
        self._gates: dict[str, bool] = {}
        self._loads: list[LoadRequest] = []

    # -- injected failures -------------------------------------------------------------

    def fail(
        self,
        name: str,
        status: int = 500,
        body: str | None = None,
        *,
        times: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer calls to webhook ``name`` with ``status`` (``times`` times, or always).

        ``body`` defaults to what the real load tester says when a command fails.
        ``delay`` holds the answer back that many seconds (to provoke timeouts).
        """
        if not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {status}")
        self._inject(name, Injection(status, body, times, delay))

    def delay(self, name: str, seconds: float, *, times: int | None = None) -> None:
        """Answer calls to webhook ``name`` normally, but only after ``seconds``."""
        self._inject(name, Injection(None, None, times, seconds))

    def _inject(self, name: str, injection: Injection) -> None:
        if injection.remaining is not None and injection.remaining < 1:
            raise ValueError("times must be at least 1")
        if injection.delay < 0:
            raise ValueError("delay must not be negative")
        with self._lock:
            self._injections[name.strip("/")] = injection

    def clear_failures(self, name: str | None = None) -> None:
        """Remove the injected behaviour for ``name`` (or for every webhook)."""
        with self._lock:
            if name is None:
                self._injections.clear()
            else:
                self._injections.pop(name.strip("/"), None)

    def _take_injection(self, webhook: str) -> Injection | None:
        """The override for one call to ``webhook``, counting it down."""
        with self._lock:
            injection = self._injections.get(webhook)
            if injection is None:
                return None
            if injection.remaining is not None:
                injection.remaining -= 1
                if injection.remaining <= 0:
                    del self._injections[webhook]
            return Injection(injection.status, injection.body, None, injection.delay)

    # -- calls and loads ---------------------------------------------------------------

    def calls(self, webhook: str | None = None, *, path: str | None = None) -> list[WebhookCall]:
        """Recorded calls (not health checks), oldest first, optionally filtered."""
        with self._lock:
            calls = list(self._calls)
        if webhook is not None:
            calls = [c for c in calls if c.webhook == webhook.strip("/")]
        if path is not None:
            calls = [c for c in calls if c.path == path]
        return calls

    def wait_for_call(
        self,
        webhook: str | None = None,
        *,
        path: str | None = None,
        predicate: Callable[[WebhookCall], bool] | None = None,
        timeout: float = 30.0,
    ) -> WebhookCall:
        """Wait for a matching call and return the first one."""
        deadline = time.monotonic() + timeout
        while True:
            matches = [
                c for c in self.calls(webhook, path=path) if predicate is None or predicate(c)
            ]
            if matches:
                return matches[0]
            if time.monotonic() >= deadline:
                seen = [(c.path, c.webhook, c.status) for c in self.calls()]
                raise TimeoutError(
                    f"no call to webhook={webhook!r} path={path!r} within {timeout:g}s; "
                    f"calls so far: {seen}"
                )
            time.sleep(0.05)

    def _add_call(self, call: WebhookCall) -> None:
        with self._lock:
            self._calls.append(call)

    @property
    def loads(self) -> list[LoadRequest]:
        """Every load command started so far."""
        with self._lock:
            return list(self._loads)

    def _add_load(self, load: LoadRequest) -> None:
        with self._lock:
            self._loads.append(load)

    # -- gates -------------------------------------------------------------------------

    def open_gate(self, name: str, namespace: str) -> None:
        """Open the confirm gate of canary ``name.namespace`` (like POST /gate/open)."""
        self._set_gate(f"{name}.{namespace}", True)

    def close_gate(self, name: str, namespace: str) -> None:
        """Close the confirm gate of canary ``name.namespace``."""
        self._set_gate(f"{name}.{namespace}", False)

    def gate_is_open(self, name: str, namespace: str) -> bool:
        """Whether ``/gate/check`` would approve canary ``name.namespace``."""
        return self._gate_is_open(f"{name}.{namespace}")

    def open_rollback(self, name: str, namespace: str) -> None:
        """Make ``/rollback/check`` approve a rollback of ``name.namespace``."""
        self._set_gate(f"rollback.{name}.{namespace}", True)

    def close_rollback(self, name: str, namespace: str) -> None:
        """Make ``/rollback/check`` refuse a rollback of ``name.namespace``."""
        self._set_gate(f"rollback.{name}.{namespace}", False)

    def rollback_is_open(self, name: str, namespace: str) -> bool:
        """Whether ``/rollback/check`` would approve a rollback of ``name.namespace``."""
        return self._gate_is_open(f"rollback.{name}.{namespace}")

    def _set_gate(self, key: str, is_open: bool) -> None:
        with self._lock:
            self._gates[key] = is_open

    def _gate_is_open(self, key: str) -> bool:
        # closed until opened, as the real load tester's gates are
        with self._lock:
            return self._gates.get(key, False)
