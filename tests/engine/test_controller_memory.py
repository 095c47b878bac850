"""What the controller keeps per release shrinks again when a release ends or goes."""

from __future__ import annotations

from typing import Any

import pytest

from rollout.controller import Controller
from rollout.kube import Kube
from rollout.models import Phase
from rollout.store import ReleaseStore
from tests.engine.test_rollout import tutorial_spec, wait_phase
from tests.fixtures.engine import ControllerFactory, async_wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]


def kept(controller: Controller, key: str) -> list[str]:
    """Which of the controller's per-release maps still hold ``key``."""
    maps = {
        "generations": controller._generations,
        "locks": controller._locks,
        "again": controller._again,
        "outbox.latest": controller.outbox._latest,
        "outbox.confirmed": controller.outbox._confirmed,
        "outbox.waiting": controller.outbox._waiting,
    }
    return sorted(name for name, values in maps.items() if key in values)


async def test_per_release_state_is_dropped_when_a_release_ends_and_when_it_is_deleted(
    kube: Kube, podinfo: str, loadtester: Any, controller_factory: ControllerFactory
) -> None:
    namespace = podinfo
    key = f"{namespace}/podinfo"
    store = ReleaseStore(kube)
    # refused at once (no such Deployment): an ended release with one event to deliver
    await store.create(
        namespace, "podinfo", tutorial_spec(loadtester.url, targetRef={"name": "nosuch"})
    )
    controller = await controller_factory(namespace)
    ended = await wait_phase(store, namespace, {Phase.FAILED}, 30)
    assert ended.status.event_seq >= 1

    async def only_generation_left() -> bool:
        return kept(controller, key) == ["generations"]

    await async_wait_for(
        only_generation_left, 30, f"the ended release to leave only {key}'s generation"
    )

    await store.delete(namespace, "podinfo")

    async def nothing_left() -> bool:
        return not kept(controller, key)

    await async_wait_for(nothing_left, 30, f"everything kept for {key} to go")


async def test_a_release_deleted_while_no_watch_ran_is_forgotten_at_the_next_list(
    kube: Kube, podinfo: str, controller_factory: ControllerFactory
) -> None:
    controller = await controller_factory(podinfo)
    ghost = f"{podinfo}/deleted-meanwhile"
    controller._generations[ghost] = 1

    await controller._resync()

    assert not kept(controller, ghost)
