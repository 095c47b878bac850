"""The process's HTTP server: ``/slack/events`` (HTTP mode), ``/healthz``, ``/readyz``,
``/metrics``.

``/healthz`` answers while the event loop runs; ``/readyz`` only once every readiness
check passes (config loaded, Slack connected, engine started), so a Service sends Slack's
requests only to replicas that can take them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

log = logging.getLogger("canary_bot.web")

EVENTS_PATH = "/slack/events"
ReadinessCheck = Callable[[], bool]


def build_web_app(
    bolt: AsyncApp | None,
    registry: CollectorRegistry,
    readiness: dict[str, ReadinessCheck] | None = None,
) -> web.Application:
    """The aiohttp application; ``bolt`` None means Socket Mode (no events endpoint)."""
    checks = dict(readiness or {})
    app = web.Application(client_max_size=1024 * 1024)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        failing = sorted(name for name, check in checks.items() if not check())
        if failing:
            return web.Response(status=503, text="not ready: " + ", ".join(failing) + "\n")
        return web.Response(text="ready\n")

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if bolt is not None:

        async def slack_events(request: web.Request) -> web.Response:
            # Bolt verifies the signature and timestamp, acks within the listener, and
            # answers 401 to anything forged or stale before a listener runs.
            response = await bolt.async_dispatch(await to_bolt_request(request))
            return await to_aiohttp_response(response)

        app.router.add_post(EVENTS_PATH, slack_events)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving ``app``; the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("listening on %s:%d", host, port)
    return runner
