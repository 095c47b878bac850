"""A local stand-in for flagger-loadtester.

It speaks the same HTTP API as the real load tester (the Flagger webhook payload on
``POST /``, the ``/gate/*`` and ``/rollback/*`` gates, ``/healthz``) and answers with
the same status codes and bodies, but it never runs a shell command. Commands are
recognised and simulated instead:

* an acceptance test (``curl ... | grep token``, or any ``curl``/``wget`` pipeline)
  passes unless the test injected a failure for it;
* a ``hey`` load command is parsed (``-z``, ``-q``, ``-c``, ``-n``, ``-m``, URL) and
  handed to an optional ``on_load`` callback, so the sandbox can raise the simulated
  traffic; like the real task runner, a command already running for the same canary
  is not started twice;
* ``true``, ``false``, ``exit N`` and ``echo ...`` behave as in a shell; anything else
  fails with exit status 127 (or passes, with ``unknown_commands="pass"``).

Every request is recorded as a :class:`WebhookCall` for assertions, and failures can
be injected per webhook name with :meth:`LoadTester.fail`.

The webhook name is not part of Flagger's payload, so a call's ``webhook`` is the
request path when the hook points at one (``http://loadtester/acceptance-test``; the
real load tester serves every unknown path as ``/``), otherwise the kind of its command:
``acceptance-test`` for curl/wget, ``load-test`` for hey, as the tutorial names them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Literal, Self

from aiohttp import web

__all__ = ["LoadRequest", "LoadTester", "WebhookCall", "main"]

log = logging.getLogger(__name__)

# Task types the real load tester knows. "cmd" and "ngrinder" are queued (202),
# the others run while the request waits (200 or 500).
_QUEUED_TYPES = ("cmd", "ngrinder")
_BLOCKING_TYPES = ("bash", "helm", "helmv3", "kubectl", "concord")
_GATE_ROUTES = ("/gate/check", "/gate/open", "/gate/close")
_ROLLBACK_ROUTES = ("/rollback/check", "/rollback/open", "/rollback/close")
_FIXED_ROUTES = ("/healthz", "/gate/approve", "/gate/halt", *_GATE_ROUTES, *_ROLLBACK_ROUTES)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_TRUE_WORDS = ("1", "t", "T", "TRUE", "true", "True")


# --------------------------------------------------------------------------- records


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
class _Injection:
    status: int | None  # None: answer normally, after the delay
    body: str | None
    remaining: int | None
    delay: float


class _BadPayload(Exception):
    pass


@dataclass
class _Result:
    status: int
    body: str = ""
    outcome: str = ""


# --------------------------------------------------------------------------- parsing


def _parse_payload(raw: bytes) -> dict[str, Any]:
    """Decode a webhook payload the way Go's json.Unmarshal fills Flagger's struct."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BadPayload(str(exc)) from exc
    if data is None:  # JSON null leaves the struct empty in Go
        return {}
    if not isinstance(data, dict):
        raise _BadPayload(f"cannot decode {type(data).__name__} into the webhook payload")
    for key in ("name", "namespace", "phase", "checksum"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise _BadPayload(f"{key} must be a string")
    meta = data.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            raise _BadPayload("metadata must be an object")
        for key, value in meta.items():
            if value is not None and not isinstance(value, str):
                raise _BadPayload(f"metadata.{key} must be a string")
    return data


def _parse_go_duration(text: str) -> float:
    """Seconds in a Go duration such as ``1m``, ``30s`` or ``1m30s``."""
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}")
    return total


def _parse_bool(text: str | None) -> bool:
    return text in _TRUE_WORDS


def _split(command: str) -> list[list[str]]:
    """The command's pipeline stages as argument lists ([] if it cannot be parsed)."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars="|&;")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return []
    stages: list[list[str]] = [[]]
    for token in tokens:
        if token and set(token) <= set("|&;"):
            stages.append([])
        else:
            stages[-1].append(token)
    return [stage for stage in stages if stage]


def classify(command: str | None) -> str:
    """The kind of a command: ``acceptance-test``, ``load-test`` or ``""``."""
    stages = _split(command or "")
    if not stages:
        return ""
    programs = [stage[0].rsplit("/", 1)[-1] for stage in stages]
    if "hey" in programs:
        return "load-test"
    if programs[0] in ("curl", "wget"):
        return "acceptance-test"
    return ""


def parse_hey(command: str, canary: str = "", namespace: str = "") -> LoadRequest:
    """Parse a ``hey`` command line into a LoadRequest; ValueError if it is not one."""
    stages = _split(command)
    args = next((s for s in stages if s[0].rsplit("/", 1)[-1] == "hey"), None)
    if args is None:
        raise ValueError("not a hey command")
    flags_with_value = {"-z", "-q", "-c", "-n", "-m", "-H", "-t", "-d", "-D", "-T", "-A", "-a"}
    flags_with_value |= {"-x", "-o", "-cpus"}
    values: dict[str, str] = {}
    positional: list[str] = []
    i = 1
    while i < len(args):
        arg = args[i]
        if arg in flags_with_value:
            if i + 1 >= len(args):
                raise ValueError(f"hey flag {arg} needs a value")
            values[arg] = args[i + 1]
            i += 2
            continue
        if arg.startswith("-"):
            i += 1  # boolean flags such as -h2 or -disable-keepalive
            continue
        positional.append(arg)
        i += 1
    if not positional:
        raise ValueError("hey needs a URL")
    qps = float(values.get("-q", "0"))
    concurrency = int(values.get("-c", "50"))
    requests = int(values["-n"]) if "-n" in values else None
    duration: float | None
    if "-z" in values:
        duration = _parse_go_duration(values["-z"])
        requests = None  # hey ignores -n when -z is given
    else:
        requests = requests if requests is not None else 200
        duration = requests / (qps * concurrency) if qps > 0 else None
    return LoadRequest(
        canary=canary,
        namespace=namespace,
        command=command,
        url=positional[-1],
        method=values.get("-m", "GET").upper(),
        duration_seconds=duration,
        qps=qps,
        concurrency=concurrency,
        requests=requests,
    )


_TOKEN_OUTPUT = '{"token":"sandbox.token.value","expires_at":"2099-01-01T00:00:00Z"}'


# --------------------------------------------------------------------------- server


class LoadTester:
    """A flagger-loadtester fake served by aiohttp in a background thread.

    ``on_load`` is called (in a worker thread) with a :class:`LoadRequest` each time a
    ``hey`` command starts. ``namespace_pattern`` mirrors the real tester's namespace
    allow-list (a regular expression; requests for other namespaces get 403).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_load: Callable[[LoadRequest], None] | None = None,
        namespace_pattern: str | None = None,
        unknown_commands: Literal["fail", "pass"] = "fail",
    ) -> None:
        self._host = host
        self._port = port
        self.on_load = on_load
        self._namespace_re = re.compile(namespace_pattern) if namespace_pattern else None
        self._unknown_commands = unknown_commands
        self._lock = threading.Lock()
        self._calls: list[WebhookCall] = []
        self._injections: dict[str, _Injection] = {}
        self._gates: dict[str, bool] = {}
        self._running: dict[str, float] = {}
        self._loads: list[LoadRequest] = []
        self.callback_errors: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._bound_port: int | None = None

    # -------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40111`` (only while started)."""
        if self._bound_port is None:
            raise RuntimeError("the load tester is not started")
        return f"http://{self._host}:{self._bound_port}"

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving in a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the load tester is already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="loadtester-cb")

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._bind())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="loadtester", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"the load tester did not start within {timeout:g}s")
        if failure:
            self._thread.join()
            self._thread = None
            self._loop = None
            raise RuntimeError(f"the load tester could not start: {failure[0]}") from failure[0]
        return self

    async def _bind(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/healthz", self._healthz)
        app.router.add_route("*", "/gate/approve", self._approve)
        app.router.add_route("*", "/gate/halt", self._halt)
        for route in (*_GATE_ROUTES, *_ROLLBACK_ROUTES):
            app.router.add_route("*", route, self._gate)
        app.router.add_route("*", "/{tail:.*}", self._task)
        # Short shutdown: a test's injected delay must not hold up teardown.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        addresses = self._runner.addresses
        self._bound_port = int(addresses[0][1])

    def stop(self) -> None:
        """Stop the server and its thread; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=15)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._loop = None
        self._thread = None
        self._runner = None
        self._bound_port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --------------------------------------------------------------- test API

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
        self._inject(name, _Injection(status, body, times, delay))

    def delay(self, name: str, seconds: float, *, times: int | None = None) -> None:
        """Answer calls to webhook ``name`` normally, but only after ``seconds``."""
        self._inject(name, _Injection(None, None, times, seconds))

    def _inject(self, name: str, injection: _Injection) -> None:
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

    @property
    def loads(self) -> list[LoadRequest]:
        """Every load command started so far."""
        with self._lock:
            return list(self._loads)

    def open_gate(self, name: str, namespace: str) -> None:
        """Open the confirm gate of canary ``name.namespace`` (like POST /gate/open)."""
        self._set_gate(f"{name}.{namespace}", True)

    def close_gate(self, name: str, namespace: str) -> None:
        """Close the confirm gate of canary ``name.namespace``."""
        self._set_gate(f"{name}.{namespace}", False)

    def gate_is_open(self, name: str, namespace: str) -> bool:
        """Whether ``/gate/check`` would approve canary ``name.namespace``."""
        with self._lock:
            return self._gates.get(f"{name}.{namespace}", False)

    def open_rollback(self, name: str, namespace: str) -> None:
        """Make ``/rollback/check`` approve a rollback of ``name.namespace``."""
        self._set_gate(f"rollback.{name}.{namespace}", True)

    def close_rollback(self, name: str, namespace: str) -> None:
        """Make ``/rollback/check`` refuse a rollback of ``name.namespace``."""
        self._set_gate(f"rollback.{name}.{namespace}", False)

    def rollback_is_open(self, name: str, namespace: str) -> bool:
        """Whether ``/rollback/check`` would approve a rollback of ``name.namespace``."""
        with self._lock:
            return self._gates.get(f"rollback.{name}.{namespace}", False)

    def _set_gate(self, key: str, is_open: bool) -> None:
        with self._lock:
            self._gates[key] = is_open

    # --------------------------------------------------------------- handlers

    def _record(
        self,
        request: web.Request,
        raw: bytes,
        payload: dict[str, Any] | None,
        webhook: str,
        result: _Result,
    ) -> web.Response:
        call = WebhookCall(
            method=request.method,
            path=request.path,
            body=raw,
            payload=payload,
            status=result.status,
            response=result.body,
            webhook=webhook,
            outcome=result.outcome,
        )
        with self._lock:
            self._calls.append(call)
        log.info(
            "%s %s webhook=%r -> %d %s", call.method, call.path, webhook, call.status, call.outcome
        )
        if result.body:
            return web.Response(status=result.status, text=result.body)
        return web.Response(status=result.status)

    def _take_injection(self, webhook: str) -> _Injection | None:
        with self._lock:
            injection = self._injections.get(webhook)
            if injection is None:
                return None
            if injection.remaining is not None:
                injection.remaining -= 1
                if injection.remaining <= 0:
                    del self._injections[webhook]
            return _Injection(injection.status, injection.body, None, injection.delay)

    def _authorized(self, payload: Mapping[str, Any]) -> bool:
        if self._namespace_re is None:
            return True
        return self._namespace_re.search(str(payload.get("namespace") or "")) is not None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(status=200, text="OK")

    async def _approve(self, request: web.Request) -> web.Response:
        return await self._fixed(request, _Result(200, "OK", "approved"))

    async def _halt(self, request: web.Request) -> web.Response:
        return await self._fixed(request, _Result(403, "Forbidden", "halted"))

    async def _fixed(self, request: web.Request, result: _Result) -> web.Response:
        raw = await request.read()
        try:
            payload: dict[str, Any] | None = _parse_payload(raw)
        except _BadPayload:
            payload = None  # these endpoints ignore the body, as the real ones do
        webhook = request.path.strip("/")
        injected = await self._apply_injection(webhook, None)
        return self._record(request, raw, payload, webhook, injected or result)

    async def _apply_injection(self, webhook: str, cmd: str | None) -> _Result | None:
        injection = self._take_injection(webhook)
        if injection is None:
            return None
        if injection.delay:
            await asyncio.sleep(injection.delay)
        if injection.status is None:
            return None
        body = injection.body
        if body is None:
            body = (
                f"command {cmd} failed: : exit status 1"
                if cmd is not None and injection.status >= 500
                else f"injected failure for {webhook}"
            )
        return _Result(injection.status, body, "injected")

    async def _gate(self, request: web.Request) -> web.Response:
        raw = await request.read()
        webhook = request.path.strip("/")
        try:
            payload = _parse_payload(raw)
        except _BadPayload as exc:
            return self._record(
                request, raw, None, webhook, _Result(400, "", f"bad payload: {exc}")
            )
        if not self._authorized(payload):
            return self._record(request, raw, payload, webhook, _Result(403, "Forbidden", "denied"))
        injected = await self._apply_injection(webhook, None)
        if injected is not None:
            return self._record(request, raw, payload, webhook, injected)
        prefix = "rollback." if request.path.startswith("/rollback/") else ""
        key = f"{prefix}{payload.get('name') or ''}.{payload.get('namespace') or ''}"
        action = request.path.rsplit("/", 1)[-1]
        if action == "check":
            with self._lock:
                is_open = self._gates.get(key, False)
            result = (
                _Result(200, "Approved", "open") if is_open else _Result(403, "Forbidden", "closed")
            )
        else:
            self._set_gate(key, action == "open")
            result = _Result(202, "", f"{action}ed" if action == "open" else "closed")
        return self._record(request, raw, payload, webhook, result)

    async def _task(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            payload = _parse_payload(raw)
        except _BadPayload as exc:
            webhook = request.path.strip("/")
            return self._record(
                request, raw, None, webhook, _Result(400, "", f"bad payload: {exc}")
            )
        metadata: dict[str, str] = {k: v or "" for k, v in (payload.get("metadata") or {}).items()}
        cmd = metadata.get("cmd")
        webhook = request.path.strip("/") or classify(cmd)
        if not self._authorized(payload):
            return self._record(request, raw, payload, webhook, _Result(403, "Forbidden", "denied"))
        injected = await self._apply_injection(webhook, cmd)
        if injected is not None:
            return self._record(request, raw, payload, webhook, injected)
        result = self._run_task(payload, metadata)
        return self._record(request, raw, payload, webhook, result)

    def _run_task(self, payload: Mapping[str, Any], metadata: Mapping[str, str]) -> _Result:
        if not metadata:
            return _Result(400, "metadata not found in payload", "rejected")
        task_type = metadata.get("type", "cmd")
        canary = str(payload.get("name") or "")
        namespace = str(payload.get("namespace") or "")
        if task_type == "bash":
            # The real tester runs `bash -c <cmd>`; an absent cmd is an empty script.
            command = metadata.get("cmd", "")
            code, output = self._simulate(command, canary, namespace)
            if code != 0:
                return _Result(
                    500, f"command {command} failed: {output}: exit status {code}", "failed"
                )
            body = output if _parse_bool(metadata.get("returnCmdOutput")) else ""
            return _Result(200, body, "passed")
        if task_type in _BLOCKING_TYPES:
            command = metadata.get("cmd", "")
            return _Result(
                500,
                f"command {command} failed: {task_type} tasks are not available in the "
                "sandbox load tester: exit status 127",
                "unsupported",
            )
        if task_type not in _QUEUED_TYPES:
            return _Result(400, f"unknown task type {task_type}", "rejected")
        if task_type == "ngrinder":
            return _Result(
                400, "ngrinder tasks are not available in the sandbox load tester", "unsupported"
            )
        if "cmd" not in metadata:
            return _Result(400, "cmd not found in metadata", "rejected")
        # Queued tasks are answered 202 before they run; their outcome is only logged,
        # so a command the sandbox cannot simulate is accepted and simply not run.
        command = metadata["cmd"]
        if classify(command) == "load-test":
            return _Result(202, "", self._start_load(command, canary, namespace))
        return _Result(202, "", "accepted")

    def _simulate(self, command: str, canary: str, namespace: str) -> tuple[int, str]:
        """(exit status, output) of a command, without running it."""
        stripped = command.strip()
        if not stripped:
            return 0, ""
        kind = classify(stripped)
        if kind == "acceptance-test":
            return 0, _TOKEN_OUTPUT + "\n"
        if kind == "load-test":
            outcome = self._start_load(stripped, canary, namespace)
            return (0, "") if outcome != "invalid" else (1, "hey: invalid arguments\n")
        stages = _split(stripped)
        if len(stages) == 1:
            argv = stages[0]
            if argv[0] in ("true", ":"):
                return 0, ""
            if argv[0] == "false":
                return 1, ""
            if argv[0] == "exit":
                try:
                    return (int(argv[1]) if len(argv) > 1 else 0) % 256, ""
                except ValueError:
                    return 2, f"exit: {argv[1]}: numeric argument required\n"
            if argv[0] == "echo":
                return 0, " ".join(argv[1:]) + "\n"
        if self._unknown_commands == "pass":
            return 0, ""
        return 127, f"sandbox load tester does not run unrecognised commands: {stripped}\n"

    def _start_load(self, command: str, canary: str, namespace: str) -> str:
        try:
            load = parse_hey(command, canary, namespace)
        except ValueError as exc:
            log.warning("cannot parse load command %r: %s", command, exc)
            return "invalid"
        key = f"{canary}.{namespace}\x00{command}"
        now = time.monotonic()
        with self._lock:
            # Like the real task runner: the same command for the same canary is not
            # started again while it still runs.
            if self._running.get(key, 0.0) > now:
                return "already running"
            self._running[key] = now + (load.duration_seconds or 0.0)
            self._loads.append(load)
        callback, loop, executor = self.on_load, self._loop, self._executor
        if callback is not None and loop is not None and executor is not None:
            future = loop.run_in_executor(executor, callback, load)
            future.add_done_callback(self._callback_done)
        return "started"

    def _callback_done(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("on_load callback failed: %r", exc)
            with self._lock:
                self.callback_errors.append(exc)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Serve the fake until SIGINT/SIGTERM (``python -m sandbox.loadtester``)."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.loadtester",
        description="A flagger-loadtester stand-in that simulates commands instead of "
        "running them.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0 = a free port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with LoadTester(host=args.host, port=args.port) as tester:
        print(f"load tester: {tester.url}/", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
