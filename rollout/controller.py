"""The rollout scheduler: when to call ``advance``, and only on the leader.

- An apscheduler interval job per active CanaryRelease ticks at its analysis interval.
- A watch on CanaryReleases triggers an immediate ``advance`` whenever a spec changes
  (a new release, a control request from Slack), so an abort reaches the Ingress at once
  rather than at the next interval.
- On becoming leader it lists every release and resumes each where its status says.
- ``advance`` never runs twice at once for one release; triggers that arrive meanwhile
  are coalesced into one more run. Events are delivered afterwards, outside that lock
  (``rollout.outbox``), so Slack's speed never delays an advance.
- Canaries: a loop next to the scheduler turns revisions of managed Deployments into
  CanaryReleases (rollout/revisions.py), on the leader only and through the same fence.
- Every write of the engine goes through a fenced ``Kube``: immediately before each
  mutating request it asks whether this process still leads and renewed its Lease within
  the renew deadline (``LeaderElector.write_budget``), and refuses otherwise. Losing the
  lead also cancels every advance and delivery in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry

from rollout.analysis import MetricProvider, PrometheusProvider
from rollout.cache import EngineCache, engine_cache
from rollout.egress import EgressPolicy
from rollout.engine import Clock, Engine, utc_now
from rollout.hooksecrets import KubeSecrets
from rollout.kube import (
    DEFAULT_TIMEOUT,
    DEPLOYMENTS,
    RELEASES,
    Conflict,
    JsonObject,
    Kube,
    KubeError,
    NotLeading,
)
from rollout.leader import LeaderElector
from rollout.metrics import EngineMetrics
from rollout.models import FINAL_PHASES, CanaryRelease, parse_duration
from rollout.notify import Notifier, undelivered
from rollout.outbox import Outbox
from rollout.preflight import protected_namespaces
from rollout.retention import DEFAULT_KEEP, Retention, needs_advance
from rollout.revisions import ProfileLookup, Revisions
from rollout.shards import release_selector
from rollout.webhooks import WebhookRunner

log = logging.getLogger("canary_bot.controller")

# Never tick one release more often than this, whatever its spec says.
MIN_TICK_SECONDS = 1.0
# advance runs in a row for one trigger at most (coalesced triggers, conflicts)
RERUNS = 5
# on shutdown, how long an advance in flight may take to finish its step
STOP_GRACE = 5.0
# apscheduler's executor logs two INFO lines per job run: every tick of every release
# (20 lines/s at 100 releases, a few percent of the engine's CPU). Warnings still show.
_TICK_LOG = "apscheduler.executors.default"


@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs (from the environment and the config file)."""

    prometheus_url: str = "http://127.0.0.1:9090"
    metric_templates: Mapping[str, str] = field(default_factory=dict)
    namespace: str | None = None
    leader_election: bool = True
    # One Lease per cluster wherever an engine runs (in a Pod or at a terminal), so a
    # second engine can only ever stand by. Change it only for a deliberately separate
    # installation (and its leader-election Role) in the same cluster.
    lease_namespace: str = "canary-bot"
    lease_name: str = "canary-bot-leader"
    # lease > renew deadline > retry period, as client-go (see rollout.leader)
    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0
    # upper bound between two ticks of one release, so readiness and promotion are seen
    # promptly even with a long analysis interval
    max_tick_seconds: float = 10.0
    cluster: str = ""
    # finished releases kept per target Deployment; the leader deletes older ones
    keep_finished: int = DEFAULT_KEEP
    # Webhook egress (rollout/egress.py) and where urlFrom/metadataFrom Secrets live
    # (rollout/hooksecrets.py; None: the lease namespace, i.e. canary-bot's own).
    webhook_allow_cidrs: tuple[str, ...] = ()
    webhook_deny_cidrs: tuple[str, ...] = ()
    secret_namespace: str | None = None
    # the engine's own namespace (where its Lease lives) and more namespaces it never acts in
    own_namespace: str = ""
    protected_namespaces: tuple[str, ...] = ()
    # Reads from watches instead of GETs (rollout/cache.py); off: every read is a request.
    watch_cache: bool = True
    # Only releases labelled canarybot.io/shard=<shard>; None: only unlabelled ones.
    shard: str | None = None
    # Canaries (rollout/revisions.py): how often each managed Deployment is compared
    # with its stable revision; off: Canaries are ignored (Deployments stay as they are).
    revisions: bool = True
    revision_interval_seconds: float = 2.0


def _own_namespace(settings: EngineSettings) -> str:
    """canary-bot's own namespace, to protect; none when the engine is scoped to it.

    An engine scoped with ``--namespace`` to the very namespace it runs in (a
    single-namespace install next to the apps) exists to release apps there; the admission
    policy and RBAC, not this list, then keep its own Deployment out of reach.
    """
    if settings.namespace is not None and settings.namespace == settings.own_namespace:
        return ""
    return settings.own_namespace


def webhook_runner(kube: Kube, settings: EngineSettings) -> WebhookRunner:
    """The engine's webhook caller: the configured egress policy, Secrets read via ``kube``."""
    policy = EgressPolicy.from_strings(settings.webhook_allow_cidrs, settings.webhook_deny_cidrs)
    namespace = settings.secret_namespace or settings.lease_namespace
    return WebhookRunner(policy=policy, secrets=KubeSecrets(kube, namespace))


def watch_cache(kube: Kube, settings: EngineSettings) -> EngineCache:
    """The informers: CanaryReleases (the controller's watch) and, with the watch cache,
    the Deployments, Services and Ingresses the engine then reads from them."""
    return engine_cache(
        kube, settings.namespace, release_selector(settings.shard), workloads=settings.watch_cache
    )


def build_engine(
    kube: Kube,
    notifier: Notifier,
    settings: EngineSettings,
    *,
    metrics: MetricProvider,
    webhooks: WebhookRunner,
    clock: Clock,
) -> Engine:
    """The engine over ``kube`` (the fenced view), refusing to act in protected namespaces."""
    return Engine(
        kube,
        metrics,
        notifier=notifier,
        webhooks=webhooks,
        clock=clock,
        cluster=settings.cluster,
        protected_namespaces=protected_namespaces(
            _own_namespace(settings), settings.protected_namespaces
        ),
    )


@dataclass
class _KeyLock:
    """One release's lock and how many tasks hold or await it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Controller:
    """Leader election + watch + scheduler around one ``Engine``."""

    def __init__(
        self,
        kube: Kube,
        notifier: Notifier,
        settings: EngineSettings,
        identity: str,
        *,
        metrics: MetricProvider | None = None,
        webhooks: WebhookRunner | None = None,
        clock: Clock = utc_now,
        registry: CollectorRegistry | None = None,
        profiles: ProfileLookup | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.identity = identity
        # every write of the engine and of retention goes through the leader's fence
        fenced = kube.fenced(self._write_budget)
        self.cache = watch_cache(kube, settings)
        self.cache.releases.handlers.append(self._release_event)
        self.engine = build_engine(
            fenced.cached(self.cache) if settings.watch_cache else fenced,
            notifier,
            settings,
            metrics=metrics or PrometheusProvider(settings.prometheus_url, settings.metric_templates),
            webhooks=webhooks or webhook_runner(kube, settings),
            clock=clock,
        )
        self.metrics: EngineMetrics | None = None
        if registry is not None:
            self.metrics = EngineMetrics(registry, kube.requests)
            self.engine.on_advanced = self.metrics.observe
        self._scheduler: AsyncIOScheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._locks: dict[str, _KeyLock] = {}
        self._again: set[str] = set()
        self._running: set[str] = set()  # releases with a run started or waiting
        self._generations: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.outbox = Outbox(
            self.engine.publish, self.engine.store_delivery, self._hold, self._may_act
        )
        self.engine.on_stored = self._stored
        self.engine.fold_delivery = self.outbox.fold
        self.leading = asyncio.Event()
        self._stopping = False
        self._elector: LeaderElector | None = None
        self.retention = Retention(fenced, settings.keep_finished, lambda: self.is_leader)
        self.revisions = Revisions(
            fenced,
            namespace=settings.namespace,
            interval=settings.revision_interval_seconds,
            profiles=profiles,
            clock=clock,
            cluster=settings.cluster,
        )
        self._revision_task: asyncio.Task[None] | None = None
        deployments = self.cache.informer(DEPLOYMENTS)
        if deployments is not None:  # a managed Deployment's change wakes its Canary at once
            deployments.handlers.append(self.revisions.wakeups.on_event)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Campaign for leadership (or lead at once when election is off)."""
        self._loop = asyncio.get_running_loop()
        if self.settings.leader_election:
            self._elector = LeaderElector(
                self.kube,
                self.settings.lease_namespace,
                self.settings.lease_name,
                self.identity,
                lease_seconds=self.settings.lease_seconds,
                renew_deadline_seconds=self.settings.renew_deadline_seconds,
                retry_seconds=self.settings.retry_seconds,
                on_started=self._start_leading,
                on_stopped=self._stop_leading,
            )
            self._elector.start()
        else:
            await self._start_leading()

    async def stop(self) -> None:
        """Start nothing new, let runs in flight finish their step (for up to
        ``STOP_GRACE`` s, still fenced by the Lease), then stop and hand the Lease back."""
        self._stopping = True
        self.cache.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_GRACE)
        await self.outbox.flush()  # while still leading: the next leader posts nothing twice
        if self._elector is not None:
            await self._elector.stop()
        else:
            await self._stop_leading()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.retention.wait()

    @property
    def is_leader(self) -> bool:
        """Whether this process currently runs rollouts."""
        return self.leading.is_set()

    def _write_budget(self) -> float:
        """The engine's write guard (see ``rollout.kube.WriteGuard``)."""
        if not self.leading.is_set():
            raise NotLeading(f"{self.identity} is not leading; not writing")
        if self._elector is None:
            return DEFAULT_TIMEOUT  # leader election off: this is the only replica
        return self._elector.write_budget()

    def _may_act(self) -> bool:
        try:
            self._write_budget()
        except NotLeading:
            return False
        return True

    @contextlib.asynccontextmanager
    async def _hold(self, key: str) -> AsyncIterator[None]:
        """The release's lock; kept in ``_locks`` only while someone holds or awaits it,
        so the map never outgrows the releases being worked on."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0 and self._locks.get(key) is entry:
                del self._locks[key]

    def _stored(self, release: CanaryRelease) -> None:
        """A status write happened: deliver its events (in the background)."""
        self.outbox.offer(f"{release.metadata.namespace}/{release.metadata.name}", release)

    async def _start_leading(self) -> None:
        tick_log = logging.getLogger(_TICK_LOG)
        if tick_log.level == logging.NOTSET:  # unless a level was chosen for it
            tick_log.setLevel(logging.WARNING)
        self._scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        self._scheduler.start()
        self.leading.set()
        if self.metrics is not None:
            self.metrics.leader.set(1)
        # The first lists happen in the informers' threads, which retry them until they
        # work: a leader whose API server refuses or fails a list must keep trying, not
        # stall its Lease renewals or die. Each start is a fresh term: a thread of an
        # earlier term still blocked in its request ends rather than being revived.
        self.cache.start()
        if self.settings.revisions:
            self._revision_task = asyncio.get_running_loop().create_task(self.revisions.run())

    async def _stop_leading(self) -> None:
        self.leading.clear()  # from here on the write guard refuses every engine write
        if self._revision_task is not None:
            self._revision_task.cancel()
            await asyncio.gather(self._revision_task, return_exceptions=True)
            self._revision_task = None
        if self.metrics is not None:
            self.metrics.leader.set(0)
        self.cache.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        # Cancel what is in flight: an advance must not go on to its next action.
        running = list(self._tasks)
        for task in running:
            task.cancel()
        await self.outbox.cancel_all()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        self._generations.clear()
        self.retention.clear()
        self._again.clear()
        self._locks.clear()

    # -- scheduling -------------------------------------------------------------------------

    async def _resync(self) -> str:
        """List every release, (re)schedule the active ones, run each once now."""
        result = await self.kube.request("GET", RELEASES.path(self.settings.namespace))
        listed = set()
        for obj in result.get("items", []):
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            if isinstance(meta, dict):
                listed.add(f"{meta.get('namespace')}/{meta.get('name')}")
            self._on_release(obj, force=True)
        # deleted while no watch was running (a watch gap, a new term): forget them too
        for key in set(self._generations) - listed:
            self._forget(key)
        return str(result.get("metadata", {}).get("resourceVersion", ""))

    def _on_release(self, obj: JsonObject, force: bool = False) -> None:
        """React to a release as listed or watched; a failure is that object's alone.

        The object is still handed to ``advance``, which marks one it cannot read as
        Failed with the reason (status and an Event); the other releases keep running.
        """
        try:
            self._react(obj, force)
        except Exception:  # isolation: the list or watch must go on
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            meta = meta if isinstance(meta, dict) else {}
            namespace, name = meta.get("namespace"), meta.get("name")
            log.exception("cannot schedule CanaryRelease %s/%s", namespace, name)
            if isinstance(namespace, str) and isinstance(name, str):
                self.trigger(namespace, name)

    def _react(self, obj: JsonObject, force: bool = False) -> None:
        meta = obj.get("metadata", {})
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        phase = (obj.get("status") or {}).get("phase", "")
        generation = int(meta.get("generation", 0))
        spec_changed = self._generations.get(key) != generation
        self._generations[key] = generation
        self.retention.observe(obj)
        if phase in FINAL_PHASES:
            status = obj.get("status") or {}
            delivered = int((status.get("notification") or {}).get("deliveredSeq", 0))
            if int(status.get("eventSeq", 0)) > delivered:
                # the end is not reported yet (e.g. Slack was down): keep offering it
                self._schedule(key, obj)
            else:
                self._unschedule(key)
                self._finished(key)
            # history: advanced again only to audit a late control request, never per resync
            if needs_advance(obj):
                self.trigger(meta["namespace"], meta["name"])
            return
        self._schedule(key, obj)
        if spec_changed or force:
            self.trigger(meta["namespace"], meta["name"])

    def _schedule(self, key: str, obj: JsonObject) -> None:
        if self._scheduler is None:
            return
        interval = self.settings.max_tick_seconds
        try:
            analysis = obj.get("spec", {}).get("analysis", {}) or {}
            interval = min(parse_duration(str(analysis.get("interval", "60s"))), interval)
        except (ValueError, AttributeError, TypeError):
            pass  # an unreadable spec ticks at the default; advance reports it
        interval = max(interval, MIN_TICK_SECONDS)
        job = self._scheduler.get_job(key)
        trigger_interval = getattr(job.trigger, "interval", None) if job is not None else None
        if trigger_interval is not None and trigger_interval.total_seconds() == interval:
            return
        namespace, name = key.split("/", 1)
        # Spread the releases over the interval: jobs created together (bulk creation, a
        # resync after a restart) would otherwise all tick in the same second.
        first = datetime.now(UTC) + timedelta(seconds=random.uniform(0, interval))
        self._scheduler.add_job(
            self._tick,
            "interval",
            seconds=interval,
            next_run_time=first,
            args=[namespace, name],
            id=key,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    def _forget(self, key: str) -> None:
        self._unschedule(key)
        self._generations.pop(key, None)
        self.retention.forget(*key.split("/", 1))
        self._again.discard(key)
        self.outbox.forget(key)
        if self.metrics is not None:
            namespace, name = key.split("/", 1)
            self.metrics.forget(namespace, name)

    def _finished(self, key: str) -> None:
        """A release that ended and was reported needs no delivery memory."""
        self._again.discard(key)
        self.outbox.forget(key)

    def _unschedule(self, key: str) -> None:
        if self._scheduler is not None and self._scheduler.get_job(key) is not None:
            self._scheduler.remove_job(key)

    def _tick_when_due(self, key: str, release: CanaryRelease) -> None:
        """Move the next tick to when the next step is due, if that comes first.

        A step that started late (a busy event loop, a slow API server) is due again one
        interval after its own start; the regular tick then comes a little too early, the
        step is not due, and it would wait one more whole interval (10 s of lag for
        a delay of 1 s). The interval job goes on from the moved tick.
        """
        last = release.status.last_step_at
        job = self._scheduler.get_job(key) if self._scheduler is not None else None
        if last is None or job is None or job.next_run_time is None:
            return
        due = last + timedelta(seconds=release.spec.analysis.interval_seconds)
        if datetime.now(UTC) < due < job.next_run_time:
            job.modify(next_run_time=due)

    async def _tick(self, namespace: str, name: str) -> None:
        # a coroutine job: apscheduler runs it on the event loop, not in a worker thread
        self.trigger(namespace, name)

    def trigger(self, namespace: str, name: str) -> None:
        """Run ``advance`` for a release soon (coalesced if one is running)."""
        if not self.is_leader or self._stopping:
            return
        key = f"{namespace}/{name}"
        if key in self._running:
            self._again.add(key)
            return
        # A lock held by a delivery storing its state (not by a run) must not swallow
        # the trigger: this run waits for it.
        self._running.add(key)
        task = asyncio.get_running_loop().create_task(self._run(namespace, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, namespace: str, name: str) -> None:
        # No leadership check here: the fenced Kube refuses each write of a process that
        # may no longer act, and losing the lead cancels this task.
        key = f"{namespace}/{name}"
        try:
            async with self._hold(key):
                await self._runs(namespace, name, key)
        finally:
            self._running.discard(key)

    async def _runs(self, namespace: str, name: str, key: str) -> None:
        """``advance`` until no trigger arrived meanwhile (at most ``RERUNS`` times)."""
        for _ in range(RERUNS):
            self._again.discard(key)
            try:
                release = await self.engine.advance(namespace, name)
                if release is None or (release.status.phase.is_final and not undelivered(release)):
                    self._unschedule(key)
                elif not release.status.phase.is_final:
                    self._tick_when_due(key, release)
                if release is not None and undelivered(release):
                    self.outbox.offer(key, release)  # e.g. Slack was down last time
            except NotLeading as exc:
                log.info("advance %s stopped: %s", key, exc)
                return
            except Conflict as exc:
                # the object changed since it was read (e.g. an abort just arrived):
                # decide again at once on what is there now
                log.info("advance %s: %s (deciding again)", key, exc)
                self._again.add(key)
            except KubeError as exc:
                log.warning("advance %s: %s (retrying next tick)", key, exc)
            except Exception:
                log.exception("advance %s failed (retrying next tick)", key)
            if key not in self._again:
                break

    # -- watch ------------------------------------------------------------------------------

    def _release_event(self, kind: str, obj: JsonObject) -> None:
        """The CanaryRelease informer's handler (its thread): hand the event to the loop.

        A listed release is run at once (as after a restart: resume where its status
        says); a watched one when its spec changed; a resync only reschedules.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if kind == "DELETED":
            meta = obj.get("metadata", {})
            loop.call_soon_threadsafe(self._forget, f"{meta.get('namespace')}/{meta.get('name')}")
        else:
            loop.call_soon_threadsafe(self._on_release, obj, kind == "LISTED")
