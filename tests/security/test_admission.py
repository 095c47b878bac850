"""Finding 2, confused deputy: canary-bot must not run someone's code under another identity.

- The admission policy in manifests/admission/ refuses a CanaryRelease from a user who
  could not patch the target Deployment themselves; canary-bot's ServiceAccount, which
  acts for Slack users it has authorized, is exempt.
- The spec fields that decide what runs cannot change after creation.
- Images only replace containers the target has: a new name is refused at start, before
  any canary Deployment exists, and promotion never adds a container.
- While canary-bot promotes a managed Deployment, the promotion-hold policy refuses a
  change of its pod template from anyone else; scaling, labels, annotations pass.
- In protected namespaces (kube-system, canary-bot's own, configured ones) the engine
  refuses the release and touches nothing.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from rollout.analysis import PrometheusProvider
from rollout.engine import Engine
from rollout.hold import set_paused
from rollout.kube import DEPLOYMENTS, Kube
from rollout.models import CanaryRelease, Phase
from rollout.notify import LoggingNotifier
from rollout.preflight import protected_namespaces
from rollout.store import ReleaseStore
from rollout.workloads import CanaryWorkloads
from sandbox.controlplane import ControlPlane
from sandbox.sample_app import deploy_podinfo
from tests.deploy.kubectl import MANIFESTS, SA_USER, Kubectl
from tests.revisions.hold import (
    ANNOTATION,
    bot_identity,
    hold_installed,
    image_of,
    promoting,
    refusal,
)
from tests.security.conftest import NEW, apply, release

pytestmark = pytest.mark.cluster

POLICY = "canary-bot-target-access"
ALICE = "alice@example.com"  # may create CanaryReleases, may not patch Deployments
BOB = "bob@example.com"  # may do both
CAROL = "carol@example.com"  # may do both, and may update the HTTPRoute web


def _rbac(namespace: str) -> list[dict[str, Any]]:
    def role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": rules,
        }

    def binding(name: str, role_name: str, subjects: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
            "subjects": subjects,
        }

    user = lambda name: {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}  # noqa: E731
    bot = {"kind": "ServiceAccount", "name": "canary-bot", "namespace": "canary-bot"}
    return [
        role(
            "releaser",
            [
                {
                    "apiGroups": ["canarybot.io"],
                    "resources": ["canaryreleases"],
                    "verbs": ["get", "list", "create", "update", "patch"],
                }
            ],
        ),
        role(
            "deployer",
            [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}],
        ),
        role(
            "route-editor",
            [
                {
                    "apiGroups": ["gateway.networking.k8s.io"],
                    "resources": ["httproutes"],
                    "resourceNames": ["web"],
                    "verbs": ["get", "update"],
                }
            ],
        ),
        binding("releasers", "releaser", [user(ALICE), user(BOB), user(CAROL), bot]),
        binding("deployers", "deployer", [user(BOB), user(CAROL)]),
        binding("route-editors", "route-editor", [user(CAROL)]),
    ]


@pytest.fixture
def admission_policy(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """The shipped policy, its binding limited to this test's namespace, and users' RBAC.

    The binding's namespaceSelector is the only change: other tests in the session act as
    cluster admin and never meet the policy.
    """
    objects = kubectl.render(MANIFESTS / "admission")
    for obj in objects:
        if obj["kind"] == "ValidatingAdmissionPolicyBinding":
            obj["spec"]["matchResources"] = {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            }
    docs = objects + _rbac(namespace)
    kubectl.run("apply", "-f", "-", stdin="\n---\n".join(json.dumps(o) for o in docs))
    try:
        yield namespace
    finally:
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
            kubectl.run("delete", kind, POLICY, "--ignore-not-found", "--wait=false")


def _refused_once_active(
    kubectl: Kubectl, namespace: str, obj: dict[str, Any], user: str, kind: str = "crel"
) -> Any:
    """Create as ``user`` until the policy refuses (a new policy takes a moment to apply)."""
    deadline = time.monotonic() + 30
    while True:
        done = apply(kubectl, namespace, obj, user=user)
        if done.returncode != 0 or time.monotonic() > deadline:
            return done
        kubectl.run("delete", "-n", namespace, kind, obj["metadata"]["name"], "--wait=true")
        time.sleep(0.2)


def test_policy_refuses_a_user_who_may_not_patch_the_target(
    kubectl: Kubectl, admission_policy: str
) -> None:
    namespace = admission_policy

    done = _refused_once_active(kubectl, namespace, release("sneaky"), ALICE)

    assert done.returncode != 0, "alice's CanaryRelease was accepted"
    assert (
        f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request: "
        f"{ALICE} may not patch Deployment podinfo in namespace {namespace}, so may not "
        "create or change a CanaryRelease for it: canary-bot would change that Deployment "
        "on their behalf."
    ) in done.stderr, done.stderr
    assert kubectl.run("get", "-n", namespace, "crel", "sneaky", check=False).returncode != 0


def test_policy_allows_a_user_who_may_patch_and_canary_bot_itself(
    kubectl: Kubectl, admission_policy: str
) -> None:
    namespace = admission_policy
    _refused_once_active(kubectl, namespace, release("probe"), ALICE)  # the policy is active

    by_bob = apply(kubectl, namespace, release("by-bob"), user=BOB)
    by_bot = apply(kubectl, namespace, release("by-bot"), user=SA_USER)

    assert by_bob.returncode == 0, by_bob.stderr
    assert by_bot.returncode == 0, by_bot.stderr
    # alice may not steer bob's release either (UPDATE is checked like CREATE)
    patch = json.dumps({"spec": {"controlRequests": [{"id": "r1", "action": "promote"}]}})
    steer = kubectl.run(
        f"--as={ALICE}",
        "patch",
        "-n",
        namespace,
        "crel",
        "by-bob",
        "--type=merge",
        "-p",
        patch,
        check=False,
    )
    assert steer.returncode != 0
    assert f"{ALICE} may not patch Deployment podinfo" in steer.stderr, steer.stderr


def routed(name: str) -> dict[str, Any]:
    """A release routed through the HTTPRoute ``web`` instead of an Ingress."""
    body = release(name, provider="contour")
    del body["spec"]["ingressRef"]
    body["spec"]["routeRef"] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "name": "web",
    }
    return body


def test_a_routed_release_needs_the_right_to_update_its_route(
    kubectl: Kubectl, admission_policy: str
) -> None:
    namespace = admission_policy
    # bob may patch the Deployment but not edit the route canary-bot would edit for him
    done = _refused_once_active(kubectl, namespace, routed("by-bob"), BOB)
    assert done.returncode != 0, "bob's routed CanaryRelease was accepted"
    assert (
        f"{BOB} may not update HTTPRoute web in namespace {namespace}, so may not create or "
        "change a CanaryRelease routed through it: canary-bot would edit that route on "
        "their behalf."
    ) in done.stderr, done.stderr
    by_carol = apply(kubectl, namespace, routed("by-carol"), user=CAROL)
    assert by_carol.returncode == 0, by_carol.stderr
    by_bot = apply(kubectl, namespace, routed("by-bot"), user=SA_USER)
    assert by_bot.returncode == 0, by_bot.stderr


# -- immutable spec ----------------------------------------------------------------------

CHANGES = [
    ("images", {"podinfod": "evil.example.com/miner:1"}),
    ("targetRef", {"name": "kube-dns"}),
    ("ingressRef", {"name": "other"}),
    ("service", {"port": 8080}),
    ("analysis", {"interval": "10s", "threshold": 1000, "maxWeight": 100, "stepWeight": 100}),
    ("skipAnalysis", True),
    ("approval", "manual"),
    ("requestedBy", {"user": "U0ADMIN", "source": "slack"}),
]


@pytest.mark.parametrize(("field", "value"), CHANGES, ids=[c[0] for c in CHANGES])
def test_fields_that_decide_what_runs_cannot_change(
    kubectl: Kubectl, namespace: str, field: str, value: Any
) -> None:
    kubectl.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(release()))
    patch = json.dumps({"spec": {field: value}})

    done = kubectl.run(
        "patch", "-n", namespace, "crel", "podinfo", "--type=merge", "-p", patch, check=False
    )

    assert done.returncode != 0, f"spec.{field} changed"
    assert (
        f"spec.{field}: Forbidden: {field} cannot change after the release is created; "
        "create a new CanaryRelease instead"
    ) in done.stderr, done.stderr


def test_removing_an_optional_field_is_a_change_too_and_control_requests_may_change(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(release()))

    removed = kubectl.run(
        "patch",
        "-n",
        namespace,
        "crel",
        "podinfo",
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/spec/analysis"}]',
        check=False,
    )
    steered = kubectl.run(
        "patch",
        "-n",
        namespace,
        "crel",
        "podinfo",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"controlRequests": [{"id": "r1", "action": "pause"}]}}),
        check=False,
    )

    assert removed.returncode != 0
    assert "spec.analysis: Forbidden: analysis cannot change" in removed.stderr, removed.stderr
    assert steered.returncode == 0, steered.stderr


# -- images replace existing containers only ------------------------------------------------


def _engine(kube: Kube, protected: frozenset[str] = frozenset()) -> Engine:
    # no check runs before a refusal, so Prometheus is never asked
    return Engine(
        kube,
        PrometheusProvider("http://127.0.0.1:9"),
        notifier=LoggingNotifier(),
        protected_namespaces=protected,
    )


def _create_release(api: k8s.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        "canarybot.io", "v1alpha1", namespace, "canaryreleases", body
    )


def _exists(read: Any) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _nothing_created(api: k8s.ApiClient, namespace: str) -> None:
    apps, core, net = k8s.AppsV1Api(api), k8s.CoreV1Api(api), k8s.NetworkingV1Api(api)
    assert not _exists(lambda: apps.read_namespaced_deployment("podinfo-canary", namespace))
    assert not _exists(lambda: core.read_namespaced_service("podinfo-canary", namespace))
    assert not _exists(lambda: net.read_namespaced_ingress("podinfo-canary", namespace))


async def test_a_container_the_target_lacks_is_refused_before_anything_is_created(
    kube: Kube, kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    deploy_podinfo(kube_api_client, namespace)
    _create_release(
        kube_api_client, namespace, release(images={"podinfod": NEW, "miner": "evil/miner:1"})
    )

    result = await _engine(kube).advance(namespace, "podinfo")

    assert result is not None and result.status.phase == Phase.FAILED
    assert result.status.reason == "InvalidSpec"
    assert result.status.message == (
        "Deployment podinfo has no container named miner (containers: podinfod); "
        "images can only replace existing containers"
    )
    _nothing_created(kube_api_client, namespace)


async def test_promotion_never_adds_a_container_to_the_target(
    kube: Kube, kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    deploy_podinfo(kube_api_client, namespace)
    _create_release(kube_api_client, namespace, release())
    stored = await ReleaseStore(kube).get(namespace, "podinfo")
    assert isinstance(stored, CanaryRelease)

    await CanaryWorkloads(kube).set_target_images(stored, {"podinfod": NEW, "miner": "evil/miner:1"})

    target = k8s.AppsV1Api(kube_api_client).read_namespaced_deployment("podinfo", namespace)
    containers = {c.name: c.image for c in target.spec.template.spec.containers}
    assert containers == {"podinfod": NEW}


# -- protected namespaces ------------------------------------------------------------------


async def test_a_configured_protected_namespace_is_refused_and_left_untouched(
    kube: Kube, kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    deploy_podinfo(kube_api_client, namespace)
    before = k8s.AppsV1Api(kube_api_client).read_namespaced_deployment("podinfo", namespace)
    _create_release(kube_api_client, namespace, release())
    engine = _engine(kube, protected_namespaces("canary-bot", [namespace]))

    first = await engine.advance(namespace, "podinfo")
    await engine.advance(namespace, "podinfo")  # and again: still nothing

    assert first is None
    stored = await ReleaseStore(kube).get(namespace, "podinfo")
    assert stored is not None and stored.status.phase == Phase.FAILED
    assert stored.status.reason == "ProtectedNamespace"
    assert stored.status.message.startswith(
        f"canary-bot does not act in namespace {namespace}: it is protected"
    )
    _nothing_created(kube_api_client, namespace)
    after = k8s.AppsV1Api(kube_api_client).read_namespaced_deployment("podinfo", namespace)
    # the controller manager updates its status; its spec is as its owner wrote it
    assert after.metadata.generation == before.metadata.generation
    assert (
        after.spec.template.spec.containers[0].image
        == before.spec.template.spec.containers[0].image
    )


@pytest.mark.parametrize("system", ["kube-system", "kube-public"])
async def test_system_namespaces_are_always_refused(
    kube: Kube, kube_api_client: k8s.ApiClient, system: str
) -> None:
    name = f"escalate-{int(time.time() * 1000) % 100000}"
    body = copy.deepcopy(release(name, targetRef={"name": "coredns"}))
    _create_release(kube_api_client, system, body)
    try:
        # canary-bot's own namespace and nothing configured: the system ones still apply
        await _engine(kube, protected_namespaces("canary-bot")).advance(system, name)
        stored = await ReleaseStore(kube).get(system, name)
        assert stored is not None and stored.status.phase == Phase.FAILED
        assert stored.status.message.startswith(
            f"canary-bot does not act in namespace {system}: it is protected"
        ), stored.status.message
        assert not _exists(
            lambda: k8s.AppsV1Api(kube_api_client).read_namespaced_deployment(
                "coredns-canary", system
            )
        )
    finally:
        k8s.CustomObjectsApi(kube_api_client).delete_namespaced_custom_object(
            "canarybot.io", "v1alpha1", system, "canaryreleases", name
        )


CANARY_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "canaries.canarybot.io"},
    "spec": {
        "group": "canarybot.io",
        "scope": "Namespaced",
        "names": {"kind": "Canary", "plural": "canaries", "singular": "canary"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def canary_kind(kube_api_client: k8s.ApiClient, kubectl: Kubectl) -> Iterator[None]:
    """A ``Canary`` kind (a stand-in until its CRD ships), removed again if we made it."""
    ext = k8s.ApiextensionsV1Api(kube_api_client)
    try:
        ext.create_custom_resource_definition(CANARY_CRD)
        created = True
    except ApiException as exc:
        if exc.status != 409:
            raise
        created = False
    kubectl.run("wait", "--for=condition=Established", "--timeout=30s", "crd/canaries.canarybot.io")
    try:
        yield
    finally:
        if created:
            ext.delete_custom_resource_definition("canaries.canarybot.io")


def test_policy_applies_to_a_canary_as_soon_as_the_kind_exists(
    kubectl: Kubectl, admission_policy: str, canary_kind: None
) -> None:
    namespace = admission_policy
    canary = {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
        },
    }
    kubectl.run(
        "create",
        "-n",
        namespace,
        "role",
        "canary-author",
        "--verb=create,get,delete",
        "--resource=canaries.canarybot.io",
    )
    kubectl.run(
        "create",
        "-n",
        namespace,
        "rolebinding",
        "canary-authors",
        "--role=canary-author",
        f"--user={ALICE}",
        f"--user={BOB}",
    )

    refused = _refused_once_active(kubectl, namespace, canary, ALICE, "canary")
    allowed = apply(kubectl, namespace, canary, user=BOB)

    assert refused.returncode != 0
    assert (
        f"{ALICE} may not patch Deployment podinfo in namespace {namespace}, so may not create "
        "or change a Canary for it"
    ) in refused.stderr, refused.stderr
    assert allowed.returncode == 0, allowed.stderr


# -- promotion hold ------------------------------------------------------------------------


@pytest.fixture
def held_podinfo(
    kubectl: Kubectl, control_plane: ControlPlane, kube_api_client: k8s.ApiClient, namespace: str
) -> Iterator[Kube]:
    """podinfo in a namespace under the promotion hold; canary-bot's identity (its
    ServiceAccount) to write it with."""
    deploy_podinfo(kube_api_client, namespace)
    with hold_installed(kubectl, namespace), bot_identity(
        kubectl, control_plane.kubeconfig, namespace
    ) as bot:
        yield bot


def _podinfo(api: k8s.ApiClient, namespace: str) -> Any:
    return k8s.AppsV1Api(api).read_namespaced_deployment("podinfo", namespace)


async def test_promotion_hold_refuses_template_changes_while_canary_bot_promotes(
    kubectl: Kubectl, kube_api_client: k8s.ApiClient, namespace: str, held_podinfo: Kube
) -> None:
    bot = held_podinfo
    await set_paused(bot, namespace, "podinfo", True)
    await set_paused(bot, namespace, "podinfo", False, promoting="podinfo-5d1f0c2a9e")
    assert promoting(_podinfo(kube_api_client, namespace)) == "podinfo-5d1f0c2a9e"

    def run(*args: str) -> Any:
        return kubectl.run("-n", namespace, *args, check=False)

    refused = run("set", "image", "deployment/podinfo", f"podinfod={NEW}")
    restarted = run("rollout", "restart", "deployment/podinfo")
    scaled = run("scale", "deployment/podinfo", "--replicas=3")  # the scale subresource
    replicas = run("patch", "deployment/podinfo", "-p", '{"spec": {"replicas": 4}}')
    labelled = run("label", "deployment/podinfo", "team=web")
    annotated = run("annotate", "deployment/podinfo", "owner=platform")

    assert refused.returncode != 0
    assert refusal("podinfo-5d1f0c2a9e") in refused.stderr, refused.stderr
    assert restarted.returncode != 0 and "is being promoted by canary-bot" in restarted.stderr
    for done in (scaled, replicas, labelled, annotated):
        assert done.returncode == 0, done.stderr
    during = _podinfo(kube_api_client, namespace)
    assert image_of(during) != NEW and during.spec.replicas == 4
    assert during.metadata.labels["team"] == "web"

    # canary-bot's own writes pass, a template change included (/canary start on a
    # managed Deployment writes the new image into it)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "podinfod", "image": NEW}]}}}}
    await bot.strategic_patch(DEPLOYMENTS, namespace, "podinfo", patch)
    assert image_of(_podinfo(kube_api_client, namespace)) == NEW

    # the re-pause removes the mark, and with it the hold
    await set_paused(bot, namespace, "podinfo", True)
    after = _podinfo(kube_api_client, namespace)
    assert promoting(after) == "" and after.spec.paused is True
    allowed = run("set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.4")
    assert allowed.returncode == 0, allowed.stderr


async def test_removing_the_mark_lifts_the_hold(
    kubectl: Kubectl, kube_api_client: k8s.ApiClient, namespace: str, held_podinfo: Kube
) -> None:
    await set_paused(held_podinfo, namespace, "podinfo", False, promoting="podinfo-5d1f0c2a9e")

    # removing it together with a template change is still refused (the old object counts)
    both = kubectl.run(
        "-n", namespace, "patch", "deployment/podinfo", "--type=json", "-p",
        json.dumps([
            {"op": "remove", "path": "/metadata/annotations/canarybot.io~1promoting"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": NEW},
        ]),
        check=False,
    )  # fmt: skip
    lifted = kubectl.run("-n", namespace, "annotate", "deployment/podinfo", f"{ANNOTATION}-")
    changed = kubectl.run(
        "-n", namespace, "set", "image", "deployment/podinfo", f"podinfod={NEW}", check=False
    )

    assert both.returncode != 0 and refusal("podinfo-5d1f0c2a9e") in both.stderr, both.stderr
    assert lifted.returncode == 0
    assert changed.returncode == 0, changed.stderr
    assert image_of(_podinfo(kube_api_client, namespace)) == NEW
