"""A standby whose clock is 2 minutes off neither steals a live Lease nor waits for a dead one.

The Lease is held by another replica ("ghost", played by the test) whose clock is two
minutes behind or ahead: every renewTime it writes is that far in the past or future as
seen here. Expiry must be judged by how long this standby has seen the record
unchanged (its own monotonic clock), so the skew is irrelevant: while the ghost renews
the standby waits, and once the ghost stops the standby takes over within about one
Lease duration, far sooner than the two minutes a clock comparison would take.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollout.kube import LEASES, Kube
from rollout.leader import LeaderElector

pytestmark = pytest.mark.cluster

LEASE = "canary-bot-leader"
LEASE_SECONDS = 6.0
GHOST_RENEW_SECONDS = 1.0


def _micro(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def ghost_renews(kube: Kube, namespace: str, skew: timedelta) -> None:
    """The ghost holder writes its renewal, as its skewed clock tells the time."""
    lease: dict[str, Any] | None = await kube.get(LEASES, namespace, LEASE)
    now = _micro(datetime.now(UTC) + skew)
    spec = {
        "holderIdentity": "ghost",
        "leaseDurationSeconds": int(LEASE_SECONDS),
        "acquireTime": now,
        "renewTime": now,
        "leaseTransitions": 0,
    }
    if lease is None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": namespace},
            "spec": spec,
        }
        await kube.create(LEASES, namespace, body)
        return
    lease["spec"] = {**lease["spec"], "renewTime": now}
    await kube.replace(LEASES, namespace, LEASE, lease)


async def holder(kube: Kube, namespace: str) -> str:
    lease = await kube.get(LEASES, namespace, LEASE)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


@pytest.mark.parametrize("skew_seconds", [-120, 120], ids=["ghost-2min-behind", "ghost-2min-ahead"])
async def test_expiry_is_judged_by_the_standbys_own_clock(
    kube: Kube, namespace: str, skew_seconds: int
) -> None:
    skew = timedelta(seconds=skew_seconds)
    await ghost_renews(kube, namespace, skew)
    changes: list[str] = []

    async def started() -> None:
        changes.append("started")

    async def stopped() -> None:
        changes.append("stopped")

    standby = LeaderElector(
        kube,
        namespace,
        LEASE,
        "standby",
        lease_seconds=LEASE_SECONDS,
        renew_deadline_seconds=4.0,
        retry_seconds=0.8,
        on_started=started,
        on_stopped=stopped,
    )
    standby.start()
    try:
        # The ghost is alive for three Lease durations: the standby must keep off.
        for _ in range(int(3 * LEASE_SECONDS / GHOST_RENEW_SECONDS)):
            await ghost_renews(kube, namespace, skew)
            await asyncio.sleep(GHOST_RENEW_SECONDS)  # the ghost's renew period
            assert not standby.is_leader, "the standby stole a Lease that is being renewed"
            assert await holder(kube, namespace) == "ghost"
        assert changes == []

        # The ghost dies. A clock comparison would wait until its renewTime is 6 s
        # old by this clock: two minutes and more when it was ahead.
        died = time.monotonic()
        deadline = died + 10 * LEASE_SECONDS
        while not standby.is_leader:
            assert time.monotonic() < deadline, (
                f"the standby has not taken a Lease unrenewed for {time.monotonic() - died:.0f}s"
            )
            await asyncio.sleep(0.2)
        assert await holder(kube, namespace) == "standby"
        assert changes == ["started"]
        assert standby.write_budget() > 0
    finally:
        await standby.stop()
    assert await holder(kube, namespace) == ""  # handed back on stop
