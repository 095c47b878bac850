"""``advance``: load a CanaryRelease, observe, decide, act, store the decision, report.

Idempotent by construction: everything is re-read on every call, the decision is a pure
function of the stored status and those observations, every action converges (create
if missing, patch to a value), and the status is written with the resourceVersion that
was read. The decision (phase, reason, measured values) is stored before any destructive
action: an ending sends traffic back to stable, stores the outcome (``StoreDecision``),
and only then deletes the canary. A crash at any line followed by another call reaches
the same outcome. The post-rollout webhooks follow the canary's deletion;
``status.postRolloutDue``, stored with the outcome, makes an ending interrupted anywhere
after that call them when it converges (at least once; twice only if the engine dies
between calling and recording).

Delivering the outbox (``publish``, then ``store_delivery``) is separate from ``advance``:
``rollout.outbox`` runs it outside the per-release lock, so a slow or failing Slack never
delays the next advance.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from rollout.analysis import MetricProvider, QueryContext, run_checks
from rollout.decide import (
    Action,
    Checks,
    CheckStage,
    ClusterState,
    Decision,
    DeleteCanary,
    EnsureCanary,
    HookCheck,
    Measurement,
    NotifyHooks,
    PromoteTarget,
    RevertTarget,
    SetWeight,
    StoreDecision,
    decide,
    plan_checks,
    rollback_due,
)
from rollout.egress import error_text
from rollout.failpoints import failpoint
from rollout.hold import promoting_release, set_paused
from rollout.kube import Conflict, JsonObject, Kube, KubeError
from rollout.models import (
    CanaryRelease,
    CanaryReleaseStatus,
    NotificationState,
    Phase,
    RolloutEvent,
    Webhook,
    WebhookType,
)
from rollout.notify import Notifier, undelivered
from rollout.owner import owned_by
from rollout.preflight import check_start, protected_refusal
from rollout.revisions import stable_images_of, template_is_revision
from rollout.router import Router
from rollout.routers.select import ReleaseRouter
from rollout.store import InvalidRelease, ReleaseStore
from rollout.webhooks import WebhookPayload, WebhookResult, WebhookRunner, payload
from rollout.workloads import CanaryWorkloads, container_images, readiness

_PROMOTION = (Phase.PROMOTING, Phase.FINALISING)

log = logging.getLogger("canary_bot.engine")

Clock = Callable[[], datetime]

# A notifier gets this long per call; Slack trouble must never stall a rollout.
NOTIFY_TIMEOUT = 10.0


def utc_now() -> datetime:
    """The wall clock, in UTC, to the millisecond (what status timestamps keep)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class AdvanceStats:
    """What one ``advance`` did (for metrics and benchmarks)."""

    seconds: float = 0.0
    actions: int = 0
    wrote_status: bool = False
    phase: str = ""
    checks: tuple[Measurement, ...] = ()


class Engine:
    """Runs ``advance`` for one release at a time; the scheduler decides when."""

    def __init__(
        self,
        kube: Kube,
        metrics: MetricProvider,
        *,
        notifier: Notifier,
        webhooks: WebhookRunner | None = None,
        router: Router | None = None,
        clock: Clock = utc_now,
        cluster: str = "",
        protected_namespaces: frozenset[str] = frozenset(),
    ) -> None:
        self.kube = kube
        self.store = ReleaseStore(kube)
        self.metrics = metrics
        self.webhooks = webhooks or WebhookRunner()
        self.router: Router = router or ReleaseRouter(kube)
        self.workloads = CanaryWorkloads(kube)
        self.notifier = notifier
        self.clock = clock
        self.cluster = cluster
        self.protected_namespaces = protected_namespaces
        self.on_advanced: Callable[[CanaryRelease, AdvanceStats], None] | None = None
        # called with the stored object after each status write (to deliver its events)
        self.on_stored: Callable[[CanaryRelease], None] | None = None
        # the delivery record a status write of ``namespace/name`` carries (rollout.outbox)
        self.fold_delivery: Callable[[str, NotificationState], NotificationState] | None = None

    async def advance(self, namespace: str, name: str) -> CanaryRelease | None:
        """One step of the state machine for ``namespace/name``; None if it is gone."""
        started = time.perf_counter()
        raw = await self.store.get_raw(namespace, name)
        if raw is None:
            return None
        refusal = protected_refusal(namespace, self.protected_namespaces)
        if refusal is not None:
            await self._refuse_invalid(raw, refusal, "ProtectedNamespace")
            return None
        try:
            release = self.store.parse(raw)
        except InvalidRelease as exc:
            await self._refuse_invalid(raw, f"invalid spec: {exc}")
            return None
        if release.metadata.deletion_timestamp is not None:
            return release
        now = self.clock()
        observed = await self._observe_cluster(release)
        stage = plan_checks(release, observed, now)
        checks = await self._run_checks(release, stage, rollback_due(release, now))
        try:
            decision = decide(release, observed, checks, now)
        except Exception as exc:  # one release's data must not stall the rest
            log.exception("cannot decide %s", release.key)
            # Failed: the next advance sends traffic back to stable and removes the canary.
            reason = f"the engine cannot process this release ({type(exc).__name__}: {exc})"
            await self._refuse_invalid(raw, reason[:1000], "Unprocessable", release.status)
            return None
        managed = release.spec.canary_ref is not None
        target = None
        if _needs_target(decision.actions, managed):
            target = await self.workloads.target(release)
        stats = AdvanceStats(
            actions=sum(not isinstance(a, StoreDecision) for a in decision.actions),
            phase=decision.status.phase.value,
            checks=checks.metrics,
        )
        unchanged = decision.status == release.status
        for action in _with_store_last(decision.actions, unchanged):
            point = f"{decision.status.phase.value}:{type(action).__name__}"
            if isinstance(action, StoreDecision):
                release = await self._store(release, decision)
                stats.wrote_status = True
            elif isinstance(action, NotifyHooks):
                release = await self._notify_hooks(release, action)
            else:
                await self._act(release, action, target)
            failpoint(point)
        if stats.wrote_status:
            await self._event_hooks(release, decision.new_events)
        stats.seconds = time.perf_counter() - started
        if self.on_advanced is not None:
            self.on_advanced(release, stats)
        return release

    # -- observe ----------------------------------------------------------------------------

    async def _observe_cluster(self, release: CanaryRelease) -> ClusterState:
        target, canary, weight, route_waiting = await asyncio.gather(
            self.workloads.target(release),
            self.workloads.canary(release),
            self.router.get_weight(release),
            self._route_waiting(release),
        )
        problems: tuple[str, ...] = ()
        if release.status.phase == Phase.INITIALIZING:
            meta = release.metadata
            problems = tuple(
                await check_start(self.kube, meta.namespace, meta.name, release.spec, meta.uid)
            )
        if not owned_by(canary, release):
            canary = None  # another release's canary (e.g. a refused duplicate): not ours
        target_state = readiness(target)
        canary_state = readiness(canary)
        target_images = container_images(target)
        if release.spec.canary_ref is not None and release.status.phase not in _PROMOTION:
            # A managed (paused) target's template already holds the new revision; its
            # pods run the stable images the release was opened against.
            target_images = stable_images_of(release.metadata.annotations) or target_images
        return ClusterState(
            target_exists=target is not None,
            target_images=target_images,
            target_ready=target_state.ready,
            target_message=target_state.message,
            canary_exists=canary is not None,
            canary_ready=canary_state.ready,
            canary_message=canary_state.message,
            router_weight=weight,
            problems=problems,
            target_progressed_at=target_state.progressed_at,
            route_waiting=route_waiting,
        )

    async def _route_waiting(self, release: CanaryRelease) -> str:
        """Why the route is not in force yet, while analysing (a step's metrics wait)."""
        if release.status.phase != Phase.PROGRESSING:
            return ""
        return await self.router.waiting_for(release)

    # -- checks -----------------------------------------------------------------------------

    async def _hooks(self, release: CanaryRelease, kind: WebhookType) -> tuple[HookCheck, ...]:
        hooks: list[Webhook] = release.spec.analysis.webhooks_of(kind)
        if not hooks:
            return ()
        results: list[WebhookResult] = await self.webhooks.call_all(hooks, hook_body(release))
        return tuple(
            HookCheck(r.name, r.type, r.ok, r.message, mute_alert=hook.mute_alert)
            for hook, r in zip(hooks, results, strict=True)
        )

    async def _run_checks(
        self, release: CanaryRelease, stage: CheckStage, ask_rollback: bool
    ) -> Checks:
        """The manual-rollback gates when due (an open one makes the rest moot), then the
        checks of ``stage``."""
        rollback = await self._hooks(release, "rollback") if ask_rollback else ()
        if any(h.ok for h in rollback):
            return Checks(rollback=rollback)
        checks = await self._stage_checks(release, stage)
        return dataclasses.replace(checks, rollback=rollback)

    async def _stage_checks(self, release: CanaryRelease, stage: CheckStage) -> Checks:
        if stage == CheckStage.PRE_ROLLOUT:
            rollout_gates = await self._hooks(release, "confirm-rollout")
            if any(not g.ok for g in rollout_gates):
                return Checks(stage=stage, gates=rollout_gates)
            pre = await self._hooks(release, "pre-rollout")
            return Checks(stage=stage, gates=rollout_gates, hooks=pre)
        if stage == CheckStage.ANALYSIS:
            results, hooks = await asyncio.gather(
                run_checks(self.metrics, QueryContext.of(release), release.spec.analysis.metrics),
                self._hooks(release, "rollout"),
            )
            gates: tuple[HookCheck, ...] = ()
            at_max = release.status.canary_weight >= release.spec.analysis.max_weight
            if not at_max and all(r.ok for r in results) and all(h.ok for h in hooks):
                gates = await self._hooks(release, "confirm-traffic-increase")
            return Checks(
                stage=stage,
                metrics=tuple(results),
                hooks=hooks,
                gates=gates,
            )
        if stage == CheckStage.CONFIRM_PROMOTION:
            return Checks(stage=stage, gates=await self._hooks(release, "confirm-promotion"))
        return Checks()

    # -- act --------------------------------------------------------------------------------

    async def _act(self, release: CanaryRelease, action: Action, target: JsonObject | None) -> None:
        if isinstance(action, SetWeight):
            if action.weight == 0 and await self.router.get_weight(release) is None:
                return
            await self.router.reconcile(release, action.weight)
        elif isinstance(action, EnsureCanary):
            if target is None:
                raise KubeError(
                    404, "NotFound", f"Deployment {release.spec.target_ref.name} not found"
                )
            await self.workloads.ensure_canary(release, target)
            if await self.router.get_weight(release) is None:
                await self.router.reconcile(release, 0)
        elif isinstance(action, RevertTarget) and release.spec.canary_ref:
            # managed: a rollback during promotion stops that rollout where it is
            await set_paused(
                self.kube, release.metadata.namespace, release.spec.target_ref.name, True
            )
        elif isinstance(action, PromoteTarget) and release.spec.canary_ref:
            await self._unpause_for(release, target)
        elif isinstance(action, PromoteTarget | RevertTarget):
            if container_images(target) != {**container_images(target), **action.images}:
                await self.workloads.set_target_images(release, action.images)
        elif isinstance(action, DeleteCanary):
            if (
                release.spec.canary_ref
                and target is not None
                and (not target["spec"].get("paused") or promoting_release(target))
            ):
                # the release ended: the managed target is protected again at once
                await set_paused(
                    self.kube, release.metadata.namespace, release.spec.target_ref.name, True
                )
            await self.router.finalize(release)
            await self.workloads.delete_canary(release)

    async def _unpause_for(self, release: CanaryRelease, target: JsonObject | None) -> None:
        """Managed: the template is the owner's; promotion lets the Deployment controller
        roll it out, marked as this release's promotion. Only the template the release
        analysed: a newer one would roll out unanalysed, so the Deployment stays paused
        (the revision loop supersedes the release). The apply carries the version read,
        so a template changed since is refused, not rolled."""
        if target is None:
            return
        meta = release.metadata
        if not template_is_revision(meta.labels, dict(release.spec.images), target):
            log.info("%s: the template moved on; not unpausing for it", release.key)
            return
        await set_paused(
            self.kube,
            meta.namespace,
            release.spec.target_ref.name,
            False,
            promoting=meta.name,
            resource_version=str(target["metadata"].get("resourceVersion", "")),
        )

    async def _notify_hooks(self, release: CanaryRelease, action: NotifyHooks) -> CanaryRelease:
        """Call the hooks, then clear ``postRolloutDue``: at least once, and once unless the
        engine dies between the call and the record. A hook's failure is logged only
        (Flagger's post-rollout semantics)."""
        hooks = release.spec.analysis.webhooks_of(action.type)
        if hooks:
            results = await self.webhooks.call_all(hooks, hook_body(release))
            for result in results:
                if not result.ok:
                    log.warning("webhook %s failed: %s", result.name, result.message)
        if release.status.post_rollout_due:
            release = await self.store.clear_post_rollout_due(release)
        return release

    async def _store(self, release: CanaryRelease, decision: Decision) -> CanaryRelease:
        """Write the decided status, then tell ``kubectl describe`` what happened."""
        status = decision.status
        if self.fold_delivery is not None:
            meta = release.metadata
            carried = self.fold_delivery(f"{meta.namespace}/{meta.name}", status.notification)
            if carried is not status.notification:
                status = status.model_copy(update={"notification": carried})
        release = await self.store.write_status(release, status)
        if self.on_stored is not None:
            self.on_stored(release)
        for event in decision.new_events:
            await self._kube_event(release, event.type, event.message, event.severity != "info")
        return release

    # -- report -----------------------------------------------------------------------------

    async def _kube_event(
        self, release: CanaryRelease, reason: str, message: str, warning: bool
    ) -> None:
        involved = {
            "apiVersion": "canarybot.io/v1alpha1",
            "kind": "CanaryRelease",
            "metadata": {
                "name": release.metadata.name,
                "namespace": release.metadata.namespace,
                "uid": release.metadata.uid,
                "resourceVersion": release.metadata.resource_version,
            },
        }
        try:
            await self.kube.record_event(involved, reason, message, warning=warning)
        except KubeError as exc:  # an Event is a courtesy; never fail a step for it
            log.warning("could not record event on %s: %s", release.key, exc)

    async def publish(self, release: CanaryRelease) -> NotificationState | None:
        """Hand undelivered events to the notifier; its new state, or None if it failed.

        Bounded by ``NOTIFY_TIMEOUT``; the events stay in the outbox until the state is
        stored (``store_delivery``), so a failure only means they are offered again.
        """
        events = undelivered(release)
        try:
            # asyncio.timeout, not wait_for: a cancel must win even as the publish ends
            async with asyncio.timeout(NOTIFY_TIMEOUT):
                return await self.notifier.publish(release, events)
        except Exception as exc:  # Slack down or slow: the events stay in the outbox
            log.warning(
                "notifier failed for %s: %s (events stay in the outbox)",
                release.key,
                error_text(exc),
            )
            return None

    async def store_delivery(
        self, namespace: str, name: str, state: NotificationState
    ) -> CanaryRelease | None:
        """Record what the notifier confirmed on the current object (re-read, so it
        never conflicts with the ``advance`` that ran meanwhile); None if unchanged."""
        release = await self.store.get(namespace, name)
        if release is None:
            return None
        stored = release.status.notification
        if state == stored or state.delivered_seq < stored.delivered_seq:
            return None
        try:
            return await self.store.write_notification(release, state)
        except Conflict:
            # Someone changed the object; the next offer re-delivers only what is left.
            return None

    async def _event_hooks(self, release: CanaryRelease, events: tuple[RolloutEvent, ...]) -> None:
        """Flagger's ``event`` webhooks: every event, fire and forget (failures are logged)."""
        hooks = release.spec.analysis.webhooks_of("event")
        if not hooks or not events:
            return
        for event in events:
            body = hook_body(release, event)
            for result in await self.webhooks.call_all(hooks, body):
                if not result.ok:
                    log.warning("event webhook %s failed: %s", result.name, result.message)

    async def _refuse_invalid(
        self,
        raw: JsonObject,
        message: str,
        reason: str = "InvalidSpec",
        base: CanaryReleaseStatus | None = None,
    ) -> None:
        """A release the engine will not run: say why in status and an Event, change nothing.

        ``base`` is the status to keep (weight, thread) when the release could be read.
        """
        current = raw.get("status")
        if isinstance(current, dict) and current.get("phase") == Phase.FAILED.value:
            return  # already refused (or ended): keep what its status says
        now = self.clock()
        failed = {
            "phase": Phase.FAILED,
            "message": message,
            "reason": reason,
            "finished_at": now,
            "phase_since": now,
        }
        status = (base or CanaryReleaseStatus()).model_copy(update=failed)
        try:
            await self.store.write_raw_status(raw, status)
        except KubeError as exc:
            log.warning("could not write the status of a refused release: %s", exc)
        try:  # the Event tells the story even when the status could not be written
            await self.kube.record_event(raw, reason, f"Refused: {message}", warning=True)
        except KubeError as exc:
            log.warning("could not record the event of a refused release: %s", exc)


def hook_body(release: CanaryRelease, event: RolloutEvent | None = None) -> WebhookPayload:
    """Flagger's webhook payload for ``release`` as it is now (with ``event``: an event
    hook's, which adds the event's message and type)."""
    told = None
    if event is not None:
        told = (event.message, "Warning" if event.severity != "info" else "Normal")
    return payload(
        release.spec.target_ref.name,
        release.metadata.namespace,
        release.status.phase,
        spec_checksum(release),
        {},
        event=told,
    )


def spec_checksum(release: CanaryRelease) -> str:
    """A hash of what is being released (images and analysis), like Flagger's checksum."""
    spec = release.spec.model_dump(mode="json", by_alias=True, exclude={"control_requests"})
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def _with_store_last(actions: tuple[Action, ...], unchanged: bool) -> Iterator[Action]:
    """The decision's actions, with the status write where the decision put it, or last
    (a decision that changed nothing in status writes nothing)."""
    placed = any(isinstance(a, StoreDecision) for a in actions)
    for action in actions:
        if not (unchanged and isinstance(action, StoreDecision)):
            yield action
    if not unchanged and not placed:
        yield StoreDecision()


def _needs_target(actions: tuple[Action, ...], managed: bool) -> bool:
    if any(isinstance(a, EnsureCanary | PromoteTarget | RevertTarget) for a in actions):
        return True
    # a managed release's target is paused again as its canary is deleted
    return managed and any(isinstance(a, DeleteCanary) for a in actions)
