"""Leader election with a coordination.k8s.io/v1 Lease, safe against a cut-off leader.

Every replica runs the Slack front; only the Lease holder runs rollouts. Three durations,
as in client-go, with ``lease > renew deadline > retry period`` (defaults 15 s, 10 s, 2 s):

- ``retry_seconds`` (2 s): how often the holder renews and a candidate tries to acquire.
  Short enough that four or five renewal attempts fit in one renew deadline, so a single
  slow or failed request never costs the Lease.
- ``renew_deadline_seconds`` (10 s): the holder acts only while its last successful
  renewal *started* less than this long ago (its monotonic clock). Every renewal request
  is bounded by what is left of that window (the client's timeout and ``wait_for``), so
  the holder always knows in time that it may have lost the Lease; it then stops and
  cancels what it was doing, and its writes are refused before they are sent
  (``write_budget`` is the guard of the engine's ``Kube``).
- ``lease_seconds`` (15 s): a candidate takes over only after it has seen the Lease
  record unchanged for this long, by its own monotonic clock. The server applied the
  holder's last renewal after that renewal started, and the candidate saw it even later,
  so the holder stops acting at least ``lease - renew deadline`` (5 s) before anyone can
  take over: room for a request in flight, scheduling delays and clock rate drift.

Expiry is never judged by comparing this machine's clock with the ``renewTime`` another
machine wrote: with clocks minutes apart that would either steal a live Lease or wait
minutes for a dead one. ``renewTime`` is written for people (``kubectl get lease``).
Every Lease write carries the resourceVersion that was read, so two replicas racing for
an expired Lease cannot both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rollout.kube import LEASES, Conflict, JsonObject, Kube, KubeError, NotLeading

log = logging.getLogger("canary_bot.leader")


def _micro(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class _Record:
    """What identifies one version of the Lease record (any change restarts the clock)."""

    holder: str
    renew_time: str
    resource_version: str
    duration: float


class LeaderElector:
    """Acquires and renews a Lease; calls back when leadership starts and stops."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_seconds: float = 15.0,
        renew_deadline_seconds: float = 10.0,
        retry_seconds: float = 2.0,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lease_seconds > renew_deadline_seconds > retry_seconds > 0:
            raise ValueError(
                "leader election needs lease > renew deadline > retry period > 0, got "
                f"{lease_seconds:g} / {renew_deadline_seconds:g} / {retry_seconds:g} s"
            )
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline_seconds
        self.retry_seconds = retry_seconds
        self.on_started = on_started
        self.on_stopped = on_stopped
        self._monotonic = monotonic
        self.is_leader = False
        # monotonic start of the last acquire/renew that the server accepted
        self._renewed_at: float | None = None
        self._observed: _Record | None = None
        self._observed_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin campaigning in the background."""
        self._task = asyncio.create_task(self._run(), name=f"leader-election:{self.identity}")

    async def stop(self, release: bool = True) -> None:
        """Stop campaigning; hand the Lease back so another replica takes over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.is_leader:
            still_held = self._window() > 0
            await self._step_down("stopping")
            if release and still_held:
                try:
                    await self._release()
                except KubeError as exc:
                    log.warning("could not release the lease: %s", exc)

    # -- the fencing guard ----------------------------------------------------------------

    def _window(self) -> float:
        """Seconds left before the renew deadline (<= 0: this process must not act)."""
        if not self.is_leader or self._renewed_at is None:
            return 0.0
        return self._renewed_at + self.renew_deadline - self._monotonic()

    def write_budget(self) -> float:
        """How long a write sent now may take; raises ``NotLeading`` when none may go.

        A write may be sent until the renew deadline and must be answered before half of
        the margin to the Lease's expiry has gone, so no write of this process can still
        be waiting for its answer when another replica could take over.
        """
        left = self._window()
        if left <= 0:
            raise NotLeading(
                f"{self.identity} has not renewed the Lease {self.namespace}/{self.name} "
                f"within {self.renew_deadline:g}s; not writing"
            )
        return left + (self.lease_seconds - self.renew_deadline) / 2

    # -- the campaign ---------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            started = self._monotonic()
            held = await self._attempt(started)
            try:
                if held and not self.is_leader:
                    self.is_leader = True
                    log.info("became leader as %s", self.identity)
                    await self.on_started()
                elif self.is_leader and not held and self._window() <= 0:
                    await self._step_down("the renew deadline passed without a renewal")
                elif self.is_leader and not held and self._taken_by_another():
                    await self._step_down(f"the Lease is held by {self._observed_holder()}")
            except Exception:  # a failing callback must not end the campaign (or renewals)
                log.exception("leadership change handling failed for %s", self.identity)
            await asyncio.sleep(max(0.0, started + self.retry_seconds - self._monotonic()))

    async def _attempt(self, started: float) -> bool:
        """One acquire-or-renew round, bounded by what is left of the renew deadline."""
        budget = self._window() if self.is_leader else self.renew_deadline
        if budget <= 0:
            return False
        try:
            async with asyncio.timeout(budget):
                held = await self.try_acquire_or_renew(budget)
        except (KubeError, TimeoutError) as exc:
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc or "timed out")
            return False
        if held:
            self._renewed_at = started
        return held

    def _observed_holder(self) -> str:
        return self._observed.holder if self._observed is not None else ""

    def _taken_by_another(self) -> bool:
        return self._observed_holder() not in ("", self.identity)

    async def _step_down(self, why: str) -> None:
        self.is_leader = False
        self._renewed_at = None
        log.warning("lost leadership as %s: %s", self.identity, why)
        await self.on_stopped()

    def _observe(self, lease: JsonObject) -> _Record:
        """Remember the record; restart the expiry clock whenever it changed."""
        spec: JsonObject = lease.get("spec") or {}
        record = _Record(
            holder=str(spec.get("holderIdentity") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            resource_version=str(lease.get("metadata", {}).get("resourceVersion", "")),
            duration=float(spec.get("leaseDurationSeconds") or self.lease_seconds),
        )
        if record != self._observed:
            self._observed, self._observed_at = record, self._monotonic()
        return record

    def _expired(self, record: _Record) -> bool:
        """Free, or unchanged for a whole lease duration as seen from here."""
        return not record.holder or self._monotonic() - self._observed_at > record.duration

    async def try_acquire_or_renew(self, budget: float) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        lease = await self.kube.get(LEASES, self.namespace, self.name, request_timeout=budget)
        now = datetime.now(UTC)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, now, transitions=0),
            }
            try:
                self._observe(await self.kube.create(LEASES, self.namespace, body, budget))
            except Conflict:
                return False
            return True
        record = self._observe(lease)
        if record.holder != self.identity and not self._expired(record):
            return False
        spec: JsonObject = lease.get("spec") or {}
        transitions = int(spec.get("leaseTransitions") or 0)
        acquired = str(spec.get("acquireTime") or "") if record.holder == self.identity else ""
        if not acquired:
            acquired, transitions = _micro(now), transitions + 1
        lease["spec"] = {**self._spec(now, now, transitions), "acquireTime": acquired}
        try:
            updated = await self.kube.replace(
                LEASES, self.namespace, self.name, lease, request_timeout=budget
            )
        except Conflict:
            return False
        self._observe(updated)
        return True

    def _spec(self, acquired: datetime, renewed: datetime, transitions: int) -> JsonObject:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(self.lease_seconds),
            "acquireTime": _micro(acquired),
            "renewTime": _micro(renewed),
            "leaseTransitions": transitions,
        }

    async def _release(self) -> None:
        budget = self.renew_deadline
        lease = await self.kube.get(LEASES, self.namespace, self.name, request_timeout=budget)
        if lease is None or lease.get("spec", {}).get("holderIdentity") != self.identity:
            return
        lease["spec"]["holderIdentity"] = ""
        lease["spec"]["renewTime"] = None
        lease["spec"]["acquireTime"] = None
        with contextlib.suppress(Conflict):
            await self.kube.replace(
                LEASES, self.namespace, self.name, lease, request_timeout=budget
            )
