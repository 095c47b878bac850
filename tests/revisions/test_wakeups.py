"""rollout.hold.DeploymentWakeups: which Deployment watch events wake the revision loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from rollout.hold import DeploymentWakeups


def deployment(name: str, generation: int, namespace: str = "test") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "generation": generation}}


async def test_a_spec_change_of_a_managed_deployment_wakes_the_loop_from_another_thread() -> None:
    wakeups = DeploymentWakeups()
    wakeups.bind(asyncio.get_running_loop())
    wakeups.watch({("test", "podinfo")})

    def informer() -> None:  # the informer's thread
        wakeups.on_event("MODIFIED", deployment("podinfo", 2))
        wakeups.on_event("MODIFIED", deployment("other", 5))  # not managed
        wakeups.on_event("MODIFIED", deployment("podinfo", 2, namespace="prod"))

    thread = threading.Thread(target=informer)
    thread.start()
    due = await wakeups.wait(30)
    thread.join()

    assert list(due) == [("test", "podinfo")]
    assert due[("test", "podinfo")]["metadata"]["generation"] == 2


async def test_status_updates_do_not_wake_it_and_the_timeout_still_ends_the_wait() -> None:
    wakeups = DeploymentWakeups()
    wakeups.bind(asyncio.get_running_loop())
    wakeups.watch({("test", "podinfo")})
    wakeups.on_event("LISTED", deployment("podinfo", 3))
    await asyncio.sleep(0)  # the hand-over to the loop
    assert list(await wakeups.wait(5)) == [("test", "podinfo")]  # first sight counts

    wakeups.on_event("MODIFIED", deployment("podinfo", 3))  # status only: same generation
    wakeups.on_event("DELETED", deployment("podinfo", 4))
    await asyncio.sleep(0)

    assert await wakeups.wait(0.05) == {}
    wakeups.on_event("MODIFIED", deployment("podinfo", 4))
    await asyncio.sleep(0)
    assert list(await wakeups.wait(5)) == [("test", "podinfo")]
