"""Which cluster a command, a click or a form means, and what a refusal says (no cluster
needed: ``Kube.connect`` reads a kubeconfig without contacting the API server)."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from bot.authz import Authorizer
from bot.clusters import ClusterNamedNotifier, Clusters, Routed, describe_failure_in
from bot.config import BotConfig, parse_config
from bot.config_clusters import ClusterEntry
from bot.console import ConsoleNotifier, ConsoleSession
from bot.operations import Operations
from bot.render.card import button_value
from bot.render.slack_reply import slack_text
from bot.reply import Reply
from rollout.kube import Kube, KubeError
from rollout.models import CanaryRelease, NotificationState, RolloutEvent
from rollout.store import ReleaseStore
from tests.bot.factories import release


class NoGroups:
    async def members(self, group: str) -> frozenset[str]:
        return frozenset()


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig with contexts eu and us (nothing listens there; nothing is asked)."""
    path = tmp_path / "kubeconfig"
    clusters = [
        {"name": n, "cluster": {"server": f"https://127.0.0.1:{p}"}}
        for n, p in (("eu", 1), ("us", 2))
    ]
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in ("eu", "us")],
        "current-context": "eu",
    }
    path.write_text(yaml.safe_dump(data))
    return path


def front(kubeconfig: Path, extra: str = "") -> tuple[BotConfig, Clusters]:
    return serve(
        parse_config(
            f"""
clusters:
  - {{name: prod-eu, kubeconfig: {kubeconfig}, context: eu}}
  - {{name: prod-us, kubeconfig: {kubeconfig}, context: us, channels: [C0US]}}
  - {{name: broken, kubeconfig: {kubeconfig.parent / "missing"}}}
{extra}
"""
        )
    )


def serve(config: BotConfig) -> tuple[BotConfig, Clusters]:
    """The clusters as the front builds them (bot.process), without Slack."""

    def build(entry: ClusterEntry) -> Operations:
        kube = Kube.connect(entry.kubeconfig, entry.context)
        return Operations(
            config=config.model_copy(update={"cluster": entry.name}),
            store=ReleaseStore(kube),
            kube=kube,
            authorizer=Authorizer(config.authorization, NoGroups(), entry.name, named=True),
        )

    return config, Clusters.several(config.clusters, build)


def routed(result: Routed | Reply) -> Routed:
    assert isinstance(result, Routed), slack_text(result) if isinstance(result, Reply) else result
    return result


def refusal(result: Routed | Reply) -> str:
    assert isinstance(result, Reply), result
    return slack_text(result)


def test_the_flag_then_the_channel_pick_the_cluster(kubeconfig: Path) -> None:
    _, clusters = front(kubeconfig)
    assert routed(clusters.route("prod-eu", "C0US")).name == "prod-eu"  # the flag wins
    chosen = routed(clusters.route(None, "C0US"))
    assert (chosen.name, chosen.named) == ("prod-us", True)
    assert chosen.operations.kube.server == "https://127.0.0.1:2"
    assert chosen.operations.config.cluster == "prod-us"  # what its releases will say


def test_several_clusters_and_none_chosen_lists_them(kubeconfig: Path) -> None:
    _, clusters = front(kubeconfig)
    said = refusal(clusters.route(None, "C0DEPLOYS"))
    assert "Which cluster? canary-bot serves prod-eu, prod-us, broken" in said
    assert "--cluster" in said
    clicked = refusal(clusters.route(None, "C0DEPLOYS", click=True))
    assert "This card does not say which cluster" in clicked


def test_the_default_cluster_takes_commands_from_other_channels(kubeconfig: Path) -> None:
    _, clusters = serve(
        parse_config(
            f"clusters:\n  - {{name: a, kubeconfig: {kubeconfig}}}\n"
            f"  - {{name: b, kubeconfig: {kubeconfig}, default: true, channels: [C0B]}}"
        )
    )
    assert routed(clusters.route(None, "C0ANY")).name == "b"
    assert routed(clusters.route("a", "C0B")).name == "a"


def test_an_unknown_cluster_is_refused_with_the_list(kubeconfig: Path) -> None:
    _, clusters = front(kubeconfig)
    assert "No cluster named prod-ap; clusters: prod-eu, prod-us, broken." in refusal(
        clusters.route("prod-ap", "C0US")
    )


def test_a_cluster_without_credentials_is_refused_and_the_others_serve(kubeconfig: Path) -> None:
    _, clusters = front(kubeconfig)
    said = refusal(clusters.route("broken", ""))
    assert "Cluster broken cannot be used: its credentials could not be loaded" in said
    assert "The other clusters are not affected" in said
    assert "not-a-real-token" not in said
    assert routed(clusters.route("prod-eu", "")).name == "prod-eu"


def test_an_unreachable_cluster_is_named_with_the_error_kind(kubeconfig: Path) -> None:
    _, clusters = front(kubeconfig)
    chosen = routed(clusters.route("prod-us", ""))
    exc = KubeError(0, "Unavailable", "API server unreachable: https://127.0.0.1:2 refused")
    said = slack_text(describe_failure_in(chosen, exc))
    assert "Cluster prod-us did not answer as expected (Unavailable)" in said
    assert "127.0.0.1" not in said


def test_a_single_cluster_front_accepts_only_its_own_name(kubeconfig: Path) -> None:
    _, several = front(kubeconfig)
    operations = routed(several.route("prod-eu", "")).operations
    named = Clusters.one(operations, "sandbox")
    assert routed(named.route(None, "")).named is False
    assert routed(named.route("sandbox", "")).name == "sandbox"
    assert "serves cluster sandbox only" in refusal(named.route("other", ""))
    # a click goes to the one cluster there is, whatever its card says
    assert routed(named.route("other", "", click=True)).operations is operations
    assert routed(Clusters.one(operations).route("anything", "")).operations is operations


async def test_a_rule_for_one_cluster_allows_there_only_and_the_refusal_names_it(
    kubeconfig: Path,
) -> None:
    rule = """
authorization:
  rules:
    - {namespaces: [test], clusters: [prod-eu], verbs: [abort], users: [U0BOB]}
"""
    _, clusters = front(kubeconfig, rule)
    eu = routed(clusters.route("prod-eu", "")).operations.authorizer
    us = routed(clusters.route("prod-us", "")).operations.authorizer
    assert await eu.allowed("U0BOB", "test", "abort")
    assert not await us.allowed("U0BOB", "test", "abort")
    refused = await us.refusal("U0BOB", "test", "abort")
    assert refused is not None
    assert "not allowed to abort releases in namespace test of cluster prod-us" in slack_text(
        refused
    )


class Recording:
    def __init__(self) -> None:
        self.seen: list[CanaryRelease] = []

    async def publish(
        self, release: CanaryRelease, events: Sequence[RolloutEvent]
    ) -> NotificationState:
        self.seen.append(release)
        return release.status.notification


async def test_an_engine_names_its_own_cluster_whatever_the_object_says() -> None:
    inner = Recording()
    notifier = ClusterNamedNotifier(inner, "prod-us")
    written = release(seq=4)  # its spec.cluster says prod-eu-1 (anyone with kubectl can)
    await notifier.publish(written, [])
    [seen] = inner.seen
    assert seen.spec.cluster == "prod-us"
    assert button_value(seen).startswith("prod-us:")
    assert written.spec.cluster == "prod-eu-1"  # the stored object is left alone


def test_a_routed_request_is_logged_with_its_cluster(
    kubeconfig: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, clusters = front(kubeconfig)
    caplog.set_level(logging.INFO, logger="canary_bot.clusters")
    routed(clusters.route("prod-us", "")).audit("abort", "U0BOB")
    [record] = [r for r in caplog.records if r.getMessage().startswith("request routed")]
    assert (record.cluster, record.action, record.user) == ("prod-us", "abort", "U0BOB")  # type: ignore[attr-defined]


async def test_the_console_of_a_front_of_clusters_asks_which_one(kubeconfig: Path) -> None:
    _, clusters = front(kubeconfig)
    fallback = clusters.fallback()
    assert fallback is not None
    out = io.StringIO()
    console = ConsoleSession(fallback, ConsoleNotifier(out=out), out=out, clusters=clusters)
    assert "Which cluster? canary-bot serves prod-eu, prod-us, broken" in await console.handle(
        "status podinfo -n test"
    )
    assert "No cluster named nowhere" in await console.handle("list -c nowhere")
    assert "Cluster broken cannot be used" in await console.handle("list -c broken")
