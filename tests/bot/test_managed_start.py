"""``/canary start`` on a Deployment that a Canary protects: the bot writes the image into
the template (and nothing else) and leaves the release to the revision path; on an
unprotected Deployment it starts the release itself, as before. Real control plane,
signed requests, the Slack fake."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from rollout.kube import Kube
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from sandbox.slack_fake import SlackFake
from tests.bot.harness import (
    ALICE,
    MALLORY,
    config_for,
    environment,
    ephemeral_texts,
    post_signed,
    running_bot,
)
from tests.fixtures.slack import SlackRequests, eventually
from tests.rollout.test_crd import ROOT, Kubectl

pytestmark = [pytest.mark.cluster]

NEW = "stefanprodan/podinfo:6.0.3"
OLD = "stefanprodan/podinfo:6.0.0"


@pytest.fixture(scope="module")
def canary_crd(control_plane: ControlPlane) -> Kubectl:
    """The Canary CRD applied as the install docs say."""
    kubectl = Kubectl(control_plane)
    kubectl("apply", "-k", str(ROOT / "manifests" / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/canaries.canarybot.io")
    return kubectl


def protect(
    kubectl: Kubectl,
    namespace: str,
    target: str = "podinfo",
    analysis: dict[str, Any] | None = None,
) -> None:
    canary = {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": target, "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
            "service": {"port": 80, "targetPort": 9898},
            **({"analysis": analysis} if analysis else {}),
        },
    }
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(canary))


def deployment(api: k8s.ApiClient, namespace: str) -> dict[str, Any]:
    raw: dict[str, Any] = api.sanitize_for_serialization(
        k8s.AppsV1Api(api).read_namespaced_deployment("podinfo", namespace)
    )
    return raw


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    """The owner's annotations (the Deployment controller writes the revision number)."""
    found = dict(obj["metadata"].get("annotations") or {})
    found.pop("deployment.kubernetes.io/revision", None)
    return found


async def told(fake: SlackFake, user: str, fragment: str) -> str:
    async def said() -> str | None:
        return next((t for t in ephemeral_texts(fake, user) if fragment in t), None)

    text: str = await eventually(said, within=60, message=f"{user} was not told {fragment!r}")
    return text


async def test_start_on_a_protected_deployment_writes_only_the_template_image(
    canary_crd: Kubectl,
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    protect(canary_crd, namespace)
    before = deployment(kube_api_client, namespace)
    env = environment(slack_fake, signing_secret=signing_secret)
    # the front only: no engine, so what changes is what the command itself changed
    async with running_bot(env, config_for(namespace), kube, namespace=namespace) as bot:
        status, _ = await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        assert status == 200
        reply = await told(slack_fake, ALICE, "Wrote podinfod=")
    assert "(protected by Canary podinfo)" in reply
    assert "has not appeared yet" in reply  # no engine runs here
    after = deployment(kube_api_client, namespace)
    (container,) = after["spec"]["template"]["spec"]["containers"]
    assert container["image"] == NEW
    # the patch is the only change: the rest of the spec is as its owner wrote it
    container["image"] = OLD
    assert after["spec"] == before["spec"]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert _annotations(after) == _annotations(before)
    managers = {m["manager"] for m in after["metadata"]["managedFields"]}
    assert f"canary-bot-start/{ALICE}" in managers
    # no release from the bot itself: the revision path opens it
    assert await ReleaseStore(kube).list_objects(namespace) == []


async def test_start_on_a_protected_deployment_refuses_what_the_canary_decides(
    canary_crd: Kubectl,
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    protect(canary_crd, namespace)
    before = deployment(kube_api_client, namespace)
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube, namespace=namespace) as bot:
        await post_signed(
            bot.bound_port,
            slack_requests.slash_command(text=f"start podinfo image={NEW} --step 20 --max 40"),
        )
        flags = await told(slack_fake, ALICE, "cannot apply")
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={OLD}")
        )
        same = await told(slack_fake, ALICE, "already asks for these images")
        await post_signed(
            bot.bound_port,
            slack_requests.slash_command(text=f"start podinfo web={NEW}"),
        )
        missing = await told(slack_fake, ALICE, "has no container web")
        await post_signed(
            bot.bound_port,
            slack_requests.slash_command(text=f"start podinfo image={NEW}", user_id=MALLORY),
        )
        await eventually(
            lambda: ephemeral_texts(slack_fake, MALLORY), within=30, message="no answer"
        )
    assert "--step, --max" in flags and "change the Canary" in flags
    assert "no new revision" in same
    assert "(it has podinfod)" in missing
    assert "Wrote" not in " ".join(ephemeral_texts(slack_fake, MALLORY))
    assert deployment(kube_api_client, namespace)["spec"] == before["spec"]


async def test_start_on_an_unprotected_deployment_creates_the_release_as_before(
    canary_crd: Kubectl,
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    protect(canary_crd, namespace, target="another-app")  # protects something else
    before = deployment(kube_api_client, namespace)
    env = environment(slack_fake, signing_secret=signing_secret)
    async with running_bot(env, config_for(namespace), kube, namespace=namespace) as bot:
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        await told(slack_fake, ALICE, "Started release")
    (release,) = await ReleaseStore(kube).list_objects(namespace)
    assert release.spec.images == {"podinfod": NEW}
    assert release.spec.canary_ref is None
    # the template is untouched until promotion patches it
    assert deployment(kube_api_client, namespace)["spec"] == before["spec"]


QUICK_ANALYSIS = {
    "interval": "2s",
    "threshold": 3,
    "maxWeight": 20,
    "stepWeight": 10,
    "metrics": [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}
    ],
}


@pytest.mark.prometheus
async def test_start_on_a_protected_deployment_runs_the_canarys_analysis_in_a_linked_thread(
    canary_crd: Kubectl,
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    traffic(namespace, "podinfo", "podinfo", rps=40)
    protect(canary_crd, namespace, analysis=QUICK_ANALYSIS)
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with running_bot(
        env, config_for(namespace), kube, run_engine=True, namespace=namespace
    ) as bot:
        await eventually(
            lambda: deployment(kube_api_client, namespace)["spec"].get("paused"),
            within=60,
            message="the Canary never paused podinfo",
        )
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        reply = await told(slack_fake, ALICE, "runs it with the Canary's analysis")
        (release,) = await store.list_objects(namespace)
        assert release.spec.canary_ref is not None and release.spec.canary_ref.name == "podinfo"
        assert release.spec.analysis.max_weight == 20  # the Canary's, not the profile's 30
        assert release.spec.changed_by == f"canary-bot-start/{ALICE}"

        async def final() -> Any:
            current = await store.get(namespace, release.metadata.name)
            return current if current is not None and current.status.phase.is_final else None

        done = await eventually(final, within=180, interval=0.5, message="no outcome")
    assert done.status.phase.value == "Succeeded", done.status.message
    assert "Open the release thread>" in reply and "<https://" in reply
    roots = [m for m in slack_fake.messages("C0DEPLOYS") if m.get("text", "").startswith("Canary ")]
    assert len(roots) == 1
    card = str(slack_fake.message("C0DEPLOYS", roots[0]["ts"]))
    assert "Changed by" in card and f"<@{ALICE}> with /canary start" in card
    (container,) = deployment(kube_api_client, namespace)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == NEW


async def test_a_canary_naming_only_a_profile_runs_with_that_profile(
    canary_crd: Kubectl,
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    prometheus: Any,
    slack_fake: SlackFake,
    signing_secret: str,
) -> None:
    namespace = podinfo
    canary = {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
            "service": {"port": 80, "targetPort": 9898},
            "profile": "quick",
        },
    }
    canary_crd("apply", "-f", "-", stdin=yaml.safe_dump(canary))
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with running_bot(env, config_for(namespace), kube, run_engine=True, namespace=namespace):
        await eventually(
            lambda: deployment(kube_api_client, namespace)["spec"].get("paused"),
            within=60,
            message="the Canary never paused podinfo",
        )
        canary_crd(
            "-n", namespace, "set", "image", "deployment/podinfo", f"podinfod={NEW}"
        )

        async def opened() -> Any:
            releases = await store.list_objects(namespace)
            return releases[0] if releases else None

        release = await eventually(opened, within=60, message="no release for the new image")
        assert release.spec.images == {"podinfod": NEW}
        assert release.spec.analysis.max_weight == 30  # the profile `quick` of config_for
        assert release.spec.analysis.step_weight == 10
        state = k8s.CustomObjectsApi(kube_api_client).get_namespaced_custom_object(
            "canarybot.io", "v1alpha1", namespace, "canaries", "podinfo"
        )["status"]["state"]
        assert state != "Blocked"
