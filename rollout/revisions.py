"""Revisions of managed Deployments become CanaryReleases.

A ``Canary`` puts one Deployment under protection. This module keeps that Deployment
``spec.paused: true`` and turns each change of its pod template into one release:

- The pause is a server-side apply of ``spec.paused`` alone, field manager
  ``canary-bot``. A GitOps tool (or ``kubectl apply``) whose manifest does not set
  ``paused`` neither owns nor resets it, even with ``--force-conflicts``; canary-bot owns
  nothing else of the Deployment.
- Adoption: the template the pods run is the stable one, recorded as a hash in the
  Canary's status. A Deployment still rolling out is adopted when that rollout ends (all
  pods on the current template), so the stable side is never a half-rolled mix; one
  whose pods are all on the current template is adopted at once, ready or not (no ready
  pods: the template is still what they run).
- A template that differs from the stable one, and is not one whose release failed,
  opens a release: the Canary's spec, the new template's images, who changed it (the
  field manager that wrote ``f:spec/f:template`` last, e.g. ``kubectl-set``,
  ``kustomize-controller``, ``argocd-controller``, ``helm``).
- A second change while a release runs supersedes it: the release is aborted (the engine
  routes all traffic to stable before removing the canary) with the reason "superseded
  by revision ...", and once it has ended the newest template gets its own release. A
  change back to the stable template cancels the running release the same way.
- Promotion unpauses the Deployment (the engine, ``set_paused``) until its rollout of the
  new template completes; the template becomes the stable one and the Deployment is
  paused again. While it is unpaused, the Deployment controller would roll out any newer
  template at once, before its analysis: a template change during a promotion is
  answered by pausing the Deployment first (one apply), then superseding the release.
  With the watch cache, the Deployment's watch event wakes this loop for that Canary
  (the poll every ``interval`` s stays as the fallback); the admission policy
  ``canary-bot-promotion-hold`` closes the remaining window (rollout/hold.py). A
  rollback leaves the Deployment's spec as its owner wrote it: the status says that the
  spec asks for X while the pods run Y, and that template never starts a release again
  (a new one does).
- Deleting the Canary (finalizer ``canarybot.io/revisions``): a running release is
  aborted first (traffic to stable, canary removed); then, if the spec is the stable
  template, canary-bot drops its ownership of ``spec.paused`` and the Deployment is
  unpaused, serving what it serves. If the spec asks for something the pods do not run
  (a rolled-back or not yet released revision), unpausing would roll it out without
  analysis, so the Deployment stays paused and an Event on it says how to resume it.

History: finished releases are kept and pruned per target by rollout/retention.py
(the newest ``keep_finished``, 10 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from rollout.canaries import KIND as CANARY_KIND
from rollout.canaries import Canary, CanaryStatus, LastRevision, ready_condition
from rollout.failpoints import failpoint
from rollout.hold import MANAGER, DeploymentWakeups, Key, held, promoting_release, set_paused
from rollout.kube import CANARIES, DEPLOYMENTS, RELEASES, Conflict, JsonObject, Kube, KubeError
from rollout.models import (
    API_VERSION,
    Analysis,
    CanaryReleaseSpec,
    ControlRequest,
    ObjectRef,
    Phase,
    Requester,
    new_object,
)
from rollout.store import ReleaseStore
from rollout.text import rolled_back, show_images
from rollout.workloads import readiness

log = logging.getLogger("canary_bot.revisions")

FINALIZER = "canarybot.io/revisions"
CANARY_LABEL = "canarybot.io/canary"
HASH_LABEL = "canarybot.io/template-hash"
STABLE_ANNOTATION = "canarybot.io/stable-images"
_FINAL = (Phase.SUCCEEDED.value, Phase.FAILED.value)
_RUNNING_PROMOTION = (Phase.PROMOTING.value, Phase.FINALISING.value)


def stable_images_of(annotations: dict[str, str]) -> dict[str, str]:
    """The stable images a managed release was opened against (its annotation)."""
    try:
        value = json.loads(annotations.get(STABLE_ANNOTATION, "{}"))
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


ProfileLookup = Callable[[str], Analysis | None]


def template_hash(template: JsonObject) -> str:
    """A short hash of a pod template, as the Deployment's owner wrote it.

    ``pod-template-hash`` (set on ReplicaSets, never in the Deployment) is left out; no
    other template field is set by canary-bot.
    """
    body = json.loads(json.dumps(template))
    labels = (body.get("metadata") or {}).get("labels") or {}
    labels.pop("pod-template-hash", None)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def template_images(template: JsonObject) -> dict[str, str]:
    """Container name -> image of a pod template."""
    containers = (template.get("spec") or {}).get("containers") or []
    return {c["name"]: c.get("image", "") for c in containers}


def template_is_revision(
    labels: dict[str, str], images: dict[str, str], deployment: JsonObject
) -> bool:
    """Whether the Deployment's template is still the revision a managed release was
    opened for (its template hash; for a release without one, its images)."""
    template = deployment.get("spec", {}).get("template") or {}
    revision = labels.get(HASH_LABEL, "")
    if revision:
        return template_hash(template) == revision
    current = template_images(template)
    return current == {**current, **images}


def _timestamp(value: Any) -> datetime | None:
    """A status timestamp (RFC 3339), None when missing or unreadable."""
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def changed_by(deployment: JsonObject) -> str:
    """The field manager that last wrote the pod template (newest ``time`` wins)."""
    best, best_time = "", ""
    for entry in deployment["metadata"].get("managedFields") or []:
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:template" not in fields or entry.get("subresource"):
            continue
        stamp = str(entry.get("time") or "")
        if stamp >= best_time:
            best, best_time = str(entry.get("manager") or "unknown"), stamp
    return best[:256]


async def find_canary_for(kube: Kube, namespace: str, deployment: str) -> Canary | None:
    """The Canary (not being deleted) that manages ``deployment`` in ``namespace``."""
    try:
        items = await kube.list_objects(CANARIES, namespace)
    except KubeError as exc:
        if exc.status == 404:  # the Canary CRD is not installed: nothing is managed
            return None
        raise
    for raw in items:
        if raw.get("metadata", {}).get("deletionTimestamp"):
            continue
        if (raw.get("spec") or {}).get("targetRef", {}).get("name") == deployment:
            with contextlib.suppress(ValidationError):
                return Canary.from_object(raw)
    return None


def release_spec(
    canary: Canary, template: JsonObject, who: str, analysis: Analysis, cluster: str = ""
) -> CanaryReleaseSpec:
    """The release of one revision: the Canary's spec and the new template's images,
    named with the engine's cluster (the card shows it, as for a ``/canary start``)."""
    spec = canary.spec
    return CanaryReleaseSpec(
        target_ref=spec.target_ref,
        ingress_ref=spec.ingress_ref,
        route_ref=spec.route_ref,
        provider=spec.provider,
        images=template_images(template),
        service=spec.service,
        analysis=analysis,
        progress_deadline_seconds=spec.progress_deadline_seconds,
        canary_replicas=spec.canary_replicas,
        approval=spec.approval,
        skip_analysis=spec.skip_analysis,
        cluster=cluster,
        requested_by=Requester(user_name=who, channel=spec.channel, source="kubectl"),
        canary_ref=ObjectRef(name=canary.metadata.name),
        changed_by=who,
    )


def release_object(canary: Canary, name: str, spec: CanaryReleaseSpec, revision: str) -> JsonObject:
    """The CanaryRelease of ``revision``: labelled with its Canary and template hash, owned
    by the Canary (not its controller: deleting the Canary must not delete the history),
    with the stable images the release was opened against."""
    labels = {CANARY_LABEL: canary.metadata.name, HASH_LABEL: revision}
    body = new_object(name, canary.metadata.namespace, spec, labels)
    stable = json.dumps(canary.status.stable_images, sort_keys=True)
    body["metadata"]["annotations"] = {STABLE_ANNOTATION: stable}
    owner: JsonObject = {"apiVersion": API_VERSION, "kind": CANARY_KIND}
    owner |= {"name": canary.metadata.name, "uid": canary.metadata.uid}
    owner |= {"controller": False, "blockOwnerDeletion": False}
    body["metadata"]["ownerReferences"] = [owner]
    return body


def _outcome(release: JsonObject) -> str:
    status = release.get("status") or {}
    if status.get("phase") == Phase.SUCCEEDED.value:
        return "Succeeded"
    reason = str(status.get("reason") or status.get("message") or "")
    if "superseded by revision" in reason:
        return "Superseded"
    if "back to the stable revision" in reason or "Canary deleted" in reason:
        return "Cancelled"
    return "Failed"


def _created(obj: JsonObject) -> str:
    return str(obj["metadata"].get("creationTimestamp") or "")


def _target_of(raw: JsonObject) -> Key:
    """(namespace, targetRef.name) of a Canary object."""
    target = ((raw.get("spec") or {}).get("targetRef") or {}).get("name") or ""
    return str(raw["metadata"].get("namespace", "")), str(target)


class Revisions:
    """The revision loop: one ``reconcile`` per Canary each tick, on the leader only."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str | None = None,
        interval: float = 2.0,
        profiles: ProfileLookup | None = None,
        clock: Callable[[], datetime] | None = None,
        cluster: str = "",
    ) -> None:
        self.kube = kube  # fenced by the caller: every write asks the leader's guard
        self.namespace = namespace
        self.cluster = cluster
        self.interval = interval
        self.profiles = profiles
        self._clock = clock
        # Deployment watch events (subscribe ``wakeups.on_event`` to an informer)
        self.wakeups = DeploymentWakeups()
        # managed Deployment -> the template hash its running release may roll out
        self._revision_of: dict[Key, str] = {}

    def _now(self) -> datetime:
        return self._clock() if self._clock else datetime.now(UTC)

    async def run(self) -> None:
        """Reconcile every Canary every ``interval`` s, and the Canary of a Deployment
        whose spec changed as soon as its watch event arrives, until cancelled."""
        self.wakeups.bind(asyncio.get_running_loop())
        due: dict[Key, JsonObject] = {}
        next_full = 0.0
        while True:
            if not due:
                next_full = time.monotonic() + self.interval
            try:
                if due:
                    await self._hold(due)
                await self.tick(set(due) if due else None)
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                level = logging.DEBUG if exc.status == 404 else logging.WARNING
                log.log(level, "listing Canaries failed: %s", exc)
            except Exception:
                log.exception("revision loop failed; retrying")
            due = await self.wakeups.wait(next_full - time.monotonic())

    async def _hold(self, due: dict[Key, JsonObject]) -> None:
        """Pause at once an unpaused Deployment whose template is not the one its running
        release may roll out (a change during promotion): before any other request."""
        for (namespace, name), deployment in due.items():
            revision = self._revision_of.get((namespace, name))
            template = deployment.get("spec", {}).get("template") or {}
            if not revision or deployment.get("spec", {}).get("paused"):
                continue
            if template_hash(template) == revision:
                continue
            log.info("%s/%s: template changed during a promotion; pausing", namespace, name)
            try:
                await set_paused(self.kube, namespace, name, True)
            except KubeError as exc:
                log.warning("pausing %s/%s failed: %s", namespace, name, exc)

    async def tick(self, targets: set[Key] | None = None) -> None:
        """One pass over every Canary, or over those of ``targets`` (namespace,
        Deployment); a failure is that Canary's alone."""
        canaries = await self.kube.list_objects(CANARIES, self.namespace)
        if targets is None:
            self.wakeups.watch({_target_of(raw) for raw in canaries})
        for raw in canaries:
            meta = raw["metadata"]
            if targets is not None and _target_of(raw) not in targets:
                continue
            try:
                await self.reconcile(raw)
            except Conflict:
                pass  # changed meanwhile: the next tick reads it again
            except KubeError as exc:
                log.warning("Canary %s/%s: %s", meta["namespace"], meta["name"], exc)

    async def reconcile(self, raw: JsonObject) -> None:
        """Bring one Canary's Deployment and releases in line with its spec."""
        if raw["metadata"].get("deletionTimestamp"):
            await self._finalize(raw)
            return
        try:
            canary = Canary.from_object(raw)
        except ValidationError as exc:
            await self._write_status(raw, {"state": "Invalid", "message": str(exc)[:2000]})
            return
        if FINALIZER not in (raw["metadata"].get("finalizers") or []):
            raw["metadata"]["finalizers"] = [*raw["metadata"].get("finalizers", []), FINALIZER]
            raw = await self.kube.replace(
                CANARIES, canary.metadata.namespace, canary.metadata.name, raw
            )
        namespace, target = canary.metadata.namespace, canary.spec.target_ref.name
        deployment = await self.kube.get(DEPLOYMENTS, namespace, target)
        if deployment is None:
            await self._write_status(
                raw,
                {"state": "Blocked", "message": f"Deployment {target} not found in {namespace}"},
            )
            return
        if not canary.status.stable_hash:
            await self._adopt(raw, canary, deployment)
            return
        await self._follow(raw, canary, deployment)

    async def _adopt(self, raw: JsonObject, canary: Canary, deployment: JsonObject) -> None:
        """Take the template the pods run as stable, then pause the Deployment."""
        spec, status = deployment["spec"], deployment.get("status") or {}
        generation = int(deployment["metadata"].get("generation", 0))
        wanted = int(spec.get("replicas", 1))
        updated = int(status.get("updatedReplicas", 0))
        total = int(status.get("replicas", 0))
        settled = int(status.get("observedGeneration", 0)) >= generation and (
            wanted == 0 or (updated >= wanted and total <= updated)
        )
        if not settled and not spec.get("paused"):
            message = (
                f"waiting for the rollout in progress to finish before protecting "
                f"{canary.spec.target_ref.name} ({readiness(deployment).message})"
            )
            await self._write_status(raw, {"state": "Adopting", "message": message})
            return
        await set_paused(self.kube, canary.metadata.namespace, canary.spec.target_ref.name, True)
        images = template_images(spec["template"])
        ready = int(status.get("readyReplicas", 0))
        note = "" if ready else " (no pod is ready yet)"
        await self._write_status(
            raw,
            {
                "state": "Idle",
                "stableHash": template_hash(spec["template"]),
                "stableImages": images,
                "adoptedAt": self._now(),
                "message": f"protecting {canary.spec.target_ref.name}: pods run "
                f"{show_images(images)}{note}",
            },
        )

    async def _releases(self, canary: Canary) -> list[JsonObject]:
        selector = f"{CANARY_LABEL}={canary.metadata.name}"
        items = await self.kube.list_objects(RELEASES, canary.metadata.namespace, selector)
        return sorted(items, key=_created)

    async def _follow(self, raw: JsonObject, canary: Canary, deployment: JsonObject) -> None:
        """An adopted Canary: keep paused, open, supersede, cancel or record releases."""
        namespace, target = canary.metadata.namespace, canary.spec.target_ref.name
        template = deployment["spec"]["template"]
        current = template_hash(template)
        releases = await self._releases(canary)
        running = [r for r in releases if (r.get("status") or {}).get("phase") not in _FINAL]
        if running:
            await self._steer(raw, canary, deployment, running[-1], current)
            return
        self._revision_of.pop((namespace, target), None)
        if not held(deployment):
            await set_paused(self.kube, namespace, target, True)
        status = canary.status
        newest = releases[-1] if releases else None
        last = status.last_revision
        if (
            newest is not None
            and last.release == newest["metadata"]["name"]
            and last.outcome in ("", "Running")
        ):
            await self._record_end(raw, canary, newest)
            return
        if current == status.stable_hash or current in status.failed_hashes:
            await self._write_status(raw, {"state": "Idle", "release": ""})
        else:
            await self._open(raw, canary, deployment, current, releases)

    async def _steer(
        self,
        raw: JsonObject,
        canary: Canary,
        deployment: JsonObject,
        release: JsonObject,
        current: str,
    ) -> None:
        """A release runs: follow its phase, or stop it when the template moved on (the
        Deployment paused first, so the Deployment controller rolls nothing out)."""
        name = release["metadata"]["name"]
        phase = (release.get("status") or {}).get("phase", Phase.INITIALIZING.value)
        revision = release["metadata"].get("labels", {}).get(HASH_LABEL, "")
        namespace, target = canary.metadata.namespace, canary.spec.target_ref.name
        self._revision_of[(namespace, target)] = revision
        if revision == current:
            if phase in _RUNNING_PROMOTION and (
                deployment["spec"].get("paused") or promoting_release(deployment) != name
            ):
                version = str(deployment["metadata"].get("resourceVersion", ""))
                await set_paused(
                    self.kube, namespace, target, False, promoting=name, resource_version=version
                )
            await self._write_status(raw, {"state": phase, "release": name})
            return
        if not held(deployment):
            await set_paused(self.kube, namespace, target, True)
        if current == canary.status.stable_hash:
            reason = "cancelled: the pod template is back to the stable revision"
        else:
            reason = f"superseded by revision {current}"
        await self._abort(release, reason)
        failpoint("revisions:AbortRequested")
        await self._write_status(raw, {"state": phase, "release": name, "message": reason})

    async def _abort(self, release: JsonObject, reason: str) -> None:
        """Ask the engine to roll the release back (once: the request id is derived)."""
        meta = release["metadata"]
        request = ControlRequest(
            id=f"revisions-{uuid.uuid5(uuid.NAMESPACE_URL, meta['uid'] + reason).hex[:16]}",
            action="abort",
            user=MANAGER,
            user_name=MANAGER,
            reason=reason[:500],
            at=self._now(),
        )
        await ReleaseStore(self.kube).request_control(meta["namespace"], meta["name"], request)

    async def _open(
        self,
        raw: JsonObject,
        canary: Canary,
        deployment: JsonObject,
        current: str,
        releases: list[JsonObject],
    ) -> None:
        """Create the release of the template ``current``."""
        namespace = canary.metadata.namespace
        analysis = canary.spec.analysis
        if analysis is None and canary.spec.profile:
            analysis = self.profiles(canary.spec.profile) if self.profiles else None
            if analysis is None:
                message = f"analysis profile {canary.spec.profile} not found in the configuration"
                await self._write_status(raw, {"state": "Blocked", "message": message})
                return
        template = deployment["spec"]["template"]
        who = changed_by(deployment)
        spec = release_spec(canary, template, who, analysis or Analysis(), self.cluster)
        again = sum(
            1 for r in releases if r["metadata"].get("labels", {}).get(HASH_LABEL) == current
        )
        name = f"{canary.metadata.name[:40]}-{current}" + (f"-{again + 1}" if again else "")
        body = release_object(canary, name, spec, current)
        with contextlib.suppress(Conflict):  # created by an earlier pass that then failed
            await self.kube.create(RELEASES, namespace, body)
        images = template_images(template)
        last = LastRevision(
            release=name,
            template_hash=current,
            images=images,
            changed_by=who,
            outcome="Running",
            message=f"{who or 'someone'} changed {canary.spec.target_ref.name}: "
            f"{show_images(images)}",
            at=self._now(),
        )
        await self._write_status(
            raw,
            {
                "state": Phase.INITIALIZING.value,
                "release": name,
                "lastImages": show_images(images)[:256],
                "lastRevision": last.model_dump(mode="json", by_alias=True, exclude_none=True),
                "message": last.message,
            },
        )

    async def _record_end(self, raw: JsonObject, canary: Canary, release: JsonObject) -> None:
        """The release ended: a success is the new stable revision; else say what runs."""
        status = canary.status
        rel_status = release.get("status") or {}
        outcome = _outcome(release)
        revision = release["metadata"].get("labels", {}).get(HASH_LABEL, "")
        last = status.last_revision.model_copy(update={"outcome": outcome})
        asks, runs = show_images(last.images), show_images(status.stable_images)
        cause = str(rel_status.get("reason") or rel_status.get("message") or outcome)
        changes: dict[str, Any] = {}
        if outcome == "Succeeded":
            message = f"promoted {asks}"
            changes = {"stableHash": revision, "stableImages": dict(last.images)}
        elif outcome in ("Superseded", "Cancelled"):
            message = f"{asks} {outcome.lower()}: {cause}; pods run {runs}"
        else:
            at = _timestamp(rel_status.get("finishedAt"))
            message = rolled_back(dict(last.images), dict(status.stable_images), at, cause)
            changes = {"failedHashes": [*status.failed_hashes, revision][-20:]}
        last = last.model_copy(update={"message": message})
        await self._write_status(
            raw,
            {
                **changes,
                "state": "Idle",
                "release": "",
                "lastRevision": last.model_dump(mode="json", by_alias=True, exclude_none=True),
                "message": message,
            },
        )

    async def _finalize(self, raw: JsonObject) -> None:
        """The Canary is being deleted: stop its release, unpause, let it go."""
        meta = raw["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        namespace = meta["namespace"]
        target = str(((raw.get("spec") or {}).get("targetRef") or {}).get("name") or "")
        selector = f"{CANARY_LABEL}={meta['name']}"
        for release in await self.kube.list_objects(RELEASES, namespace, selector):
            if (release.get("status") or {}).get("phase") not in _FINAL:
                await self._abort(release, "stopped: the Canary was deleted (Canary deleted)")
                return  # the next tick looks again, once the engine has rolled it back
        self._revision_of.pop((namespace, target), None)
        deployment = await self.kube.get(DEPLOYMENTS, namespace, target) if target else None
        if deployment is not None:
            await self._release_deployment(raw, deployment)
        meta["finalizers"] = [f for f in meta.get("finalizers", []) if f != FINALIZER]
        await self.kube.replace(CANARIES, namespace, meta["name"], raw)

    async def _release_deployment(self, raw: JsonObject, deployment: JsonObject) -> None:
        stable = str((raw.get("status") or {}).get("stableHash") or "")
        current = template_hash(deployment["spec"]["template"])
        meta = deployment["metadata"]
        if not stable or current == stable:
            await set_paused(self.kube, meta["namespace"], meta["name"], None)
            return
        # Unpausing would roll out a template that never passed analysis: stay paused.
        asks = show_images(template_images(deployment["spec"]["template"]))
        runs = show_images((raw.get("status") or {}).get("stableImages") or {})
        message = (
            f"Canary {raw['metadata']['name']} deleted; {meta['name']} stays paused because its "
            f"spec asks for {asks} while its pods run {runs}. Roll the spec out with "
            f"`kubectl rollout resume deployment/{meta['name']} -n {meta['namespace']}`, "
            "or revert the spec first"
        )
        await self.kube.record_event(
            {**deployment, "apiVersion": "apps/v1", "kind": "Deployment"},
            "LeftPaused",
            message,
            warning=True,
        )

    async def _write_status(self, raw: JsonObject, changes: dict[str, Any]) -> None:
        """Merge ``changes`` into the Canary's status; written only when it changes."""
        old = CanaryStatus.model_validate(raw.get("status") or {})
        merged = {**old.model_dump(mode="json", by_alias=True, exclude_none=True)}
        merged.update(
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in changes.items()}
        )
        merged["observedGeneration"] = int(raw["metadata"].get("generation", 0))
        new = CanaryStatus.model_validate(merged)
        ready = ready_condition(new, self._now())
        others = [c for c in new.conditions if c.type != ready.type]
        new = new.model_copy(update={"conditions": [*others, ready]})
        if new == old:
            return
        body = {**raw, "status": new.model_dump(mode="json", by_alias=True, exclude_none=True)}
        await self.kube.replace(
            CANARIES, raw["metadata"]["namespace"], raw["metadata"]["name"], body, sub="status"
        )
