"""Slack goes away in the middle of a release started from Slack, then comes back.

The whole process runs (HTTP mode, engine, notifier) against the real control plane,
Prometheus and simulated traffic. Once the release's card is in the channel, the Slack
fake answers every Web API call with HTTP 429 (``Retry-After``) and then with HTTP 500
pages. Slack's real outages last minutes; the window here is ``RATE_LIMITED +
SERVER_ERRORS`` = 30 s, which is already ten analysis intervals and several notifier
deadlines (8 s each), so every path (wait out Retry-After, give up, re-offer) runs more
than once while CI time stays reasonable.

What a user must see: the rollout does not wait for Slack (the canary Ingress weight
keeps moving during the outage and the release ends as it would have), and once Slack
answers again the thread tells the whole story in order, every event once, and the card
shows the final state.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.notifier import SlackNotifier
from bot.process import BotProcess
from rollout.kube import Kube, NotFound
from rollout.models import CanaryRelease, Phase, RolloutEvent
from rollout.store import ReleaseStore
from sandbox.slack_fake import SlackFake
from tests.bot.harness import ALICE, config_for, environment, post_signed, running_bot
from tests.fixtures.slack import SlackRequests, eventually, send_to_app

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

CHANNEL = "C0DEPLOYS"
NEW = "stefanprodan/podinfo:6.0.3"
WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
# Seconds of HTTP 429 (each answered with Retry-After: RETRY_AFTER), then of HTTP 500.
RATE_LIMITED = 10.0
RETRY_AFTER = 5
SERVER_ERRORS = 20.0
OUTAGE = RATE_LIMITED + SERVER_ERRORS


@dataclass
class WeightLog:
    """Every canary weight the Ingress had, with when it was first seen (monotonic)."""

    seen: list[tuple[float, int]] = field(default_factory=list)

    def rises_during(self, start: float, end: float) -> list[int]:
        """Weights first seen in ``[start, end)`` that were higher than the one before."""
        return [
            weight
            for (_, before), (at, weight) in zip(self.seen, self.seen[1:], strict=False)
            if start <= at < end and weight > before
        ]

    @property
    def weights(self) -> list[int]:
        """The weights in the order they appeared."""
        return [w for _, w in self.seen]


@asynccontextmanager
async def watching_weight(kube: Kube, namespace: str, ingress: str) -> AsyncIterator[WeightLog]:
    """Poll the canary Ingress's weight in the background and log every change.

    Polling (every 0.1 s, far shorter than a step) rather than a watch keeps this
    independent of the engine's own watch machinery.
    """
    log = WeightLog()
    path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/{ingress}-canary"

    async def poll() -> None:
        while True:
            try:
                ingress_obj: dict[str, Any] | None = await kube.request("GET", path)
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


def cards(fake: SlackFake) -> list[dict[str, Any]]:
    """Status cards in the channel (the thread roots the bot posted)."""
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


def thread_replies(fake: SlackFake, card_ts: str) -> list[str]:
    """The thread's event replies as Slack shows them (mrkdwn's &amp; &lt; &gt; undone; the
    rollout chart's file share left out)."""
    return [
        html.unescape(m["text"]) for m in fake.thread(CHANNEL, card_ts)[1:] if not m.get("files")
    ]


def story(release: CanaryRelease) -> str:
    """The release's events, for failure messages."""
    return "\n".join(f"  {e.seq:>3} {e.type:<13} {e.message}" for e in release.status.events)


def compare(got: list[str], wanted: list[str]) -> str:
    """Both lists of replies side by side, for failure messages."""
    return "\n".join([*(f"  got:  {t}" for t in got), *(f"  want: {t}" for t in wanted)])


async def release_when(
    store: ReleaseStore, namespace: str, name: str, what: str, within: float, check: Any
) -> CanaryRelease:
    """Poll the release until ``check(release)`` holds; fail saying ``what`` and its story."""
    last: list[CanaryRelease] = []

    async def current() -> CanaryRelease | None:
        release = await store.get(namespace, name)
        if release is None:
            return None
        last[:] = [release]
        return release if check(release) else None

    try:
        return await eventually(current, within=within, interval=0.5, message=f"{name}: {what}")
    except AssertionError as exc:
        told = f"\n{story(last[0])}\nnotification: {last[0].status.notification}" if last else ""
        raise AssertionError(f"{exc}{told}") from None


def all_delivered(release: CanaryRelease) -> bool:
    """Whether the notifier confirmed every event in the outbox."""
    return release.status.notification.delivered_seq == release.status.event_seq


async def flush(bot: BotProcess) -> None:
    """Let queued card refreshes and the chart upload finish before reading the fake."""
    if isinstance(bot.notifier, SlackNotifier):
        await bot.notifier.flush()


def outage(fake: SlackFake) -> float:
    """429s with Retry-After, then 500s; returns when Slack answers again (monotonic)."""
    # Faults are matched in the order they are added: the 429s win while both are live.
    fake.rate_limit(seconds=RATE_LIMITED, retry_after=RETRY_AFTER)
    fake.server_errors(seconds=OUTAGE, status=500)
    return time.monotonic() + OUTAGE


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
    # Ten steps of 5 % every 3 s (about 45 s without any outage): the outage covers most
    # of the steps and the release still has steps left when Slack comes back, so this
    # test is about delivery catching up (an ending inside the outage is the next test).
    start = f"start podinfo image={NEW} --max 50 --step 5 --interval 3s"
    async with (
        running_bot(env, config_for(namespace), kube, run_engine=True, namespace=namespace) as bot,
        watching_weight(kube, namespace, "podinfo") as weights,
    ):
        url = f"http://127.0.0.1:{bot.bound_port}/slack/events"
        assert (await post_signed(bot.bound_port, slack_requests.slash_command(text=start)))[
            0
        ] == 200
        [release] = await eventually(
            lambda: store.list_objects(namespace), message="/canary start created no release"
        )
        name = release.metadata.name
        card_ts = (await eventually(lambda: cards(slack_fake), within=60, message="no card"))[0][
            "ts"
        ]
        await eventually(
            lambda: any(w > 0 for w in weights.weights),
            within=60,
            interval=0.1,
            message="the canary never got traffic",
        )

        # -- Slack goes away ------------------------------------------------------------
        outage_start = time.monotonic()
        faults_added = time.time()  # the fake's message ts are wall-clock seconds
        outage_end = outage(slack_fake)
        faults_on = time.time()

        # Someone asks for the status meanwhile: the ack needs nothing from the Web API,
        # so Slack gets it in time and the person is answered through the response URL.
        status_request = slack_requests.slash_command(text=f"status {name}")
        assert (await send_to_app(url, status_request)).status == 200
        await eventually(
            lambda: [e for e in slack_fake.ephemerals(user=ALICE) if name in json.dumps(e)],
            message="the status asked during the outage was never answered",
        )

        while time.monotonic() < outage_end:
            await asyncio.sleep(0.2)
        refused = {c.status for c in slack_fake.calls() if c.status != 200}
        assert refused == {429, 500}, f"the bot did not meet both kinds of failure: {refused}"
        # Nothing was accepted into the thread while every call was refused (judged by
        # each message's ts, so a delivery right after Slack came back is not counted).
        during = [
            m
            for m in slack_fake.thread(CHANNEL, card_ts)
            if faults_on < float(m["ts"]) < faults_added + OUTAGE
        ]
        assert not during, f"the thread grew while Slack refused every call: {during}"
        rises = weights.rises_during(outage_start, outage_end)
        assert len(rises) >= 2, (
            "the canary weight did not keep moving up while Slack was down "
            f"(rises during the outage: {rises}; all changes: {weights.seen})"
        )
        ongoing = await store.get(namespace, name)
        assert ongoing is not None and not ongoing.status.phase.is_final, (
            "precondition: the release should still run when Slack comes back"
        )

        # -- Slack is back --------------------------------------------------------------
        final = await release_when(
            store, namespace, name, "did not finish", 120, lambda r: r.status.phase.is_final
        )
        final = await release_when(
            store,
            namespace,
            name,
            "not every event was delivered after Slack came back",
            60,
            all_delivered,
        )

        def card_is_final() -> bool:
            card = json.dumps(slack_fake.message(CHANNEL, card_ts), ensure_ascii=False)
            return "Succeeded" in card and "took " in card and '"actions"' not in card

        await eventually(card_is_final, within=30, message="the card does not show the end")
        await flush(bot)

    assert final.status.phase == Phase.SUCCEEDED, story(final)
    assert max(weights.weights) == 50, weights.seen
    assert final.status.events[0].seq == 1, "the outbox dropped events: the story is partial"
    replies, wanted = thread_replies(slack_fake, card_ts), expected_replies(final.status.events)
    assert replies == wanted, "the thread does not tell each event once, in order:\n" + compare(
        replies, wanted
    )
    # one card and nothing else at the top level: no stray or repeated root posts
    assert [m["ts"] for m in slack_fake.messages(CHANNEL)] == [card_ts]


async def test_a_rollback_during_a_slack_outage_is_told_and_alerted_once_slack_is_back(
    kube: Kube,
    podinfo: str,
    traffic: Any,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with running_bot(
        env, config_for(namespace), kube, run_engine=True, namespace=namespace
    ) as bot:
        start = slack_requests.slash_command(text=f"start podinfo image={NEW}")
        assert (await post_signed(bot.bound_port, start))[0] == 200
        [release] = await eventually(lambda: store.list_objects(namespace))
        name = release.metadata.name
        card_ts = (await eventually(lambda: cards(slack_fake), within=60, message="no card"))[0][
            "ts"
        ]
        # the canary fails as soon as it gets traffic, and Slack is down when it does
        sim.set_side("canary", error_rate=0.5)
        outage_end = outage(slack_fake)
        failed = await release_when(
            store, namespace, name, "did not end", 120, lambda r: r.status.phase.is_final
        )
        assert time.monotonic() < outage_end, "precondition: the release ended after the outage"
        assert failed.status.phase == Phase.FAILED, story(failed)

        final = await release_when(
            store,
            namespace,
            name,
            "the rollback was never delivered after Slack came back",
            OUTAGE + 30,
            all_delivered,
        )

        def card_is_final() -> bool:
            card = json.dumps(slack_fake.message(CHANNEL, card_ts), ensure_ascii=False)
            return "Failed" in card and '"actions"' not in card

        await eventually(card_is_final, within=30, message="the card does not show the end")
        await flush(bot)

    replies, wanted = thread_replies(slack_fake, card_ts), expected_replies(final.status.events)
    assert replies == wanted, "the thread does not tell each event once, in order:\n" + compare(
        replies, wanted
    )
    alerts = [m for m in slack_fake.messages(CHANNEL) if ":rotating_light:" in m.get("text", "")]
    assert len(alerts) == 1, [m.get("text") for m in slack_fake.messages(CHANNEL)]
