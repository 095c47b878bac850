"""One Slack app, several clusters: one front, an engine per cluster, two real control planes.

The front (HTTP mode, real request signing through the Slack fake) serves clusters ``a``
(the session's control plane), ``b`` (a second one started here) and ``c`` (an API server
that is down: a closed port). Each of ``a`` and ``b`` runs an engine-only process that has
only the bot token. What a user sees: commands land in the cluster they name, each card
names its cluster, a click on a card of ``b`` steers ``b``'s release only, and a cluster
that is down gets a clear reply while the others keep working.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bot.config import BotConfig, Environment, parse_config
from bot.process import BotProcess, engine_only_problem, slack_problem
from rollout.kube import Kube
from rollout.models import CanaryRelease
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane, find_binaries
from sandbox.polling import wait_for
from sandbox.sample_app import deploy_podinfo
from sandbox.slack_fake import SlackFake
from tests.bot.harness import ALICE, BOB, ephemeral_texts, post_signed
from tests.fixtures.engine import CRD_PATH
from tests.fixtures.slack import SlackRequests, eventually

pytestmark = [pytest.mark.cluster]

NEW = "stefanprodan/podinfo:6.0.3"
CHANNEL_A = "C0DEPLOYS"  # engine a's threads; commands typed here name their cluster
CHANNEL_B = "C0ALERTS"  # engine b's threads (not a channel of any cluster's commands)
TEAM_B = "C0PRIVATE"  # commands typed here go to cluster b


@pytest.fixture(scope="module")
def second_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A second control plane (cluster b) with the CanaryRelease CRD."""
    workdir = tmp_path_factory.mktemp("cluster-b")
    plane = ControlPlane(workdir, bin_dir=find_binaries())
    plane.start()
    try:
        api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig))
        try:
            install_crd(api)
        finally:
            api.close()
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(workdir / "etcd", ignore_errors=True)


def install_crd(api: k8s.ApiClient) -> None:
    ext = k8s.ApiextensionsV1Api(api)
    body = yaml.safe_load(CRD_PATH.read_text())
    ext.create_custom_resource_definition(body)
    custom = k8s.CustomObjectsApi(api)

    def serving() -> bool:
        try:
            custom.list_cluster_custom_object("canarybot.io", "v1alpha1", "canaryreleases", limit=1)
        except ApiException:
            return False
        return True

    wait_for(serving, 60, "cluster b to serve CanaryReleases")


@pytest.fixture(scope="module")
def kube_b(second_plane: ControlPlane) -> Iterator[Kube]:
    gateway = Kube.connect(str(second_plane.kubeconfig))
    yield gateway
    gateway.close()


def podinfo_in_b(plane: ControlPlane, namespace: str) -> None:
    """The same namespace and podinfo in cluster b, rolled out."""
    api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig))
    try:
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))

        def account() -> bool:
            return bool(core.list_namespaced_service_account(namespace).items)

        wait_for(account, 60, f"the default ServiceAccount of {namespace} in cluster b")
        deploy_podinfo(api, namespace)

        def ready() -> bool:
            status = apps.read_namespaced_deployment("podinfo", namespace).status
            return (status.ready_replicas or 0) == 2

        wait_for(ready, 90, "podinfo to be ready in cluster b")
    finally:
        api.close()


def down_kubeconfig(source: Path, target: Path) -> Path:
    """``source`` pointed at a closed port: a cluster whose API server is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = yaml.safe_load(source.read_text())
    for entry in data["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{port}"
    target.write_text(yaml.safe_dump(data))
    return target


PROFILE = """
defaults:
  namespace: {namespace}
  profile: quick
  progressDeadlineSeconds: 60
  targetPort: 9898
profiles:
  quick:
    interval: 1s
    threshold: 3
    maxWeight: 20
    stepWeight: 10
"""


def front_config(namespace: str, a: Path, b: Path, c: Path) -> BotConfig:
    """Alice (@sre) may do everything everywhere; Bob may abort in cluster a only."""
    return parse_config(
        f"""
clusters:
  - name: a
    kubeconfig: {a}
  - name: b
    kubeconfig: {b}
    channels: [{TEAM_B}]
  - name: c
    kubeconfig: {c}
channels:
  default: {CHANNEL_A}
authorization:
  rules:
    - namespaces: ["{namespace}"]
      verbs: ["*"]
      groups: [S0SRE]
    - namespaces: ["{namespace}"]
      clusters: [a]
      verbs: [abort]
      users: [{BOB}]
"""
        + PROFILE.format(namespace=namespace)
    )


def engine_config(namespace: str, cluster: str, channel: str) -> BotConfig:
    return parse_config(
        f"cluster: {cluster}\nchannels:\n  default: {channel}\n"
        + PROFILE.format(namespace=namespace)
    )


def closed_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
async def topology(
    control_plane: ControlPlane,
    kube: Kube,
    second_plane: ControlPlane,
    kube_b: Kube,
    namespace: str,
    kube_api_client: k8s.ApiClient,
    slack_fake: SlackFake,
    signing_secret: str,
    tmp_path: Path,
) -> AsyncIterator[BotProcess]:
    """The front, and an engine-only process in each of clusters a and b."""
    deploy_podinfo(kube_api_client, namespace)
    podinfo_in_b(second_plane, namespace)
    down = down_kubeconfig(control_plane.kubeconfig, tmp_path / "down-kubeconfig")
    # engines: the bot token only (no app token, no signing secret), no Prometheus needed
    engine_env = Environment(
        slack_bot_token=SecretStr(slack_fake.bot_token),
        slack_api_url=slack_fake.api_url,
        prometheus_url=closed_url(),
    )
    assert slack_problem(engine_env) is not None  # not enough for a front
    assert engine_only_problem(engine_env) is None  # enough for an engine
    engines = [
        engine(engine_env, engine_config(namespace, name, channel), gateway, namespace)
        for name, channel, gateway in (("a", CHANNEL_A, kube), ("b", CHANNEL_B, kube_b))
    ]
    front = BotProcess(
        env=Environment(
            slack_bot_token=SecretStr(slack_fake.bot_token),
            slack_signing_secret=SecretStr(signing_secret),
            slack_api_url=slack_fake.api_url,
        ),
        config=front_config(namespace, control_plane.kubeconfig, second_plane.kubeconfig, down),
        registry=CollectorRegistry(),
        port=0,
        metrics_port=0,
        host="127.0.0.1",
        run_engine=False,
    )
    started: list[BotProcess] = []
    try:
        for process in (*engines, front):
            await process.start()
            started.append(process)
        for process in engines:  # each the leader of its own cluster's Lease
            controller = process.controller
            assert controller is not None
            await eventually(lambda c=controller: c.is_leader, within=30)
        yield front
    finally:
        for process in reversed(started):
            await process.stop()


def engine(env: Environment, config: BotConfig, gateway: Kube, namespace: str) -> BotProcess:
    return BotProcess(
        env=env,
        config=config,
        registry=CollectorRegistry(),
        metrics_port=0,
        host="127.0.0.1",
        engine_only=True,
        # leader-elected as in a cluster; the Lease lives in the test's namespace
        leader_election=True,
        namespace=namespace,
        lease_namespace=namespace,
        kube=gateway,
        identity=f"engine-{config.cluster}",
    )


async def one_release(store: ReleaseStore, namespace: str) -> CanaryRelease:
    releases = await eventually(lambda: store.list_objects(namespace), within=30)
    assert len(releases) == 1, [r.metadata.name for r in releases]
    return releases[0]


def card_with(fake: SlackFake, channel: str, action: str) -> dict[str, Any] | None:
    """The status card in ``channel`` once it offers ``action``."""
    for message in fake.messages(channel):
        if message.get("text", "").startswith("Canary ") and action in json.dumps(
            message.get("blocks")
        ):
            return message
    return None


def button(card: dict[str, Any], action: str) -> dict[str, Any]:
    return next(
        element
        for block in card["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == action
    )


async def told(fake: SlackFake, user: str, fragment: str) -> str:
    async def said() -> str | None:
        return next((t for t in ephemeral_texts(fake, user) if fragment in t), None)

    return await eventually(said, within=30, message=f"{user} was never told {fragment!r}")


async def test_one_front_serves_two_clusters_and_survives_a_third_that_is_down(
    topology: BotProcess,
    kube: Kube,
    kube_b: Kube,
    namespace: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
) -> None:
    front = topology
    store_a, store_b = ReleaseStore(kube), ReleaseStore(kube_b)

    async def command(text: str, channel: str = CHANNEL_A, user: str = ALICE) -> None:
        request = slack_requests.slash_command(text=text, channel_id=channel, user_id=user)
        assert (await post_signed(front.bound_port, request))[0] == 200

    # several clusters and none chosen: the reply names them and the flag
    await command(f"status podinfo -n {namespace}")
    await told(slack_fake, ALICE, "Which cluster? canary-bot serves a, b, c; add")
    await command("list --cluster nowhere")
    await told(slack_fake, ALICE, "No cluster named nowhere; clusters: a, b, c.")

    # a start for a and one for b (typed in b's channel, no flag): each in its cluster only
    await command(f"start podinfo image={NEW} --approval --cluster a")
    release_a = await one_release(store_a, namespace)
    assert release_a.spec.cluster == "a"
    await command(f"start podinfo image={NEW} --approval", channel=TEAM_B)
    release_b = await one_release(store_b, namespace)
    assert release_b.spec.cluster == "b"
    assert [r.metadata.name for r in await store_a.list_objects(namespace)] == [
        release_a.metadata.name
    ], "the start for cluster b created a release in cluster a"

    # each engine posts its own card, naming its cluster, with buttons that say so
    card_a = await eventually(lambda: card_with(slack_fake, CHANNEL_A, "canary_abort"), within=60)
    card_b = await eventually(lambda: card_with(slack_fake, CHANNEL_B, "canary_abort"), within=60)
    assert "*Cluster*\\na" in json.dumps(card_a["blocks"])
    assert "*Cluster*\\nb" in json.dumps(card_b["blocks"])
    abort_b = button(card_b, "canary_abort")
    assert abort_b["value"].startswith("b:"), abort_b["value"]
    assert abort_b["confirm"]["confirm"]["text"] == "Abort"  # Slack asks before the click

    # a click whose value names a cluster nobody configured goes nowhere
    forged = "zz:" + abort_b["value"].removeprefix("b:")
    hostile = slack_requests.block_actions(
        "canary_abort", forged, channel_id=CHANNEL_B, message_ts=card_b["ts"]
    )
    assert (await post_signed(front.bound_port, hostile))[0] == 200
    await told(slack_fake, ALICE, "No cluster named zz; clusters: a, b, c.")

    # Bob may abort in cluster a only: his click on b's card is refused, naming b
    refused = slack_requests.block_actions(
        "canary_abort",
        abort_b["value"],
        channel_id=CHANNEL_B,
        user_id=BOB,
        user_name="bob",
        message_ts=card_b["ts"],
    )
    assert (await post_signed(front.bound_port, refused))[0] == 200
    await told(
        slack_fake, BOB, f"not allowed to abort releases in namespace {namespace} of cluster b"
    )

    # Alice's Abort on b's card (same namespace and name in both clusters) reaches b only
    click = slack_requests.block_actions(
        "canary_abort", abort_b["value"], channel_id=CHANNEL_B, message_ts=card_b["ts"]
    )
    assert (await post_signed(front.bound_port, click))[0] == 200

    async def aborted_in_b() -> CanaryRelease | None:
        current = await store_b.get(namespace, release_b.metadata.name)
        if current is None or not current.spec.control_requests:
            return None
        return current

    current_b = await eventually(aborted_in_b, within=30, message="b's release was not aborted")
    assert [r.action for r in current_b.spec.control_requests] == ["abort"]
    assert current_b.spec.control_requests[0].user == ALICE
    current_a = await store_a.get(namespace, release_a.metadata.name)
    assert current_a is not None and current_a.spec.control_requests == []

    # cluster c's API server is down: a clear reply naming it, and a keeps working
    await command(f"status podinfo -n {namespace} --cluster c")
    down = await told(slack_fake, ALICE, "Cluster c did not answer as expected")
    assert "(Unavailable)" in down and "other clusters are not affected" in down
    assert "Traceback" not in down and "127.0.0.1" not in down
    await command(f"status podinfo -n {namespace} -c a")
    await told(slack_fake, ALICE, f"Canary {release_a.key}")

    # the start form keeps its cluster: submitted, it goes to c (down), not to a default
    await command("start -c c")
    [view] = await eventually(slack_fake.views, message="the start form was not opened")
    assert json.loads(view["private_metadata"]) == {"channel": CHANNEL_A, "cluster": "c"}
    values = {
        "deployment": {"deployment": {"type": "plain_text_input", "value": "podinfo"}},
        "images": {"images": {"type": "plain_text_input", "value": f"image={NEW}"}},
        "namespace": {"namespace": {"type": "plain_text_input", "value": namespace}},
    }
    submitted = slack_requests.view_submission(
        "canary_start", values, private_metadata=view["private_metadata"]
    )
    assert (await post_signed(front.bound_port, submitted))[0] == 200
    assert "(Unavailable)" in await told(slack_fake, ALICE, "Cluster c did not answer")
    # a form whose metadata was changed on the way names no configured cluster
    forged_form = slack_requests.view_submission(
        "canary_start", values, private_metadata=json.dumps({"channel": CHANNEL_A, "cluster": "zz"})
    )
    assert (await post_signed(front.bound_port, forged_form))[0] == 200
    await eventually(
        lambda: [t for t in ephemeral_texts(slack_fake, ALICE) if "No cluster named zz" in t][1:],
        within=30,
        message="the forged form was not refused",
    )
    assert len(await store_a.list_objects(namespace)) == 1
    assert len(await store_b.list_objects(namespace)) == 1
    # the engines posted with the bot token only: nobody opened a Socket Mode connection
    assert not slack_fake.calls("apps.connections.open")
