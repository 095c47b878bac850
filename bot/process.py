"""One canary-bot process: Slack app (Socket Mode or HTTP), notifier, engine, web servers.

Transports: Socket Mode when ``SLACK_APP_TOKEN`` is set (no public endpoint needed); HTTP
mode (``/slack/events``) when only ``SLACK_SIGNING_SECRET`` is; console mode (events
printed as text) without any Slack credentials. A partial set is a configuration error
(``slack_problem``), never a silent console. The engine runs in every replica but acts
only while it holds the one leader Lease of the cluster (``canary-bot/canary-bot-leader``
unless deliberately changed), so an engine started anywhere else only stands by.

Several clusters (docs/multicluster.md): one front (``clusters:`` in the config, no
engine) takes every command and click and routes it to a cluster; each cluster runs an
engine-only process (``engine_only``) that needs only ``SLACK_BOT_TOKEN``, posts with it,
and opens no Socket Mode connection or Slack port, so every click reaches the front.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import build_app
from bot.authz import Authorizer, SlackGroupDirectory
from bot.clusters import ClusterNamedNotifier, Clusters
from bot.config import Authorization, AuthorizationRule, BotConfig, Environment
from bot.config_clusters import ClusterEntry
from bot.console import CONSOLE_USER, ConsoleNotifier
from bot.deps import Deps
from bot.handlers import slash_command
from bot.metrics import BotMetrics
from bot.notifier import SlackNotifier
from bot.operations import Operations
from bot.respond import Responder
from bot.slack_client import make_client
from bot.slack_port import SlackPort
from bot.web import EarlyAck, build_metrics_app, build_web_app, serve
from rollout.analysis import PrometheusProvider
from rollout.cache import FrontCache, front_cache
from rollout.controller import Controller, EngineSettings
from rollout.kube import Kube
from rollout.lease_namespace import check_lease_namespace
from rollout.models import Analysis, is_dns_label
from rollout.notify import Notifier
from rollout.preflight import parse_namespace_list
from rollout.store import ParsedReleases, ReleaseStore
from rollout.timeline import timeline_source

log = logging.getLogger("canary_bot.process")

CONSOLE_AUTHORIZATION = Authorization(
    rules=[AuthorizationRule(namespaces=["*"], verbs=["*"], users=[CONSOLE_USER])]
)


def default_identity() -> str:
    """This replica's name in the leader Lease: the Pod name (hostname) and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _given(value: SecretStr | None) -> bool:
    return value is not None and bool(value.get_secret_value().strip())


def slack_problem(env: Environment) -> str | None:
    """What is missing from a partial Slack configuration (None: complete, or none at all).

    A Secret with a mis-keyed or missing entry must not start a bot that looks healthy
    and never answers Slack; the message names the variable to set.
    """
    bot, app, secret = env.slack_bot_token, env.slack_app_token, env.slack_signing_secret
    empty = [
        name
        for name, value in (
            ("SLACK_BOT_TOKEN", bot),
            ("SLACK_APP_TOKEN", app),
            ("SLACK_SIGNING_SECRET", secret),
        )
        if value is not None and not _given(value)
    ]
    if empty:
        return f"{empty[0]} is set but empty; put the value in the canary-bot-slack Secret"
    if _given(bot) and not (_given(app) or _given(secret)):
        return (
            "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor "
            "SLACK_SIGNING_SECRET (HTTP mode) is; set one of them"
        )
    if not _given(bot) and (_given(app) or _given(secret)):
        given = "SLACK_APP_TOKEN" if _given(app) else "SLACK_SIGNING_SECRET"
        return f"{given} is set but SLACK_BOT_TOKEN is missing; set it to the bot token (xoxb-…)"
    return None


def engine_only_problem(env: Environment) -> str | None:
    """What an engine-only process lacks: only ``SLACK_BOT_TOKEN`` (it posts, never listens).

    The app token and signing secret are not used there (the front holds the Slack
    connection), so a Secret shared with the front may hold them.
    """
    if not _given(env.slack_bot_token):
        state = "is empty" if env.slack_bot_token is not None else "is missing"
        return (
            f"SLACK_BOT_TOKEN {state}; an engine-only process posts its cards with the bot "
            "token (xoxb-…) and needs nothing else from Slack"
        )
    return None


@dataclass
class BotProcess:
    """Builds and runs every part; ``start`` then ``stop``."""

    env: Environment
    config: BotConfig
    registry: CollectorRegistry
    # the Slack port (HTTP mode only) and the metrics/probes port
    port: int = 3000
    metrics_port: int = 9090
    host: str = "0.0.0.0"
    run_engine: bool = True
    # only the engine: posts to Slack with the bot token, no Socket Mode, no Slack port
    engine_only: bool = False
    leader_election: bool = True
    # Only releases in this namespace (None: every namespace the credentials can see).
    namespace: str | None = None
    lease_namespace: str = EngineSettings.lease_namespace
    lease_name: str = EngineSettings.lease_name
    keep_finished: int = EngineSettings.keep_finished
    identity: str = field(default_factory=default_identity)
    kube: Kube | None = None
    bolt: AsyncApp | None = None
    notifier: Notifier | None = None
    controller: Controller | None = None
    operations: Operations | None = None
    clusters: Clusters | None = None
    _runner: web.AppRunner | None = None
    _metrics_runner: web.AppRunner | None = None
    _socket: AsyncSocketModeHandler | None = None
    _engine_started: bool = False
    _chart_prometheus: PrometheusProvider | None = None
    _responder: Responder | None = None
    _slack_port: SlackPort | None = None
    _early_ack: EarlyAck | None = None
    # the front's watch of CanaryReleases and Canaries of its one cluster
    # (``rollout.cache.front_cache``); every cluster's in ``_front_caches``
    reads: FrontCache | None = None
    _front_caches: list[FrontCache] = field(default_factory=list)

    async def start(self) -> None:
        """Connect to the cluster and Slack, serve HTTP, start the engine."""
        if self.engine_only:
            await self._start_engine_only()
            return
        env, config = self.env, self.config
        transport = env.transport
        metrics = BotMetrics(self.registry)
        token = env.slack_bot_token.get_secret_value() if env.slack_bot_token else None
        client = make_client(token, env.api_url)
        if config.clusters and self.run_engine:
            raise ValueError(
                "a front with clusters: runs no engine; pass --no-engine and run "
                "`canary-bot run --engine-only` in each cluster (docs/multicluster.md)"
            )
        # a front of several clusters reaches them through clusters:, not KUBECONFIG's one
        kube = None if config.clusters else (self.kube or Kube.connect(env.kubeconfig))
        self.kube = kube
        self.notifier = (
            ConsoleNotifier() if transport == "console" else self._slack_notifier(client, metrics)
        )
        self.clusters = self._clusters(client, transport, kube)
        self.operations = self.clusters.fallback()
        deps = Deps(clusters=self.clusters, config=config, metrics=metrics, client=client)
        if transport != "console":
            # HTTP requests are verified by the web layer in front of Bolt (bot/web.py)
            self._responder = Responder(proxy=client.proxy, ssl=client.ssl)
            self.bolt = build_app(deps, responder=self._responder)
            self._early_ack = slash_command.early_acker(deps)
        if kube is not None and self.run_engine and self.leader_election:
            await check_lease_namespace(kube, self.lease_namespace, self.lease_name)
        await self._serve(transport)
        if transport == "socket" and self.bolt is not None and env.slack_app_token is not None:
            self._socket = AsyncSocketModeHandler(
                self.bolt, env.slack_app_token.get_secret_value(), web_client=client
            )
            await self._socket.connect_async()  # type: ignore[no-untyped-call]  # Bolt's stub
        if kube is not None and self.run_engine:
            await self._start_engine(kube)
        self._engine_started = True
        _freeze_startup_heap()
        log.info("canary-bot running (%s transport)", transport)

    def _slack_notifier(self, client: AsyncWebClient, metrics: BotMetrics) -> SlackNotifier:
        # the end-of-rollout chart reads the same Prometheus as the analysis
        self._chart_prometheus = PrometheusProvider(
            self.env.prometheus_url or EngineSettings.prometheus_url, self.config.metric_templates
        )
        return SlackNotifier(
            client,
            self.config.channels,
            metrics=metrics,
            timelines=timeline_source(self._chart_prometheus),
        )

    def _clusters(self, client: AsyncWebClient, transport: str, kube: Kube | None) -> Clusters:
        """The clusters this front serves: its one ``kube``, or each of ``clusters:``."""
        # at a terminal the operator acts with their own kube credentials
        rules = CONSOLE_AUTHORIZATION if transport == "console" else self.config.authorization
        groups = SlackGroupDirectory(client)
        if kube is not None:
            self.reads, reads = self._front_reads(kube)
            operations = Operations(
                config=self.config,
                store=ReleaseStore(reads, ParsedReleases()),
                kube=reads,
                authorizer=Authorizer(rules, groups, self.config.cluster),
                scope=self.namespace,
            )
            return Clusters.one(operations, self.config.cluster)

        def build(entry: ClusterEntry) -> Operations:
            # a context of the front's kubeconfig, or a file of the cluster's own
            cluster_kube = Kube.connect(entry.kubeconfig or self.env.kubeconfig, entry.context)
            _, reads = self._front_reads(cluster_kube)
            return Operations(
                # releases started here name their cluster (the card, the buttons)
                config=self.config.model_copy(update={"cluster": entry.name}),
                store=ReleaseStore(reads, ParsedReleases()),
                kube=reads,
                authorizer=Authorizer(rules, groups, entry.name, named=True),
                scope=self.namespace,
            )

        return Clusters.several(self.config.clusters, build)

    def _front_reads(self, kube: Kube) -> tuple[FrontCache, Kube]:
        """A started watch of one cluster's releases and Canaries, and the view of
        ``kube`` that reads from it: commands read no LIST or GET decoded per command."""
        cache = front_cache(kube, self.namespace)
        cache.start()
        self._front_caches.append(cache)
        return cache, kube.cached(cache)

    async def _start_engine_only(self) -> None:
        """An engine in one cluster: posts with the bot token; no Slack connection, no
        Slack port (the front has them), the metrics and probes port only."""
        env = self.env
        kube = self.kube = self.kube or Kube.connect(env.kubeconfig)
        token = env.slack_bot_token.get_secret_value() if env.slack_bot_token else None
        client = make_client(token, env.api_url)
        self.notifier = self._slack_notifier(client, BotMetrics(self.registry))
        if self.leader_election:
            await check_lease_namespace(kube, self.lease_namespace, self.lease_name)
        await self._serve("engine-only")
        await self._start_engine(kube)
        self._engine_started = True
        log.info("canary-bot engine running (posts with the bot token; no Slack connection)")

    async def _serve(self, transport: str) -> None:
        """The metrics port always; the Slack port only where Slack sends (HTTP mode)."""
        secret = self.env.slack_signing_secret
        self._metrics_runner = await serve(
            build_metrics_app(
                self.registry,
                readiness={"slack": self._slack_ready, "engine": lambda: self._engine_started},
            ),
            self.host,
            self.metrics_port,
        )
        if transport == "http":
            signing_secret = secret.get_secret_value() if secret is not None else ""
            bolt, loop, early_ack = self.bolt, asyncio.get_running_loop(), self._early_ack
            # its own thread and loop: acks do not wait for the work on this one
            self._slack_port = SlackPort(
                lambda: build_web_app(bolt, signing_secret, bolt_loop=loop, early_ack=early_ack),
                self.host,
                self.port,
            )
            await self._slack_port.start()
            self._runner = self._slack_port.runner

    async def _start_engine(self, kube: Kube) -> None:
        assert self.notifier is not None
        cluster = self.config.cluster
        # an engine-only process (one of several clusters) names its cluster on every
        # card, so their buttons send clicks back to it whatever the object says
        stamp = self.engine_only and is_dns_label(cluster)
        named = ClusterNamedNotifier(self.notifier, cluster) if stamp else None
        self.controller = Controller(
            kube,
            named or self.notifier,
            EngineSettings(
                prometheus_url=self.env.prometheus_url or EngineSettings.prometheus_url,
                metric_templates=self.config.metric_templates,
                cluster=self.config.cluster,
                leader_election=self.leader_election,
                namespace=self.namespace,
                lease_namespace=self.lease_namespace,
                lease_name=self.lease_name,
                keep_finished=self.keep_finished,
                webhook_allow_cidrs=tuple(self.config.webhooks.allow_cidrs),
                webhook_deny_cidrs=tuple(self.config.webhooks.deny_cidrs),
                secret_namespace=self.config.webhooks.secret_namespace,
                # canary-bot's own namespace is where its Lease lives
                own_namespace=self.lease_namespace,
                protected_namespaces=parse_namespace_list(self.env.canary_bot_protected_namespaces),
            ),
            self.identity,
            registry=self.registry,
            profiles=self._profile,
        )
        await self.controller.start()
        if self.reads is not None:  # its Deployments, Ingresses, routes: while it leads
            self.reads.share(self.controller.cache)

    def _profile(self, name: str) -> Analysis | None:
        """The analysis profile a Canary names (``spec.profile``), None when there is none."""
        return self.config.profiles.get(name)

    async def _slack_ready(self) -> bool:
        """Socket Mode: connected; HTTP mode: the signing secret is loaded and served."""
        transport = self.env.transport
        if self.engine_only:  # posts only: ready once the engine runs
            return True
        if transport == "socket":
            # the client's is_connected is a coroutine: awaited, not merely called
            return self._socket is not None and bool(await self._socket.client.is_connected())
        if transport == "http":
            return self._runner is not None and _given(self.env.slack_signing_secret)
        return True

    def banner(self) -> str:
        """One line on what this process does (printed at start in console mode)."""
        where = self.kube.server if self.kube is not None else "the cluster"
        scope = f"namespace {self.namespace}" if self.namespace else "every namespace"
        if not self.run_engine:
            engine = (
                "front only: no engine runs here, releases advance only where a canary-bot "
                "engine runs (pass --engine to run one; it stands by while another holds "
                f"the Lease {self.lease_namespace}/{self.lease_name})"
            )
        elif self.leader_election:
            engine = (
                f"engine on: it acts only while it holds the Lease "
                f"{self.lease_namespace}/{self.lease_name}, and stands by while another does"
            )
        else:
            engine = "engine on, without leader election: it acts at once"
        return f"canary-bot console against {where} ({scope}); {engine}."

    @property
    def bound_port(self) -> int:
        """The Slack port actually listened on (HTTP mode; useful with port 0)."""
        return _bound(self._runner, self.port)

    @property
    def bound_metrics_port(self) -> int:
        """The metrics/probes port actually listened on."""
        return _bound(self._metrics_runner, self.metrics_port)

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
        if self._slack_port is not None:
            await self._slack_port.stop()
        for cache in self._front_caches:
            cache.stop()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self._responder is not None:  # after the web runner: no request answers later
            await self._responder.aclose()
        if self.clusters is not None and self.kube is None:  # the front's own connections
            for operations in self.clusters.loaded:
                operations.kube.close()


def _freeze_startup_heap() -> None:
    """Keep what exists once the bot runs (imported modules, clients, schemas: it lives
    as long as the process) out of the garbage collector's full collections, which
    stop every thread, the Slack port's too: measured, 100 ms each before and 16 ms
    after. Once per process (a second bot in a test run freezes nothing more)."""
    global _heap_frozen
    if _heap_frozen:
        return
    _heap_frozen = True
    gc.collect()
    gc.freeze()


_heap_frozen = False


def _bound(runner: web.AppRunner | None, port: int) -> int:
    assert runner is not None, "not serving that port"
    for address in runner.addresses:
        return int(address[1])
    return port
