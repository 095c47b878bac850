"""The load tester's HTTP server: its routes, the payload it accepts, the gates.

:class:`LoadTester` serves aiohttp in a background thread. Tasks (``POST /`` and any
unknown path) go to the :class:`~sandbox.loadtester.commands.CommandRunner`; the
``/gate/*`` and ``/rollback/*`` routes read and set the gates kept by the
:class:`~sandbox.loadtester.recorder.Recorder`, whose test API LoadTester inherits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

from sandbox.loadtester.commands import CommandRunner, classify
from sandbox.loadtester.recorder import LoadRequest, Recorder, Result, WebhookCall

__all__ = ["LoadTester"]

log = logging.getLogger("sandbox.loadtester")

_GATE_ROUTES = ("/gate/check", "/gate/open", "/gate/close")
_ROLLBACK_ROUTES = ("/rollback/check", "/rollback/open", "/rollback/close")


class _BadPayload(Exception):
    pass


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


class LoadTester(Recorder):
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
        super().__init__()
        self._host = host
        self._port = port
        self.on_load = on_load
        self._namespace_re = re.compile(namespace_pattern) if namespace_pattern else None
        self._commands = CommandRunner(self._load_started, unknown_commands)
        self.callback_errors: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._bound_port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------

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

    # -- handlers ----------------------------------------------------------------------

    def _record(
        self,
        request: web.Request,
        raw: bytes,
        payload: dict[str, Any] | None,
        webhook: str,
        result: Result,
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
        self._add_call(call)
        log.info(
            "%s %s webhook=%r -> %d %s", call.method, call.path, webhook, call.status, call.outcome
        )
        if result.body:
            return web.Response(status=result.status, text=result.body)
        return web.Response(status=result.status)

    def _authorized(self, payload: Mapping[str, Any]) -> bool:
        if self._namespace_re is None:
            return True
        return self._namespace_re.search(str(payload.get("namespace") or "")) is not None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(status=200, text="OK")

    async def _approve(self, request: web.Request) -> web.Response:
        return await self._fixed(request, Result(200, "OK", "approved"))

    async def _halt(self, request: web.Request) -> web.Response:
        return await self._fixed(request, Result(403, "Forbidden", "halted"))

    async def _fixed(self, request: web.Request, result: Result) -> web.Response:
        raw = await request.read()
        try:
            payload: dict[str, Any] | None = _parse_payload(raw)
        except _BadPayload:
            payload = None  # these endpoints ignore the body, as the real ones do
        webhook = request.path.strip("/")
        injected = await self._apply_injection(webhook, None)
        return self._record(request, raw, payload, webhook, injected or result)

    async def _apply_injection(self, webhook: str, cmd: str | None) -> Result | None:
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
        return Result(injection.status, body, "injected")

    async def _gate(self, request: web.Request) -> web.Response:
        raw = await request.read()
        webhook = request.path.strip("/")
        try:
            payload = _parse_payload(raw)
        except _BadPayload as exc:
            return self._record(request, raw, None, webhook, Result(400, "", f"bad payload: {exc}"))
        if not self._authorized(payload):
            return self._record(request, raw, payload, webhook, Result(403, "Forbidden", "denied"))
        injected = await self._apply_injection(webhook, None)
        if injected is not None:
            return self._record(request, raw, payload, webhook, injected)
        prefix = "rollback." if request.path.startswith("/rollback/") else ""
        key = f"{prefix}{payload.get('name') or ''}.{payload.get('namespace') or ''}"
        action = request.path.rsplit("/", 1)[-1]
        if action == "check":
            result = (
                Result(200, "Approved", "open")
                if self._gate_is_open(key)
                else Result(403, "Forbidden", "closed")
            )
        else:
            self._set_gate(key, action == "open")
            result = Result(202, "", f"{action}ed" if action == "open" else "closed")
        return self._record(request, raw, payload, webhook, result)

    async def _task(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            payload = _parse_payload(raw)
        except _BadPayload as exc:
            webhook = request.path.strip("/")
            return self._record(request, raw, None, webhook, Result(400, "", f"bad payload: {exc}"))
        metadata: dict[str, str] = {k: v or "" for k, v in (payload.get("metadata") or {}).items()}
        cmd = metadata.get("cmd")
        webhook = request.path.strip("/") or classify(cmd)
        if not self._authorized(payload):
            return self._record(request, raw, payload, webhook, Result(403, "Forbidden", "denied"))
        injected = await self._apply_injection(webhook, cmd)
        if injected is not None:
            return self._record(request, raw, payload, webhook, injected)
        result = self._commands.run(payload, metadata)
        return self._record(request, raw, payload, webhook, result)

    # -- load commands -----------------------------------------------------------------

    def _load_started(self, load: LoadRequest) -> None:
        """Record a load command that started and hand it to ``on_load``."""
        self._add_load(load)
        callback, loop, executor = self.on_load, self._loop, self._executor
        if callback is not None and loop is not None and executor is not None:
            future = loop.run_in_executor(executor, callback, load)
            future.add_done_callback(self._callback_done)

    def _callback_done(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("on_load callback failed: %r", exc)
            with self._lock:
                self.callback_errors.append(exc)
