"""Leader election with a coordination.k8s.io/v1 Lease.

Every replica runs the Slack front; only the Lease holder runs rollouts. The holder
renews every ``renew_seconds``; another replica takes over once ``renewTime`` is older
than ``lease_seconds``. Every write carries the Lease's resourceVersion, so two replicas
racing for an expired Lease cannot both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from rollout.kube import LEASES, Conflict, JsonObject, Kube, KubeError

log = logging.getLogger("canary_bot.leader")


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


class LeaderElector:
    """Acquires and renews a Lease; calls back when leadership starts and stops."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.is_leader = False
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
            self.is_leader = False
            await self.on_stopped()
            if release:
                try:
                    await self._release()
                except KubeError as exc:
                    log.warning("could not release the lease: %s", exc)

    async def _run(self) -> None:
        while True:
            try:
                leading = await self.try_acquire_or_renew()
            except KubeError as exc:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                leading = False
            try:
                if leading and not self.is_leader:
                    self.is_leader = True
                    log.info("became leader as %s", self.identity)
                    await self.on_started()
                elif not leading and self.is_leader:
                    self.is_leader = False
                    log.warning("lost leadership as %s", self.identity)
                    await self.on_stopped()
            except Exception:  # a failing callback must not end the campaign (or renewals)
                log.exception("leadership change handling failed for %s", self.identity)
            await asyncio.sleep(self.renew_seconds)

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        now = _now()
        lease = await self.kube.get(LEASES, self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, now, transitions=0),
            }
            try:
                await self.kube.create(LEASES, self.namespace, body)
            except Conflict:
                return False
            return True
        spec: JsonObject = lease.get("spec", {})
        holder = spec.get("holderIdentity") or ""
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquired = _parse(spec.get("acquireTime")) or now
        else:
            acquired, transitions = now, transitions + 1
        lease["spec"] = self._spec(acquired, now, transitions)
        try:
            await self.kube.replace(LEASES, self.namespace, self.name, lease)
        except Conflict:
            return False
        return True

    def _spec(self, acquired: datetime, renewed: datetime, transitions: int) -> JsonObject:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": _micro(acquired),
            "renewTime": _micro(renewed),
            "leaseTransitions": transitions,
        }

    async def _release(self) -> None:
        lease = await self.kube.get(LEASES, self.namespace, self.name)
        if lease is None or lease.get("spec", {}).get("holderIdentity") != self.identity:
            return
        lease["spec"]["holderIdentity"] = ""
        lease["spec"]["renewTime"] = None
        lease["spec"]["acquireTime"] = None
        with contextlib.suppress(Conflict):
            await self.kube.replace(LEASES, self.namespace, self.name, lease)
