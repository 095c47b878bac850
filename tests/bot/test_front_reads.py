"""Commands read CanaryReleases from the front's own watch, not a LIST or GET each."""

from __future__ import annotations

import asyncio
import copy

import pytest

from rollout.kube import DEPLOYMENTS, INGRESSES, RELEASES, Kube
from rollout.models import CanaryReleaseSpec, new_object
from rollout.shards import SHARD_LABEL
from rollout.store import InvalidRelease, ParsedReleases, ReleaseStore
from sandbox.sample_app import PODINFO_IMAGE
from sandbox.slack_fake import SlackFake
from tests.bot.harness import (
    ALICE,
    config_for,
    environment,
    ephemeral_texts,
    post_signed,
    running_bot,
)
from tests.fixtures.slack import SlackRequests, eventually

pytestmark = pytest.mark.cluster

NEW = "stefanprodan/podinfo:6.0.3"
SPEC = CanaryReleaseSpec.model_validate(
    {
        "targetRef": {"name": "podinfo"},
        "ingressRef": {"name": "podinfo"},
        "images": {"podinfod": NEW},
        "analysis": {"interval": "10s", "maxWeight": 30, "stepWeight": 10},
    }
)


def release_gets(kube: Kube) -> int:
    return kube.requests.counts.get(("GET", "canaryreleases"), 0)


async def test_commands_read_every_shards_releases_from_the_watch(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube, namespace=namespace) as bot:
        assert bot.reads is not None
        informer = bot.reads.informer(RELEASES)
        assert informer is not None
        assert await asyncio.to_thread(informer.wait_synced, 30), informer.stats
        # written by someone else, in a shard: an engine's informer would not hold it
        await ReleaseStore(kube).create(
            namespace, "podinfo-shardb", SPEC, labels={SHARD_LABEL: "b"}
        )
        await eventually(
            lambda: informer.select(namespace), message="the watch did not bring the release"
        )
        lists, gets = informer.stats.lists, release_gets(kube)
        for text in ("status podinfo", "status podinfo-shardb", "list", "history podinfo"):
            status, _ = await post_signed(bot.bound_port, slack_requests.slash_command(text=text))
            assert status == 200
        told = await eventually(
            lambda: texts if len(texts := ephemeral_texts(slack_fake, ALICE)) >= 4 else None
        )
        # the only GETs of releases are the informer's own (re)lists, if any happened
        assert release_gets(kube) - gets == informer.stats.lists - lists
    assert sum(f"Canary podinfo-shardb.{namespace}" in t for t in told) == 2, told
    assert any(f"Active releases in {namespace}" in t and "podinfo-shardb" in t for t in told)
    assert "No finished releases of podinfo." in told


async def test_a_start_is_seen_by_the_next_command_and_reads_no_release_list(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube, namespace=namespace) as bot:
        assert bot.reads is not None
        informer = bot.reads.informer(RELEASES)
        assert informer is not None
        assert await asyncio.to_thread(informer.wait_synced, 30), informer.stats
        lists, gets = informer.stats.lists, release_gets(kube)
        start = slack_requests.slash_command(text=f"start podinfo image={NEW}")
        await post_signed(bot.bound_port, start)
        [started] = await eventually(lambda: ephemeral_texts(slack_fake, ALICE))
        await post_signed(bot.bound_port, slack_requests.slash_command(text="status podinfo"))
        told = await eventually(lambda: ephemeral_texts(slack_fake, ALICE)[1:])
        # the preflight's list of podinfo's releases came from the watch, too
        assert release_gets(kube) - gets == informer.stats.lists - lists
    assert "Started release `podinfo-" in started
    name = started.split("`")[1]
    assert f"Canary {name}.{namespace}" in told[0], told


def test_an_unchanged_version_is_validated_once_and_a_new_one_again() -> None:
    parsed = ParsedReleases(size=2)
    raw = new_object("podinfo-a", "test", SPEC)
    raw["metadata"].update(uid="uid-a", resourceVersion="7")
    first = parsed.parse(raw)
    assert parsed.parse(copy.deepcopy(raw)) is first
    raw["metadata"]["resourceVersion"] = "8"
    raw["spec"]["images"] = {"podinfod": "stefanprodan/podinfo:6.0.4"}
    second = parsed.parse(raw)
    assert second is not first and second.spec.images == {"podinfod": "stefanprodan/podinfo:6.0.4"}
    # without a version (an object not from the API server) nothing is remembered
    del raw["metadata"]["resourceVersion"]
    assert parsed.parse(raw) is not parsed.parse(raw)
    # an invalid object is refused every time, with the reason
    raw["metadata"]["resourceVersion"] = "9"
    raw["spec"]["images"] = "not a map"
    with pytest.raises(InvalidRelease, match=r"spec\.images"):
        parsed.parse(raw)
    with pytest.raises(InvalidRelease):
        parsed.parse(raw)


async def test_with_the_engine_in_the_process_a_start_reads_the_engines_watch(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    env = environment(slack_fake, signing_secret=signing_secret)
    config = config_for(namespace)
    async with running_bot(env, config, kube, namespace=namespace, run_engine=True) as bot:
        assert bot.reads is not None and bot.controller is not None
        engine = bot.controller.cache
        assert await asyncio.to_thread(engine.wait_synced, 30), "the engine's informers"
        assert await asyncio.to_thread(bot.reads.wait_synced, 30), "the front's informer"
        watched = [i for i in (engine.informer(DEPLOYMENTS), engine.informer(INGRESSES)) if i]
        lists = [i.stats.lists for i in watched]
        before = dict(kube.requests.counts)
        # the image it already runs: every check of a start runs, and it is refused
        start = slack_requests.slash_command(text=f"start podinfo image={PODINFO_IMAGE}")
        await post_signed(bot.bound_port, start)
        [told] = await eventually(lambda: ephemeral_texts(slack_fake, ALICE))
        gets = [
            kube.requests.counts.get(("GET", i.resource.plural), 0)
            - before.get(("GET", i.resource.plural), 0)
            for i in watched
        ]
        # no GET of the Deployment or the Ingress but the informers' own relists, if any
        assert gets == [i.stats.lists - n for i, n in zip(watched, lists, strict=True)]
    assert len(watched) == 2
    assert f"already runs {PODINFO_IMAGE}; nothing to release" in told, told
