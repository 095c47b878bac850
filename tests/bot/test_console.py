"""Console mode: the /canary language at a prompt, buttons as numbered choices."""

from __future__ import annotations

import io

import pytest

from bot.authz import Authorizer
from bot.config import parse_config
from bot.console import ConsoleNotifier, ConsoleSession
from bot.process import CONSOLE_AUTHORIZATION
from rollout.kube import Kube
from rollout.store import ReleaseStore

pytestmark = pytest.mark.cluster


class NoGroups:
    async def members(self, group: str) -> frozenset[str]:
        return frozenset()


def session(kube: Kube, namespace: str) -> tuple[ConsoleSession, ConsoleNotifier, io.StringIO]:
    from bot.operations import Operations

    config = parse_config(f"defaults: {{namespace: {namespace}}}\n")
    out = io.StringIO()
    notifier = ConsoleNotifier(out=out)
    operations = Operations(
        config=config,
        store=ReleaseStore(kube),
        kube=kube,
        authorizer=Authorizer(CONSOLE_AUTHORIZATION, NoGroups()),
    )
    return (
        ConsoleSession(operations, notifier, out=out, extra={"ping": lambda w: "pong"}),
        notifier,
        out,
    )


async def test_console_starts_a_release_and_a_numbered_choice_aborts_it(
    kube: Kube, podinfo: str
) -> None:
    console, notifier, out = session(kube, podinfo)
    answer = await console.handle("/canary start podinfo image=stefanprodan/podinfo:6.0.3")
    assert answer.startswith("Started release 'podinfo-"), answer
    store = ReleaseStore(kube)
    [release] = await store.list_objects(podinfo)

    notifier.offer(release)
    # the engine's table (rollout.actions): promote is offered before the canary runs
    assert "choose: [1] promote  [2] pause  [3] abort" in out.getvalue()
    assert "Abort requested" in await console.handle("3")
    stored = await store.get(podinfo, release.metadata.name)
    assert stored is not None
    [request] = stored.spec.control_requests
    assert (request.action, request.user) == ("abort", "U0CONSOLE")


async def test_console_answers_bad_input_helpfully_and_changes_nothing(
    kube: Kube, podinfo: str
) -> None:
    console, _, _ = session(kube, podinfo)
    typo = await console.handle("strat podinfo")
    assert "start" in typo, typo
    answer = await console.handle("start nosuch image=stefanprodan/podinfo:6.0.3")
    assert "Deployment nosuch not found" in answer
    assert "No such choice" in await console.handle("7")
    assert await console.handle("ping") == "pong"
    assert await ReleaseStore(kube).list_objects(podinfo) == []
