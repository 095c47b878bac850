"""Slack goes away in the middle of a release started from Slack, then comes back.

The whole process runs (HTTP mode, engine, notifier) against the real control plane,
Prometheus and simulated traffic. Once the release's card is in the channel and traffic
has started to shift, the Slack fake answers every Web API call with HTTP 429
(``Retry-After``) and then with HTTP 500 pages. Slack's real outages last minutes; the
window here is ``RATE_LIMITED + SERVER_ERRORS`` seconds (about half a minute), which is
already several analysis intervals and several notifier deadlines (8 s each), so every
path (retry, give up, re-offer) runs more than once while CI time stays reasonable.

What a user must see: the rollout does not wait for Slack (the canary Ingress weight
keeps moving during the outage and the release ends as it would have), and once Slack
answers again the thread tells the whole story in order, every event once, and the card
shows the final state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from rollout.kube import Kube, NotFound
from rollout.models import CanaryRelease, Phase, RolloutEvent
from rollout.store import ReleaseStore
from sandbox.slack_fake import SlackFake
from tests.bot.harness import config_for, environment, post_signed, running_bot
from tests.fixtures.slack import SlackRequests, eventually, send_to_app

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

CHANNEL = "C0DEPLOYS"
NEW = "stefanprodan/podinfo:6.0.3"
WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
# Seconds of HTTP 429 (each answered with Retry-After: RETRY_AFTER), then of HTTP 500.
RATE_LIMITED = 10.0
RETRY_AFTER = 5
SERVER_ERRORS = 20.0
# Five steps of 10 % every 3 s: the release is still moving when the outage starts and
# has steps left for the outage to (not) hold up.
START = f"start podinfo image={NEW} --max 50 --step 10 --interval 3s"


@dataclass
class WeightLog:
    """Every canary weight the Ingress had, with when it was first seen (monotonic)."""

    seen: list[tuple[float, int]] = field(default_factory=list)

    def during(self, start: float, end: float) -> list[int]:
        """Weights first seen in ``[start, end)``."""
        return [w for at, w in self.seen if start <= at < end]

    @property
    def weights(self) -> list[int]:
        """The weights in the order they appeared."""
        return [w for _, w in self.seen]


@asynccontextmanager
async def watching_weight(kube: Kube, namespace: str, ingress: str) -> AsyncIterator[WeightLog]:
    """Poll the canary Ingress's weight in the background and log every change."""
    log = WeightLog()
    path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/{ingress}-canary"

    async def poll() -> None:
        while True:
            try:
                ingress_obj = await kube.request("GET", path)
            except NotFound:
                ingress_obj = None
            annotations = ((ingress_obj or {}).get("metadata") or {}).get("annotations") or {}
            if WEIGHT in annotations:
                weight = int(annotations[WEIGHT])
                if not log.seen or log.seen[-1][1] != weight:
                    log.seen.append((time.monotonic(), weight))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(poll())
    try:
        yield log
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def roots(fake: SlackFake) -> list[dict[str, Any]]:
    """Status cards in the channel (thread roots posted by the bot)."""
    return [m for m in fake.messages(CHANNEL) if m.get("text", "").startswith("Canary ")]


def expected_replies(events: list[RolloutEvent]) -> list[str]:
    """The thread replies the events make: one per event, a repeated message said once."""
    texts: list[str] = []
    previous: tuple[str, str] | None = None
    for event in events:
        if (event.type, event.message) != previous:
            texts.append(event.message)
        previous = (event.type, event.message)
    return texts


def story(release: CanaryRelease) -> str:
    """The release's events, for failure messages."""
    return "\n".join(f"  {e.seq:>3} {e.type:<13} {e.message}" for e in release.status.events)


async def test_a_slack_outage_neither_holds_up_the_rollout_nor_loses_or_repeats_messages(
    kube: Kube,
    podinfo: str,
    traffic: Any,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    traffic(namespace, "podinfo", "podinfo", rps=40)
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with (
        running_bot(env, config_for(namespace), kube, run_engine=True, namespace=namespace) as bot,
        watching_weight(kube, namespace, "podinfo") as weights,
    ):
        url = f"http://127.0.0.1:{bot.bound_port}/slack/events"
        status, _ = await post_signed(bot.bound_port, slack_requests.slash_command(text=START))
        assert status == 200
        [release] = await eventually(
            lambda: store.list_objects(namespace), message="/canary start created no release"
        )
        name = release.metadata.name
        card = await eventually(lambda: roots(slack_fake), within=60, message="no status card")
        card_ts = card[0]["ts"]
        await eventually(
            lambda: any(w > 0 for w in weights.weights),
            within=60,
            interval=0.1,
            message="the canary never got traffic",
        )

        # -- Slack goes away ------------------------------------------------------------
        slack_fake.rate_limit(seconds=RATE_LIMITED, retry_after=RETRY_AFTER)
        slack_fake.server_errors(seconds=RATE_LIMITED + SERVER_ERRORS, status=500)
        outage_start = time.monotonic()
        outage_end = outage_start + RATE_LIMITED + SERVER_ERRORS
        posted_before = len(slack_fake.thread(CHANNEL, card_ts))
        before = await store.get(namespace, name)
        assert before is not None
        weight_before = before.status.canary_weight

        # a person asking for the status meanwhile is still answered in time: the ack
        # needs nothing from the Web API
        answer = await send_to_app(url, slack_requests.slash_command(text=f"status {name}"))
        assert answer.status == 200, answer

        while time.monotonic() < outage_end:
            await asyncio.sleep(0.2)
        during = await store.get(namespace, name)
        assert during is not None
        refused = [c for c in slack_fake.calls() if c.status in (429, 500)]
        assert {c.status for c in refused} == {429, 500}, (
            "the bot never met the outage: "
            f"{sorted({(c.method, c.status) for c in slack_fake.calls()})}"
        )
        moved = weights.during(outage_start, outage_end)
        assert moved, (
            f"the canary weight stayed at {weight_before} % while Slack was down "
            f"(weights seen: {weights.seen}):\n{story(during)}"
        )
        stuck_in_thread = len(slack_fake.thread(CHANNEL, card_ts))
        assert stuck_in_thread == posted_before, "the thread grew while Slack refused every call"

        # -- Slack is back --------------------------------------------------------------
        async def finished() -> CanaryRelease | None:
            current = await store.get(namespace, name)
            return current if current is not None and current.status.phase.is_final else None

        final = await eventually(
            finished, within=120, interval=0.5, message=f"{name} did not finish"
        )

        async def delivered() -> CanaryRelease | None:
            current = await store.get(namespace, name)
            if current is None:
                return None
            note = current.status.notification
            return current if note.delivered_seq == current.status.event_seq else None

        final = await eventually(
            delivered,
            within=60,
            interval=0.5,
            message=(
                "the release's events were not all delivered after Slack came back:\n"
                + story(final)
                + f"\nnotification state: {final.status.notification}"
            ),
        )

        def card_is_final() -> bool:
            text = json.dumps(slack_fake.message(CHANNEL, card_ts), ensure_ascii=False)
            return "Succeeded" in text and "took " in text and '"actions"' not in text

        await eventually(card_is_final, within=30, message="the card does not show the final state")
        await bot.notifier.flush()  # type: ignore[union-attr]  # a SlackNotifier here

    print("DEBUG outage", outage_start, outage_end)
    print("DEBUG weights", [(round(a - outage_start, 1), w) for a, w in weights.seen])
    print("DEBUG events", story(final))
    print("DEBUG timing", final.status.started_at, final.status.finished_at)
    print(
        "DEBUG calls",
        [
            (c.method, c.status, round(c.at - time.time() + time.monotonic() - outage_start, 1))
            for c in slack_fake.calls()
        ],
    )
    assert final.status.phase == Phase.SUCCEEDED, story(final)
    assert weights.weights == [0, 10, 20, 30, 40, 50, 0] or weights.weights[-1] in (0, 50), (
        weights.seen
    )
    replies = [m["text"] for m in slack_fake.thread(CHANNEL, card_ts)[1:] if not m.get("files")]
    wanted = expected_replies(final.status.events)
    assert final.status.events[0].seq == 1, "the outbox dropped events; the story is incomplete"
    assert replies == wanted, (
        "the thread does not tell each event once, in order:\n"
        + "\n".join(f"  got:  {t}" for t in replies)
        + "\n"
        + "\n".join(f"  want: {t}" for t in wanted)
    )
    # nothing else went to the channel: one card, no stray top-level posts
    assert [m["ts"] for m in slack_fake.messages(CHANNEL)] == [card_ts]
