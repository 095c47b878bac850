"""Finished releases on the real API server: the leader keeps the newest N per target and
deletes older ones; a resync or a new leadership term does not advance them again.

The engine runs with its own ``Kube`` gateway, so its request counter shows exactly what
it sent. No Prometheus is needed: finished releases have no checks to run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from rollout.controller import Controller, EngineSettings
from rollout.kube import RELEASES, Conflict, Kube
from rollout.models import (
    CanaryRelease,
    CanaryReleaseSpec,
    CanaryReleaseStatus,
    ControlRequest,
    Phase,
)
from rollout.notify import LoggingNotifier
from rollout.retention import Retention
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from tests.fixtures.engine import async_wait_for

pytestmark = pytest.mark.cluster

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
T = TypeVar("T")


def spec(target: str) -> CanaryReleaseSpec:
    """A valid spec for ``target`` (finished releases never touch it)."""
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": target},
            "ingressRef": {"name": target},
            "images": {"app": "registry.example.com/app:1.0.1"},
            "analysis": {"interval": "1m", "maxWeight": 50, "stepWeight": 10},
        }
    )


async def finished(
    store: ReleaseStore, namespace: str, name: str, target: str, minutes: int
) -> None:
    """A release that ended ``minutes`` after BASE_TIME, its end already reported."""
    release: CanaryRelease | None = await store.create(namespace, name, spec(target))
    at = BASE_TIME + timedelta(minutes=minutes)
    phase = Phase.SUCCEEDED if minutes % 2 else Phase.FAILED
    status = CanaryReleaseStatus(phase=phase, started_at=at, finished_at=at)
    for _ in range(5):
        assert release is not None
        try:
            await store.write_status(release, status)
            return
        except Conflict:  # a running engine saw the new release first: write over it
            release = await store.get(namespace, name)
    raise AssertionError(f"could not mark {name} finished")


@pytest.fixture
async def engine_kube(control_plane: ControlPlane, crd: None) -> AsyncIterator[Kube]:
    """A gateway of the engine's own, so its request counts are the engine's alone."""
    gateway = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
    yield gateway
    gateway.close()


def controller(kube: Kube, namespace: str, keep: int) -> Controller:
    settings = EngineSettings(
        # never queried: finished releases have no checks
        prometheus_url="http://127.0.0.1:9",
        namespace=namespace,
        leader_election=False,
        max_tick_seconds=1.0,
        keep_finished=keep,
        # no Canaries here: the revision loop's own reads are counted in tests/revisions
        revisions=False,
    )
    return Controller(kube, LoggingNotifier(), settings, "retention-test")


async def names(store: ReleaseStore, namespace: str) -> set[str]:
    return {r.metadata.name for r in await store.list_objects(namespace)}


async def test_leader_keeps_the_newest_n_finished_releases_per_target(
    kube: Kube, engine_kube: Kube, namespace: str
) -> None:
    store = ReleaseStore(kube)
    for minute in range(1, 6):  # podinfo-1 (oldest) ... podinfo-5 (newest)
        await finished(store, namespace, f"podinfo-{minute}", "podinfo", minute)
    for minute in (1, 2):
        await finished(store, namespace, f"frontend-{minute}", "frontend", minute)

    engine = controller(engine_kube, namespace, keep=3)
    await engine.start()
    try:
        kept = await async_wait_for(
            lambda: _when(names(store, namespace), lambda n: len(n) == 5),
            30,
            "the engine to delete the two oldest podinfo releases",
        )
        assert kept == {"podinfo-3", "podinfo-4", "podinfo-5", "frontend-1", "frontend-2"}

        # a newer finished release pushes the oldest kept one out, and only that one
        await finished(store, namespace, "podinfo-6", "podinfo", 6)
        kept = await async_wait_for(
            lambda: _when(names(store, namespace), lambda n: "podinfo-3" not in n),
            30,
            "the engine to delete podinfo-3 after podinfo-6 finished",
        )
        assert kept == {"podinfo-4", "podinfo-5", "podinfo-6", "frontend-1", "frontend-2"}
        assert engine.retention.deleted == 3
        assert ("DELETE", "canaryreleases") in engine_kube.requests.counts
    finally:
        await engine.stop()


async def test_an_active_release_is_neither_counted_nor_deleted(
    kube: Kube, engine_kube: Kube, namespace: str
) -> None:
    store = ReleaseStore(kube)
    await finished(store, namespace, "podinfo-1", "podinfo", 1)
    await finished(store, namespace, "podinfo-2", "podinfo", 2)
    # a release in progress (paused, so the engine leaves it where it is)
    paused = await store.create(namespace, "podinfo-live", spec("podinfo"))
    await store.write_status(paused, CanaryReleaseStatus(phase=Phase.PAUSED))
    retention = Retention(engine_kube, keep=1, leading=lambda: True)
    for release in await engine_kube.list_objects(RELEASES, namespace):
        retention.observe(release)
    await retention.wait()
    assert await names(store, namespace) == {"podinfo-2", "podinfo-live"}
    assert retention.deleted == 1


async def test_a_finished_release_is_not_advanced_again_on_resync(
    kube: Kube, engine_kube: Kube, namespace: str
) -> None:
    store = ReleaseStore(kube)
    for minute in range(1, 5):
        await finished(store, namespace, f"podinfo-{minute}", "podinfo", minute)

    engine = controller(engine_kube, namespace, keep=10)
    await engine.start()
    try:
        await _listed(engine, 4)
        before = dict(engine_kube.requests.counts)
        for _ in range(3):  # what a relist after a watch error does
            await engine._resync()
        await _settled(engine)
        # a new leadership term lists again
        await engine._stop_leading()
        await engine._start_leading()
        await _listed(engine, 4)
        # every informer of the new term has listed (or learnt its kind is not installed)
        assert await asyncio.to_thread(engine.cache.wait_synced, 30), "the cache did not list"
        after = dict(engine_kube.requests.counts)
        sent = {
            k: after[k] - before.get(k, 0)
            for k in after
            if after[k] != before.get(k, 0) and k[0] != "WATCH"
        }
        # four lists of releases, nothing else (watches aside): no release read, no
        # status written; the new term's watch cache lists Deployments, Services,
        # Ingresses, HTTPRoutes and GRPCRoutes once each (one list per kind, not one read
        # per release; a route list answered 404 where the Gateway API CRDs are missing)
        assert sent == {
            ("GET", "canaryreleases"): 4,
            ("GET", "deployments"): 1,
            ("GET", "services"): 1,
            ("GET", "ingresses"): 1,
            ("GET", "httproutes"): 1,
            ("GET", "grpcroutes"): 1,
        }, sent

        # a control request that arrives after the end is still audited (once)
        await store.request_control(
            namespace,
            "podinfo-4",
            ControlRequest(id="late-abort", action="abort", user="U0LATE", at=BASE_TIME),
        )
        audited = await async_wait_for(
            lambda: _when(store.get(namespace, "podinfo-4"), lambda r: r and r.status.audit),
            30,
            "the late abort to be audited",
        )
        assert [(a.id, a.result) for a in audited.status.audit] == [("late-abort", "ignored")]
        await _settled(engine)
        writes = engine_kube.requests.counts.get(("PUT", "canaryreleases"), 0)
        await engine._resync()
        await _settled(engine)
        assert engine_kube.requests.counts.get(("PUT", "canaryreleases"), 0) == writes
    finally:
        await engine.stop()


async def _listed(engine: Controller, releases: int) -> None:
    """Wait until the term's first list was handled (every release observed), then settle."""
    await async_wait_for(
        lambda: _value(len(engine._generations) == releases), 30, "the engine's list"
    )
    await _settled(engine)


async def _settled(engine: Controller) -> None:
    """Wait until no advance is running or queued."""
    await async_wait_for(
        lambda: _value(not engine._tasks), 30, "the engine's runs to finish", interval=0.05
    )
    await asyncio.sleep(0)


async def _value(value: T) -> T:
    return value


async def _when(awaitable: Awaitable[T], predicate: Callable[[T], Any]) -> T | None:
    value = await awaitable
    return value if predicate(value) else None
