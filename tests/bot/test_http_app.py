"""HTTP mode through real signed requests: what users see, and what does (not) change."""

from __future__ import annotations

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.render.card import button_value, card_blocks, headline
from bot.render.limits import check_message
from rollout.kube import Kube
from rollout.models import NotificationState
from rollout.store import ReleaseStore
from sandbox.slack_fake import SlackFake
from tests.bot.harness import (
    ALICE,
    BOB,
    MALLORY,
    config_for,
    environment,
    ephemeral_texts,
    post_signed,
    running_bot,
)
from tests.fixtures.slack import SlackRequests, eventually

pytestmark = pytest.mark.cluster

NEW = "stefanprodan/podinfo:6.0.3"


async def releases_in(kube: Kube, namespace: str) -> list[str]:
    return [r.metadata.name for r in await ReleaseStore(kube).list_objects(namespace)]


async def test_help_is_answered_in_the_ack(
    kube: Kube,
    namespace: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube) as bot:
        status, body = await post_signed(bot.bound_port, slack_requests.slash_command(text="help"))
        assert status == 200
        assert "/canary start &lt;deployment&gt; image=&lt;ref&gt;" in body  # shown as typed
        status, body = await post_signed(
            bot.bound_port, slack_requests.slash_command(text="strat podinfo")
        )
        assert status == 200 and "did you mean `/canary start`?" in body
        assert "Traceback" not in body


@pytest.mark.parametrize("forgery", ["stale", "wrong_secret", "tampered"])
async def test_forged_or_stale_requests_get_401_and_change_nothing(
    forgery: str,
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube) as bot:
        request = slack_requests.slash_command(
            text=f"start podinfo image={NEW} -n {namespace}", **{forgery: True}
        )
        status, _ = await post_signed(bot.bound_port, request)
        assert status == 401
    assert await releases_in(kube, namespace) == []
    assert slack_fake.ephemerals() == [] and slack_fake.response_url_posts() == []


async def test_a_refused_user_is_told_how_to_get_access_and_nothing_changes(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube) as bot:
        request = slack_requests.slash_command(
            text=f"start podinfo image={NEW}", user_id=MALLORY, user_name="mallory"
        )
        status, _ = await post_signed(bot.bound_port, request)
        assert status == 200
        told = await eventually(lambda: ephemeral_texts(slack_fake, MALLORY))
    assert f"not allowed to start releases in namespace {namespace}" in told[0]
    assert "<!subteam^S0SRE>" in told[0]
    assert await releases_in(kube, namespace) == []


async def test_start_creates_one_release_and_a_bad_start_creates_none(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube) as bot:
        missing = slack_requests.slash_command(text="start nginx image=nginx:1.27")
        await post_signed(bot.bound_port, missing)
        told = await eventually(lambda: ephemeral_texts(slack_fake, ALICE))
        assert "Nothing was started" in told[0] and "Deployment nginx not found" in told[0]
        assert await releases_in(kube, namespace) == []

        start = slack_requests.slash_command(text=f"start podinfo image={NEW}")
        status, _ = await post_signed(bot.bound_port, start)
        assert status == 200
        told = await eventually(lambda: ephemeral_texts(slack_fake, ALICE)[1:])
        assert "Started release `podinfo-" in told[0] and "3 steps: 10% → 20% → 30%" in told[0]
        for text in ("status podinfo", "plan podinfo --step 15", "history podinfo"):
            await post_signed(bot.bound_port, slack_requests.slash_command(text=text))
        told = await eventually(
            lambda: (
                ephemeral_texts(slack_fake, ALICE)[2:5]
                if len(ephemeral_texts(slack_fake, ALICE)) >= 5
                else None
            )
        )
    replies = "\n".join(told)
    assert "Canary podinfo-" in replies and f".{namespace}: Initializing" in replies
    assert f"Plan for podinfo in {namespace}* (nothing was changed)" in replies
    assert "2 steps: 15% → 30%" in replies
    assert "No finished releases of podinfo." in replies
    [name] = await releases_in(kube, namespace)
    release = await ReleaseStore(kube).get(namespace, name)
    assert release is not None
    assert release.spec.images == {"podinfod": NEW}
    assert release.metadata.labels["canarybot.io/target"] == "podinfo"
    assert release.spec.requested_by.user == ALICE


async def test_buttons_refuse_outsiders_and_act_once_for_double_clicks(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube) as bot:
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        name = (await eventually(lambda: releases_in(kube, namespace)))[0]
        release = await store.get(namespace, name)
        assert release is not None
        # the card as the engine's notifier would have posted it
        client = AsyncWebClient(token=slack_fake.bot_token, base_url=slack_fake.api_url)
        posted = await client.chat_postMessage(
            channel="C0DEPLOYS",
            text=headline(release),
            blocks=check_message(card_blocks(release, release.metadata.creation_timestamp)),  # type: ignore[arg-type]
        )
        card_ts = str(posted["ts"])
        release = await store.write_notification(
            release, NotificationState(channel="C0DEPLOYS", threadTs=card_ts, deliveredSeq=0)
        )
        value = button_value(release)

        refused = slack_requests.block_actions(
            "canary_abort", value, user_id=MALLORY, user_name="mallory", message_ts=card_ts
        )
        assert (await post_signed(bot.bound_port, refused))[0] == 200
        told = await eventually(lambda: ephemeral_texts(slack_fake, MALLORY))
        assert f"not allowed to abort releases in namespace {namespace}" in told[0]

        bob_abort = slack_requests.block_actions(
            "canary_abort", value, user_id=BOB, user_name="bob", message_ts=card_ts
        )
        await post_signed(bot.bound_port, bob_abort)
        told = await eventually(lambda: ephemeral_texts(slack_fake, BOB))
        assert "not allowed to abort" in told[0]
        current = await store.get(namespace, name)
        assert current is not None and current.spec.control_requests == []

        for _ in range(2):  # a double click
            click = slack_requests.block_actions("canary_abort", value, message_ts=card_ts)
            assert (await post_signed(bot.bound_port, click))[0] == 200

        def audit_replies() -> list[str]:
            return [m["text"] for m in slack_fake.thread("C0DEPLOYS", card_ts)[1:]]

        await eventually(audit_replies, message="no audit line in the thread")
        current = await store.get(namespace, name)
        assert current is not None
        assert [r.action for r in current.spec.control_requests] == ["abort"]
        assert current.spec.control_requests[0].user == ALICE
        await eventually(lambda: len(slack_fake.calls("chat.postMessage")) >= 2)
    assert audit_replies() == [f":joystick: aborted by <@{ALICE}>"]


async def test_start_without_arguments_opens_the_form_and_its_submission_starts(
    kube: Kube,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube) as bot:
        await post_signed(bot.bound_port, slack_requests.slash_command(text="start"))
        [view] = await eventually(slack_fake.views, message="the start form was not opened")
        assert view["callback_id"] == "canary_start"

        def values(images: str) -> dict[str, dict[str, object]]:
            return {
                "deployment": {"deployment": {"type": "plain_text_input", "value": "podinfo"}},
                "images": {"images": {"type": "plain_text_input", "value": images}},
                "namespace": {"namespace": {"type": "plain_text_input", "value": namespace}},
            }

        bad = slack_requests.view_submission(
            "canary_start",
            values("image=Stefan/podinfo:1"),
            private_metadata=view["private_metadata"],
        )
        status, body = await post_signed(bot.bound_port, bad)
        assert status == 200 and '"response_action": "errors"' in body.replace('":"', '": "')
        assert "repository names are lowercase" in body
        assert await releases_in(kube, namespace) == []

        good = slack_requests.view_submission(
            "canary_start", values(f"image={NEW}"), private_metadata=view["private_metadata"]
        )
        status, _ = await post_signed(bot.bound_port, good)
        assert status == 200
        told = await eventually(lambda: ephemeral_texts(slack_fake, ALICE))
    assert "Started release" in told[0]
    assert len(await releases_in(kube, namespace)) == 1


# -- ports and readiness -------------------------------------------------------------------


async def get(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` on a local port: status and body."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def test_metrics_and_probes_are_on_the_metrics_port_only(
    kube: Kube, namespace: str, slack_fake: SlackFake, signing_secret: str
) -> None:
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube) as bot:
        slack, metrics = bot.bound_port, bot.bound_metrics_port
        assert slack != metrics
        # the Slack port (the one the Service exposes): events, and a health check for a
        # load balancer in front of it; nothing that describes the process
        assert (await get(slack, "/metrics"))[0] == 404
        assert (await get(slack, "/readyz"))[0] == 404
        assert await get(slack, "/healthz") == (200, "ok\n")
        # the metrics port: probes and Prometheus
        assert await get(metrics, "/readyz") == (200, "ready\n")
        assert await get(metrics, "/healthz") == (200, "ok\n")
        status, body = await get(metrics, "/metrics")
        assert status == 200 and "canarybot_" in body
        assert (await get(metrics, "/slack/events"))[0] in (404, 405)


async def test_socket_mode_is_ready_only_while_connected(
    kube: Kube, namespace: str, slack_fake: SlackFake
) -> None:
    env = environment(slack_fake, socket_mode=True)
    async with running_bot(env, config_for(namespace), kube) as bot:
        first = await slack_fake.wait_for_socket_connection()
        port = bot.bound_metrics_port
        # no Slack port in Socket Mode: nothing listens for Slack's requests
        with pytest.raises(AssertionError):
            _ = bot.bound_port
        await eventually(lambda: _status_is(port, 200), message="/readyz 200 once connected")
        assert await get(port, "/readyz") == (200, "ready\n")

        # the connection drops and reconnecting fails: not ready, so a Service (HTTP
        # mode) or an operator watching the pod sees it
        slack_fake.server_errors(seconds=600, method="apps.connections.open")
        await slack_fake.drop_socket_connections()
        await eventually(
            lambda: _status_is(port, 503),
            within=30,
            message="/readyz to turn 503 after the Socket Mode connection dropped",
        )
        assert await get(port, "/readyz") == (503, "not ready: slack\n")

        slack_fake.clear_faults()
        await slack_fake.wait_for_socket_connection(after=first.id, within=60)
        await eventually(
            lambda: _status_is(port, 200),
            within=30,
            message="/readyz to turn 200 again after reconnecting",
        )


async def _status_is(port: int, status: int) -> bool:
    return (await get(port, "/readyz"))[0] == status


async def test_a_namespace_scoped_bot_reads_and_steers_only_its_namespace(
    kube: Kube,
    namespace: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube, namespace=namespace) as bot:
        for text in ("list", "abort podinfo -n kube-system", "status podinfo -n default"):
            await post_signed(bot.bound_port, slack_requests.slash_command(text=text))
        told = await eventually(
            lambda: (
                ephemeral_texts(slack_fake, ALICE)
                if len(ephemeral_texts(slack_fake, ALICE)) >= 3
                else None
            )
        )
    assert f"No active releases in {namespace}." in told
    refusals = [t for t in told if t.startswith(":warning: This canary-bot handles namespace")]
    assert len(refusals) == 2, told
    assert any("releases in kube-system" in t for t in refusals)
    assert any("releases in default" in t for t in refusals)
