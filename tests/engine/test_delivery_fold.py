"""A routine step's delivery record rides on the next step's status write.

Without folding, every analysis step wrote status twice: the step, then the record of
what the notifier delivered. These tests count the status writes of a running rollout on
the real API server, check that every event still reaches the notifier once across a
graceful restart, and that a record no step carries is stored on its own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from rollout.kube import Kube
from rollout.models import (
    CanaryRelease,
    CanaryReleaseSpec,
    NotificationState,
    ObjectMeta,
    Phase,
    RolloutEvent,
)
from rollout.outbox import Outbox
from rollout.store import ReleaseStore
from tests.engine.test_rollout import tutorial_spec, wait_phase
from tests.fixtures.engine import ControllerFactory, async_wait_for

T0 = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


class RecordingNotifier:
    """Confirms every event and remembers each ``seq`` it was handed, per release."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, int]] = Counter()

    async def publish(
        self, release: CanaryRelease, events: Sequence[RolloutEvent]
    ) -> NotificationState:
        for event in events:
            self.seen[(release.metadata.name, event.seq)] += 1
        state = release.status.notification
        last = events[-1].seq if events else state.delivered_seq
        return state.model_copy(
            update={
                "channel": "C1",
                "thread_ts": "1.0",
                "delivered_seq": max(last, state.delivered_seq),
            }
        )

    def repeated(self) -> list[tuple[str, int]]:
        return sorted(key for key, count in self.seen.items() if count > 1)


def status_writes(kube: Kube) -> int:
    return kube.requests.counts.get(("PUT", "canaryreleases/status"), 0)


@pytest.mark.cluster
@pytest.mark.prometheus
async def test_a_progressing_step_writes_status_once_and_every_event_is_delivered_once(
    kube: Kube,
    podinfo: str,
    traffic: Any,
    loadtester: Any,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    traffic(namespace, "podinfo", "podinfo", rps=40)
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", tutorial_spec(loadtester.url))
    notifier = RecordingNotifier()
    controller = await controller_factory(namespace, notifier=notifier)

    async def stepped(to: int) -> CanaryRelease | None:
        release = await store.get(namespace, "podinfo")
        return release if release is not None and release.status.canary_weight >= to else None

    first: CanaryRelease = await async_wait_for(lambda: stepped(10), 90, "weight 10")
    writes_before, steps_before = status_writes(kube), len(first.status.history)
    last: CanaryRelease = await async_wait_for(lambda: stepped(35), 90, "weight 35")
    writes, steps = status_writes(kube) - writes_before, len(last.status.history) - steps_before
    assert steps >= 4, f"only {steps} analysis steps between weight 10 and 35"
    # one status write per step (the record of the step before rides along), not two;
    # one more may fall at the window's edges
    assert writes <= steps + 1, f"{writes} status writes for {steps} steps"
    # the stored record trails by at most the step the notifier is still handling
    assert last.status.notification.delivered_seq >= last.status.event_seq - 2

    # a graceful stop stores what was delivered, so the next leader posts nothing again
    await controller.stop()
    await controller_factory(namespace, notifier=notifier, identity="next")
    ended = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 180)
    assert ended.status.phase == Phase.SUCCEEDED

    async def all_delivered() -> bool:
        release = await store.get(namespace, "podinfo")
        assert release is not None
        return release.status.notification.delivered_seq == release.status.event_seq

    await async_wait_for(all_delivered, 30, "every event's delivery to be stored")
    assert notifier.repeated() == [], "events handed to the notifier twice"
    assert sorted(seq for _, seq in notifier.seen) == list(range(1, ended.status.event_seq + 1))


def progressing(interval: str, delivered: int) -> CanaryRelease:
    spec = CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "app"},
            "ingressRef": {"name": "app"},
            "images": {"app": "example/app:2"},
            "service": {"port": 80},
            "analysis": {"interval": interval, "threshold": 2, "maxWeight": 50, "stepWeight": 10},
        }
    )
    release = CanaryRelease(metadata=ObjectMeta(name="app", namespace="ns", uid="u1"), spec=spec)
    events = [
        RolloutEvent(seq=seq, type="StepAdvanced", message=f"step {seq}", at=T0)
        for seq in range(1, 4)
    ]
    notification = NotificationState(channel="C1", thread_ts="1.0", delivered_seq=delivered)
    status = release.status.model_copy(
        update={
            "phase": Phase.PROGRESSING,
            "events": events,
            "event_seq": 3,
            "notification": notification,
        }
    )
    return release.model_copy(update={"status": status})


class MemoryStore:
    """The outbox's store callback over one in-memory notification state."""

    def __init__(self) -> None:
        self.stored: list[NotificationState] = []

    async def store(self, namespace: str, name: str, state: NotificationState) -> None:
        self.stored.append(state)


async def _confirm_all(release: CanaryRelease) -> NotificationState:
    """What a notifier answers: the thread (opened on the first post), all delivered."""
    return NotificationState(
        channel="C1", thread_ts="1.0", delivered_seq=release.status.event_seq
    )


def outbox(store: MemoryStore, window: float) -> Outbox:
    async def store_state(namespace: str, name: str, state: NotificationState) -> None:
        await store.store(namespace, name, state)

    return Outbox(
        _confirm_all,
        store_state,  # type: ignore[arg-type]  # returns nothing: the outbox ignores it
        lambda key: asyncio.Lock(),
        lambda: True,
        fold_window=window,
    )


async def test_a_routine_record_no_step_carries_is_stored_on_its_own() -> None:
    store = MemoryStore()
    box = outbox(store, window=1.5)
    box.offer("ns/app", progressing("1s", delivered=1))

    async def stored() -> bool:
        return bool(store.stored)

    await async_wait_for(stored, 5, "the waiting record to be stored")
    assert [s.delivered_seq for s in store.stored] == [3]


async def test_a_record_a_step_carried_is_not_stored_again() -> None:
    store = MemoryStore()
    box = outbox(store, window=1.5)
    box.offer("ns/app", progressing("1s", delivered=1))
    await asyncio.sleep(0.05)
    # the next step's write folds the confirmed state in and is offered as usual
    carried = box.fold("ns/app", NotificationState(channel="C1", thread_ts="1.0", delivered_seq=1))
    assert carried.delivered_seq == 3
    box.offer("ns/app", progressing("1s", delivered=3))
    await asyncio.sleep(2.0)
    assert store.stored == []


async def test_a_long_interval_or_a_new_thread_is_stored_at_once() -> None:
    store = MemoryStore()
    box = outbox(store, window=30)
    box.offer("ns/long", progressing("1m", delivered=1))
    fresh = progressing("1s", delivered=0)
    status = fresh.status.model_copy(update={"notification": NotificationState()})
    box.offer("ns/fresh", fresh.model_copy(update={"status": status}))

    async def both() -> bool:
        return len(store.stored) == 2

    await async_wait_for(both, 5, "both records to be stored at once")


async def test_flush_stores_every_waiting_record() -> None:
    store = MemoryStore()
    box = outbox(store, window=30)
    box.offer("ns/app", progressing("1s", delivered=1))
    await asyncio.sleep(0.05)
    assert store.stored == []
    await box.flush()
    assert [s.delivered_seq for s in store.stored] == [3]
