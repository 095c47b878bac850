"""Every webhook type against the flagger-loadtester's own endpoints, as Flagger runs them.

The gates are driven the way an operator drives them: ``POST /gate/open``,
``/gate/close``, ``/rollback/open`` with the canary's name and namespace. Real API
server, real Prometheus, simulated traffic; intervals shortened to 2 s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from kubernetes import client as k8s

from rollout.kube import Kube
from rollout.models import Phase
from rollout.store import ReleaseStore
from sandbox.loadtester import LoadTester
from tests.engine.test_rollout import (
    NEW,
    OLD,
    canary_deleted,
    events,
    phase_of,
    target_image,
    tutorial_spec,
    wait_phase,
)
from tests.fixtures.engine import ControllerFactory, async_wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]


async def operate(loadtester: LoadTester, path: str, namespace: str) -> None:
    """What an operator runs: ``curl -d '{"name": ..., "namespace": ...}' <tester><path>``."""
    body = {"name": "podinfo", "namespace": namespace}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{loadtester.url}{path}", json=body) as response,
    ):
        assert response.status == 202, await response.text()


def hook(name: str, kind: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "url": url, "timeout": "5s", **extra}


async def test_every_webhook_type_follows_the_load_testers_gates(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: LoadTester,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    url = loadtester.url
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    base = tutorial_spec(url)
    hooks = [w.model_dump(by_alias=True) for w in base.analysis.webhooks]  # pre-rollout, rollout
    hooks += [
        hook("start-gate", "confirm-rollout", f"{url}/gate/check"),
        hook("step-gate", "confirm-traffic-increase", f"{url}/gate/approve"),
        hook("promotion-gate", "confirm-promotion", f"{url}/gate/check"),
        hook("manual-rollback", "rollback", f"{url}/rollback/check"),
        hook("notify-done", "post-rollout", f"{url}/", metadata={"cmd": "echo done"}),
        hook("events", "event", f"{url}/events"),
    ]
    spec = tutorial_spec(
        url,
        analysis={"webhooks": hooks, "maxWeight": 50, "stepWeight": 25, "stepWeightPromotion": 20},
    )
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", spec)
    await controller_factory(namespace)

    # confirm-rollout: the gate starts closed, so the release waits without traffic
    waiting = await wait_phase(store, namespace, {Phase.WAITING, Phase.FAILED}, 60)
    assert waiting.status.phase == Phase.WAITING
    assert waiting.status.canary_weight == 0 and not loadtester.calls("acceptance-test")
    await operate(loadtester, "/gate/open", namespace)
    progressing = await wait_phase(store, namespace, {Phase.PROGRESSING, Phase.FAILED}, 30)
    assert progressing.status.phase == Phase.PROGRESSING
    # confirm-promotion asks the same gate: close it while the analysis runs (two 2 s steps)
    await operate(loadtester, "/gate/close", namespace)

    held = await wait_phase(store, namespace, {Phase.WAITING_PROMOTION, Phase.FAILED}, 60)
    assert held.status.phase == Phase.WAITING_PROMOTION
    asked = len(loadtester.calls(path="/gate/check"))
    await async_wait_for(
        lambda: _now(len(loadtester.calls(path="/gate/check")) >= asked + 2),
        30,
        "the confirm-promotion gate to be asked again",
    )
    assert (await phase_of(store, namespace)).status.phase == Phase.WAITING_PROMOTION
    assert target_image(kube_api_client, namespace) == OLD
    await operate(loadtester, "/gate/open", namespace)

    done = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 90)
    assert done.status.phase == Phase.SUCCEEDED, "\n".join(events(kube_api_client, namespace))
    story = events(kube_api_client, namespace)
    advances = [m for m in story if m.startswith("Advance podinfo.")]
    assert advances == [
        f"Advance podinfo.{namespace} canary weight 25",
        f"Advance podinfo.{namespace} canary weight 50",
        # stepWeightPromotion: the promoted target's share grows by 20 per interval
        f"Advance podinfo.{namespace} primary weight 70",
        f"Advance podinfo.{namespace} primary weight 90",
    ], story
    assert target_image(kube_api_client, namespace) == NEW
    await canary_deleted(kube_api_client, namespace)
    await asyncio.to_thread(sim.wait_for_weight, 0, timeout=10)

    # pre-rollout and rollout hooks ran their commands; traffic gates were asked
    assert loadtester.calls("acceptance-test") and loadtester.calls("load-test")
    assert loadtester.calls(path="/gate/approve")
    # the manual-rollback gate was asked while waiting, progressing and waiting for
    # promotion, stayed closed, and so changed nothing
    phases = {c.phase for c in loadtester.calls(path="/rollback/check")}
    assert {"Waiting", "Progressing", "WaitingPromotion"} <= phases, phases
    assert all(c.status == 403 for c in loadtester.calls(path="/rollback/check"))
    # post-rollout: once, after the outcome is stored
    notified = await asyncio.to_thread(
        loadtester.wait_for_call, predicate=lambda c: c.cmd == "echo done", timeout=30
    )
    assert notified.phase == "Succeeded"
    # event hooks get each event's message
    told = [c.metadata.get("eventMessage", "") for c in loadtester.calls(path="/events")]
    assert f"Advance podinfo.{namespace} canary weight 25" in told, told


async def test_an_open_rollback_gate_rolls_back_a_progressing_release(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: LoadTester,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    url = loadtester.url
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    hooks = [w.model_dump(by_alias=True) for w in tutorial_spec(url).analysis.webhooks]
    hooks += [
        hook("manual-rollback", "rollback", f"{url}/rollback/check"),
        hook("notify-done", "post-rollout", f"{url}/", metadata={"cmd": "echo done"}),
    ]
    spec = tutorial_spec(url, analysis={"webhooks": hooks, "maxWeight": 50, "stepWeight": 5})
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", spec)
    await controller_factory(namespace)

    async def has_traffic() -> bool:
        release = await phase_of(store, namespace)
        return release.status.canary_weight >= 10

    await async_wait_for(has_traffic, 60, "the canary to get traffic")
    await operate(loadtester, "/rollback/open", namespace)

    release = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 30)
    assert release.status.phase == Phase.FAILED
    assert release.status.reason == "manual rollback requested by webhook manual-rollback"

    # the Event follows the stored status: wait for it rather than read once
    def told() -> bool:
        wanted = f"Rolling back podinfo.{namespace} manual rollback requested by webhook "
        return wanted in "\n".join(events(kube_api_client, namespace))

    await async_wait_for(told, 20, "the RolledBack event")
    assert target_image(kube_api_client, namespace) == OLD
    await canary_deleted(kube_api_client, namespace)
    await asyncio.to_thread(sim.wait_for_weight, 0, timeout=10)
    # post-rollout hooks run after a rollback too, with the Failed phase
    notified = await asyncio.to_thread(
        loadtester.wait_for_call, predicate=lambda c: c.cmd == "echo done", timeout=30
    )
    assert notified.phase == "Failed"


async def test_a_rollback_caused_by_a_muted_hook_is_stored_as_muted(
    kube: Kube,
    podinfo: str,
    loadtester: LoadTester,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    loadtester.fail("acceptance-test", 500)
    hooks = [w.model_dump(by_alias=True) for w in tutorial_spec(loadtester.url).analysis.webhooks]
    hooks[0]["muteAlert"] = True  # the pre-rollout acceptance test
    spec = tutorial_spec(loadtester.url, analysis={"webhooks": hooks, "threshold": 1})
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", spec)
    await controller_factory(namespace)

    release = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 60)
    assert release.status.phase == Phase.FAILED
    rolled_back = release.status.events[-1]
    assert rolled_back.type == "RolledBack" and rolled_back.mute_alert
    assert "acceptance-test failed" in rolled_back.details["cause"]


async def _now(value: bool) -> bool:
    return value
