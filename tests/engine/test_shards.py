"""Shards on one real control plane: two engines with ``shard`` set and one without
split the CanaryReleases by the ``canarybot.io/shard`` label, each leading through its
own Lease, and each advances only its own releases.

The releases name a Deployment that does not exist, so each one's first step refuses it
(status Failed, a Warning Event): no Prometheus is needed, and each engine's own
``Kube`` gateway and ``on_advanced`` observer show which engine wrote what.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from kubernetes import client as k8s

from rollout.__main__ import parse_args
from rollout.controller import Controller, EngineSettings
from rollout.engine import AdvanceStats
from rollout.kube import Kube
from rollout.models import CanaryRelease, CanaryReleaseSpec, Phase
from rollout.notify import LoggingNotifier
from rollout.shards import SHARD_LABEL, release_selector, shard_lease_name
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from tests.fixtures.engine import async_wait_for

pytestmark = pytest.mark.cluster

LEASE = "canary-bot-leader"
SHARDS: tuple[str | None, ...] = ("blue", "green", None)


@dataclass
class ShardEngine:
    """One engine process's parts: its gateway, its controller, what it advanced."""

    shard: str | None
    kube: Kube
    controller: Controller
    advanced: set[str] = field(default_factory=set)

    def observe(self, release: CanaryRelease, stats: AdvanceStats) -> None:
        self.advanced.add(release.metadata.name)


@pytest.fixture
async def engines(
    control_plane: ControlPlane, crd: None, namespace: str
) -> AsyncIterator[list[ShardEngine]]:
    started: list[ShardEngine] = []
    for shard in SHARDS:
        kube = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
        settings = EngineSettings(
            prometheus_url="http://127.0.0.1:9",  # never queried: every release is refused
            namespace=namespace,
            lease_namespace=namespace,
            lease_name=shard_lease_name(LEASE, shard),
            lease_seconds=6.0,
            renew_deadline_seconds=4.0,
            retry_seconds=0.8,
            max_tick_seconds=1.0,
            shard=shard,
        )
        controller = Controller(kube, LoggingNotifier(), settings, f"engine-{shard or 'default'}")
        engine = ShardEngine(shard, kube, controller)
        controller.engine.on_advanced = engine.observe
        await controller.start()
        started.append(engine)
    yield started
    for engine in started:
        await engine.controller.stop()
        engine.kube.close()


def spec() -> CanaryReleaseSpec:
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "missing"},
            "ingressRef": {"name": "missing"},
            "images": {"app": "registry.example.com/app:2"},
            "analysis": {"interval": "10s", "maxWeight": 50, "stepWeight": 10},
        }
    )


def release_name(shard: str | None, index: int) -> str:
    return f"{shard or 'default'}-{index}"


async def test_each_shard_engine_advances_only_its_own_releases(
    engines: list[ShardEngine], kube: Kube, kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    store = ReleaseStore(kube)
    for shard in SHARDS:
        labels = {SHARD_LABEL: shard} if shard else None
        for index in range(3):
            await store.create(namespace, release_name(shard, index), spec(), labels)

    async def all_refused() -> bool:
        releases = await store.list_objects(namespace)
        return len(releases) == 9 and all(r.status.phase == Phase.FAILED for r in releases)

    await async_wait_for(all_refused, 60, "every release to be refused by its engine")
    for engine in engines:
        own = {release_name(engine.shard, i) for i in range(3)}
        assert engine.advanced == own, (engine.shard, engine.advanced)
        # its status writes went through its own gateway
        assert engine.kube.requests.counts.get(("PUT", "canaryreleases/status"), 0) >= 3

    for release in await store.list_objects(namespace):
        assert "Deployment missing not found" in release.status.message, release.status

    # each refusal's Event is written after its status: waited for, not read once
    wanted = {release_name(s, i) for s in SHARDS for i in range(3)}

    def refused() -> set[str]:
        events = k8s.CoreV1Api(kube_api_client).list_namespaced_event(namespace).items
        return {e.involved_object.name for e in events if e.involved_object.kind == "CanaryRelease"}

    async def all_recorded() -> bool:
        return await asyncio.to_thread(refused) == wanted

    await async_wait_for(all_recorded, 30, f"a refusal Event for each of {sorted(wanted)}")
    assert refused() == wanted

    leases = k8s.CoordinationV1Api(kube_api_client).list_namespaced_lease(namespace).items
    holders = {lease.metadata.name: lease.spec.holder_identity for lease in leases}
    assert holders == {
        "canary-bot-leader-blue": "engine-blue",
        "canary-bot-leader-green": "engine-green",
        "canary-bot-leader": "engine-default",
    }


@pytest.mark.parametrize("value", ["", "-blue", "blue team", "b" * 43, "blue/1", "Blue", "a_b"])
def test_a_shard_that_cannot_be_a_label_value_is_refused_at_start(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--shard", value])
    assert exit_info.value.code == 2
    assert "--shard:" in capsys.readouterr().err


def test_a_shard_engine_leads_through_its_own_lease() -> None:
    args = parse_args(["--shard", "blue-1"])
    assert (args.shard, shard_lease_name(args.lease_name, args.shard)) == (
        "blue-1",
        "canary-bot-leader-blue-1",
    )
    assert release_selector("blue-1") == "canarybot.io/shard=blue-1"
    assert release_selector(None) == "!canarybot.io/shard"
