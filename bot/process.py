"""One canary-bot process: Slack app (Socket Mode or HTTP), notifier, engine, web server.

Transports: Socket Mode when ``SLACK_APP_TOKEN`` is set (no public endpoint needed); HTTP
mode (``/slack/events``) when only ``SLACK_SIGNING_SECRET`` is; console mode (events
printed as text) without Slack credentials. The engine runs in every replica but acts
only while it holds the leader Lease.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bot.app import build_app
from bot.authz import Authorizer, SlackGroupDirectory
from bot.config import Authorization, AuthorizationRule, BotConfig, Environment
from bot.console import CONSOLE_USER, ConsoleNotifier
from bot.deps import Deps
from bot.metrics import BotMetrics
from bot.notifier import SlackNotifier
from bot.operations import Operations
from bot.slack_client import make_client
from bot.web import build_web_app, serve
from rollout.analysis import PrometheusProvider
from rollout.controller import Controller, EngineSettings
from rollout.kube import Kube
from rollout.notify import Notifier
from rollout.preflight import parse_namespace_list
from rollout.store import ReleaseStore
from rollout.timeline import timeline_source

log = logging.getLogger("canary_bot.process")

CONSOLE_AUTHORIZATION = Authorization(
    rules=[AuthorizationRule(namespaces=["*"], verbs=["*"], users=[CONSOLE_USER])]
)


def default_identity() -> str:
    """This replica's name in the leader Lease: the Pod name (hostname) and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class BotProcess:
    """Builds and runs every part; ``start`` then ``stop``."""

    env: Environment
    config: BotConfig
    registry: CollectorRegistry
    port: int = 3000
    host: str = "0.0.0.0"
    run_engine: bool = True
    leader_election: bool = True
    # Only releases in this namespace (None: every namespace the credentials can see).
    namespace: str | None = None
    identity: str = field(default_factory=default_identity)
    kube: Kube | None = None
    bolt: AsyncApp | None = None
    notifier: Notifier | None = None
    controller: Controller | None = None
    operations: Operations | None = None
    _runner: web.AppRunner | None = None
    _socket: AsyncSocketModeHandler | None = None
    _engine_started: bool = False
    _chart_prometheus: PrometheusProvider | None = None

    async def start(self) -> None:
        """Connect to the cluster and Slack, serve HTTP, start the engine."""
        env, config = self.env, self.config
        transport = env.transport
        metrics = BotMetrics(self.registry)
        kube = self.kube = self.kube or Kube.connect(env.kubeconfig)
        token = env.slack_bot_token.get_secret_value() if env.slack_bot_token else None
        client = make_client(token, env.api_url)
        if transport == "console":
            self.notifier = ConsoleNotifier()
        else:
            # the end-of-rollout chart reads the same Prometheus as the analysis
            self._chart_prometheus = PrometheusProvider(
                env.prometheus_url or EngineSettings.prometheus_url, config.metric_templates
            )
            self.notifier = SlackNotifier(
                client,
                config.channels,
                metrics=metrics,
                timelines=timeline_source(self._chart_prometheus),
            )
        operations = Operations(
            config=config,
            store=ReleaseStore(kube),
            kube=kube,
            authorizer=Authorizer(
                # at a terminal the operator acts with their own kube credentials
                CONSOLE_AUTHORIZATION if transport == "console" else config.authorization,
                SlackGroupDirectory(client),
            ),
        )
        self.operations = operations
        deps = Deps(operations=operations, config=config, metrics=metrics, client=client)
        secret = env.slack_signing_secret.get_secret_value() if env.slack_signing_secret else ""
        if transport != "console":
            # HTTP requests are verified by the web layer in front of Bolt (bot/web.py)
            self.bolt = build_app(deps)
        web_app = build_web_app(
            self.bolt if transport == "http" else None,
            self.registry,
            readiness={"slack": self._slack_ready, "engine": lambda: self._engine_started},
            signing_secret=secret,
        )
        self._runner = await serve(web_app, self.host, self.port)
        if transport == "socket" and self.bolt is not None and env.slack_app_token is not None:
            self._socket = AsyncSocketModeHandler(
                self.bolt, env.slack_app_token.get_secret_value(), web_client=client
            )
            await self._socket.connect_async()  # type: ignore[no-untyped-call]  # Bolt's stub
        if self.run_engine:
            self.controller = Controller(
                kube,
                self.notifier,
                EngineSettings(
                    prometheus_url=env.prometheus_url or EngineSettings.prometheus_url,
                    metric_templates=config.metric_templates,
                    cluster=config.cluster,
                    leader_election=self.leader_election,
                    namespace=self.namespace,
                    # the Lease lives next to the bot (its Role allows only that namespace)
                    lease_namespace=os.environ.get("POD_NAMESPACE", "default"),
                    own_namespace=os.environ.get("POD_NAMESPACE", ""),
                    protected_namespaces=parse_namespace_list(
                        env.canary_bot_protected_namespaces
                    ),
                ),
                self.identity,
                registry=self.registry,
            )
            await self.controller.start()
        self._engine_started = True
        log.info("canary-bot running (%s transport)", transport)

    def _slack_ready(self) -> bool:
        if self._socket is None:
            return True
        return bool(self._socket.client.is_connected())

    @property
    def bound_port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        assert self._runner is not None
        for address in self._runner.addresses:
            return int(address[1])
        return self.port

    async def stop(self) -> None:
        """Stop acting and connections; flush the last card refreshes."""
        if self.controller is not None:
            await self.controller.stop()
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]  # Bolt's stub
        if isinstance(self.notifier, SlackNotifier):
            await self.notifier.aclose()
        if self._chart_prometheus is not None:
            self._chart_prometheus.close()
        if self._runner is not None:
            await self._runner.cleanup()
