"""The process's two HTTP servers.

- The Slack port (3000, ``--port``), the only one the ``canary-bot`` Service exposes:
  ``POST /slack/events`` in HTTP mode, and ``GET /healthz`` so a load balancer in front
  of that Service can check the port it sends to. Nothing else: it faces Slack.
- The metrics port (9090, ``--metrics-port``), for the kubelet and Prometheus only:
  ``/healthz`` (answers while the event loop runs), ``/readyz`` (only once every
  readiness check passes: Slack connected or the signing secret loaded, engine started,
  so a Service sends Slack's requests only to replicas that can take them) and
  ``/metrics``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from slack_bolt import BoltResponse
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger("canary_bot.web")

EVENTS_PATH = "/slack/events"
# A readiness check answers at once or after an await (Slack's Socket Mode client is async).
ReadinessCheck = Callable[[], bool | Awaitable[bool]]
# The answer to a request given before Bolt runs (None: Bolt's answer is waited for).
EarlyAck = Callable[[AsyncBoltRequest], BoltResponse | None]


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def build_metrics_app(
    registry: CollectorRegistry, readiness: dict[str, ReadinessCheck] | None = None
) -> web.Application:
    """The metrics port: ``/healthz``, ``/readyz`` and ``/metrics``."""
    checks = dict(readiness or {})
    app = web.Application(client_max_size=64 * 1024)

    async def readyz(_: web.Request) -> web.Response:
        failing = []
        for name, check in sorted(checks.items()):
            outcome = check()
            if not (await outcome if inspect.isawaitable(outcome) else outcome):
                failing.append(name)
        if failing:
            return web.Response(status=503, text="not ready: " + ", ".join(failing) + "\n")
        return web.Response(text="ready\n")

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def build_web_app(
    bolt: AsyncApp | None,
    signing_secret: str = "",
    *,
    bolt_loop: asyncio.AbstractEventLoop | None = None,
    early_ack: EarlyAck | None = None,
) -> web.Application:
    """The Slack port; ``bolt`` None means Socket Mode (no events endpoint).

    HTTP mode verifies Slack's signature here, in front of Bolt, on the raw bytes: Bolt
    would parse the body first and fail with a 500 on bodies Slack never sends.

    With ``bolt_loop`` (the port served from its own thread, ``bot.slack_port``), Bolt
    runs on that loop; a request ``early_ack`` answers gets that answer at once, and
    Bolt's run of the listener is not waited for.
    """
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get("/healthz", _healthz)
    if bolt is not None:
        verifier = SignatureVerifier(signing_secret)

        async def slack_events(request: web.Request) -> web.Response:
            # aiohttp answers 413 itself past client_max_size.
            raw = await request.read()
            if not _signed(verifier, raw, request.headers):
                return web.Response(status=401, text="invalid signature or timestamp\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return web.Response(status=400, text="the body is not UTF-8\n")
            headers: dict[str, str | Sequence[str]] = {
                k.lower(): [v] for k, v in request.headers.items()
            }
            try:
                # The signature was checked above on the original bytes; Bolt sees a form
                # body it parses correctly (see _shield_payload_word).
                bolt_request = AsyncBoltRequest(
                    body=_shield_payload_word(text, request.content_type),
                    query=request.query_string,
                    headers=headers,
                )
                problem = _interaction_problem(bolt_request.body)
                if problem:
                    return web.Response(status=400, text=f"unusable request body: {problem}\n")
                response = await _dispatch(bolt, bolt_request, bolt_loop, early_ack)
            except Exception as exc:  # a signed body Slack never sends: reject, never 500
                log.warning("unusable Slack request: %s", type(exc).__name__)
                return web.Response(status=400, text="unusable request body\n")
            return await to_aiohttp_response(response)

        app.router.add_post(EVENTS_PATH, slack_events)
    return app


async def _dispatch(
    bolt: AsyncApp,
    request: AsyncBoltRequest,
    bolt_loop: asyncio.AbstractEventLoop | None,
    early_ack: EarlyAck | None,
) -> BoltResponse:
    """Bolt's answer to ``request``, or the early ack while Bolt runs on ``bolt_loop``."""
    if bolt_loop is None:
        return await bolt.async_dispatch(request)
    early = early_ack(request) if early_ack is not None else None
    handed_over = asyncio.run_coroutine_threadsafe(bolt.async_dispatch(request), bolt_loop)
    if early is None:
        return await asyncio.wrap_future(handed_over)
    handed_over.add_done_callback(_log_failure)
    return early


def _log_failure(done: concurrent.futures.Future[BoltResponse]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("an acknowledged Slack request failed in Bolt: %r", done.exception())


def _signed(verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str]) -> bool:
    """Slack's v0 signature over the raw body, with a sane, recent timestamp."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not (timestamp.isdigit() and len(timestamp) <= 12 and signature):
        return False
    try:
        return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except Exception:  # the verifier chokes on malformed input: that is a bad signature
        return False


def _interaction_problem(body: dict[str, Any]) -> str:
    """Why an interactive payload is not one Slack sends ("" when it looks right).

    Bolt matches listeners on these fields and fails with a 500 when they have the wrong
    shape; a signed but malformed request deserves a 400 instead.
    """
    if body.get("type") != "block_actions":
        return ""
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions:
        return "block_actions without actions"
    if not all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions):
        return "an action without a string action_id"
    return ""


def _shield_payload_word(body: str, content_type: str) -> str:
    """Keep Bolt from mistaking a form that merely mentions "payload" for an interaction.

    Bolt treats any form body containing the substring ``payload`` as an interactive
    request and drops every field when there is no ``payload=`` field, so
    ``/canary status payload-api`` would be lost. Percent-encoding one letter keeps the
    decoded fields identical (``parse_qsl`` unquotes keys and values).
    """
    if content_type == "application/json" or body.startswith("{") or "payload" not in body:
        return body
    if any(key == "payload" for key, _ in parse_qsl(body, keep_blank_values=True)):
        return body
    return body.replace("payload", "p%61yload")


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving ``app``; the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("listening on %s:%d", host, port)
    return runner
