"""Issue 14, finding 4: a webhook URL cannot reach what the engine's network position can.

End to end (real API server, the engine's own controller): a hook that redirects is not
followed, and a hook at the cloud metadata address is refused before any connection; the
release rolls back with a message that says so. Then the policy itself at the runner:
resolved addresses (DNS rebinding), literal forms, allow/deny ranges, response excerpts.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from kubernetes import client as k8s

from bot.config import ConfigError, parse_config
from rollout.egress import EgressPolicy
from rollout.kube import Kube
from rollout.models import CanaryReleaseSpec, Phase, Webhook
from rollout.store import ReleaseStore
from rollout.webhooks import WebhookRunner, payload
from tests.engine.test_rollout import NEW, wait_phase
from tests.fixtures.engine import ControllerFactory
from tests.security.helpers import RecordingNotifier, delivered, hook_server, recorded

REFUSAL_TAIL = (
    "canary-bot does not call link-local or cloud metadata addresses (an operator can open "
    "a range with webhooks.allowCIDRs)"
)


def spec_with_hook(url: str) -> CanaryReleaseSpec:
    """podinfo's release with one pre-rollout hook; one failed check rolls back."""
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": NEW},
            "service": {"port": 80, "targetPort": 9898},
            "progressDeadlineSeconds": 60,
            "analysis": {
                "interval": "2s",
                "threshold": 1,
                "maxWeight": 50,
                "stepWeight": 10,
                "webhooks": [{"name": "smoke", "type": "pre-rollout", "url": url}],
            },
        }
    )


@pytest.mark.cluster
@pytest.mark.prometheus
async def test_a_redirecting_hook_is_not_followed_and_the_release_says_where_it_pointed(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    async with hook_server() as internal, hook_server() as hook:
        # the hook answers with a redirect to an internal admin endpoint, token in the query
        target = f"{internal.url}/admin/delete?token=s3cr3t-value"
        hook.answers["/smoke"] = (307, "", {"Location": target})
        store = ReleaseStore(kube)
        await store.create(namespace, "podinfo", spec_with_hook(f"{hook.url}/smoke"))
        notifier = RecordingNotifier()
        await controller_factory(namespace, notifier=notifier)

        release = await wait_phase(store, namespace, {Phase.FAILED, Phase.SUCCEEDED}, 120)

        assert release.status.phase == Phase.FAILED
        assert [r[1] for r in hook.requests] == ["/smoke"]
        assert internal.requests == []  # the redirect target was never called
    halt = (
        f"Halt advancement pre-rollout check smoke failed: HTTP 307: the hook redirected to "
        f"{internal.url}/admin/delete?token=***; redirects are not followed, so point the "
        "hook at its final URL"
    )
    story = await recorded(kube_api_client, namespace, halt)
    await delivered(notifier, halt)  # what the Slack thread gets
    assert "s3cr3t-value" not in json.dumps(story) + notifier.text + release.model_dump_json()


@pytest.mark.cluster
@pytest.mark.prometheus
async def test_a_hook_at_the_metadata_address_is_refused_before_connecting(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    store = ReleaseStore(kube)
    url = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    await store.create(namespace, "podinfo", spec_with_hook(url))
    notifier = RecordingNotifier()
    await controller_factory(namespace, notifier=notifier)

    release = await wait_phase(store, namespace, {Phase.FAILED, Phase.SUCCEEDED}, 120)

    assert release.status.phase == Phase.FAILED
    halt = (
        "Halt advancement pre-rollout check smoke failed: not called: refused to connect: "
        f"169.254.169.254 is a cloud metadata address; {REFUSAL_TAIL}"
    )
    await recorded(kube_api_client, namespace, halt)
    await delivered(notifier, halt)


# -- the policy at the runner (no cluster needed) ----------------------------------------


class RebindingDns(AbstractResolver):
    """A DNS server an attacker controls: a harmless address first, the metadata one next."""

    def __init__(self) -> None:
        self.answers = ["127.0.0.1", "169.254.169.254"]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


def body() -> dict[str, Any]:
    return payload("podinfo", "test", Phase.PROGRESSING, "c1", {})


async def test_the_address_is_checked_at_every_call_not_once() -> None:
    async with hook_server() as hook:
        port = int(hook.url.rsplit(":", 1)[1])
        runner = WebhookRunner(resolver=RebindingDns())
        hook_def = Webhook(name="h", type="rollout", url=f"http://hooks.example.test:{port}/h")

        first = await runner.call(hook_def, body())
        second = await runner.call(hook_def, body())

    assert first.ok, first.message
    assert not second.ok and second.status == 0
    assert second.message == (
        "rollout check h failed: not called: refused to connect: hooks.example.test resolves "
        "only to refused addresses (169.254.169.254 is a cloud metadata address); "
        + REFUSAL_TAIL
    )
    assert len(hook.requests) == 1  # the second call never connected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::ffff:169.254.169.254]/", "169.254.169.254 is a cloud metadata address"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://169.254.10.1:8080/", "169.254.10.1 is a link-local address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "metadata.google.internal is a cloud metadata host name",
        ),
        ("http://0.0.0.0:9090/", "0.0.0.0 is an unspecified (this host) address"),
    ],
)
async def test_literal_and_named_metadata_targets_are_refused(url: str, reason: str) -> None:
    result = await WebhookRunner().call(Webhook(name="h", type="rollout", url=url), body())

    assert not result.ok
    assert result.message == (
        f"rollout check h failed: not called: refused to connect: {reason}; {REFUSAL_TAIL}"
    )


async def test_deny_and_allow_ranges_adjust_the_default() -> None:
    async with hook_server() as hook:
        hook_def = Webhook(name="h", type="rollout", url=f"{hook.url}/h")
        denied = WebhookRunner(policy=EgressPolicy.from_strings(deny=["127.0.0.0/8"]))
        reopened = EgressPolicy.from_strings(allow=["127.0.0.1/32"], deny=["127.0.0.0/8"])

        refused = await denied.call(hook_def, body())
        allowed = await WebhookRunner(policy=reopened).call(hook_def, body())

    assert refused.message.startswith(
        "rollout check h failed: not called: refused to connect: 127.0.0.1 is in a range "
        "the webhook policy denies"
    )
    assert allowed.ok and len(hook.requests) == 1


def test_the_config_file_names_a_bad_range() -> None:
    with pytest.raises(ConfigError, match=r"'10\.0\.0\.0/33' is not a CIDR"):
        parse_config("webhooks: {allowCIDRs: [10.0.0.0/33]}")
    config = parse_config("webhooks: {allowCIDRs: [169.254.20.10/32], denyCIDRs: [127.0.0.0/8]}")
    assert config.webhooks.allow_cidrs == ["169.254.20.10/32"]


async def test_a_hook_answer_reaches_people_as_status_and_a_short_plain_excerpt() -> None:
    async with hook_server() as hook:
        hostile = "\x1b[31mred\x1b[0m\u202egnp.exe <!channel>\r\nline2 " + "A" * 5000
        hook.answers["/h"] = (500, hostile, {})
        result = await WebhookRunner().call(
            Webhook(name="h", type="rollout", url=f"{hook.url}/h"), body()
        )

    excerpt = result.message.removeprefix("rollout check h failed: HTTP 500 ")
    assert excerpt.startswith("[31mred [0m gnp.exe <!channel> line2 AAAA")
    assert len(excerpt) <= 200 and excerpt.endswith("…")
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c == "\u202e" for c in excerpt)
