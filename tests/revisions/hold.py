"""The promotion hold in tests: its admission policy, canary-bot as its ServiceAccount, and
a timeline of what the Deployment controller did (pods created, Deployment states)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from rollout.kube import Kube
from tests.deploy.kubectl import MANIFESTS, SA_USER, Kubectl

POLICY = "canary-bot-promotion-hold"
HOLD = MANIFESTS / "admission" / "promotion-hold"
ANNOTATION = "canarybot.io/promoting"


def refusal(release: str, deployment: str = "podinfo") -> str:
    """What the API server says when the hold refuses a template change."""
    return (
        f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request: "
        f"Deployment {deployment} is being promoted by canary-bot (release {release}): "
        "spec.template cannot change until that promotion completes. Retry when it has; "
        "the change then becomes a canary release of its own."
    )


@contextlib.contextmanager
def hold_installed(kubectl: Kubectl, namespace: str) -> Iterator[None]:
    """The shipped policy, its binding limited to ``namespace`` (other tests act as cluster
    admin and never meet it), in force once this returns."""
    objects = kubectl.render(HOLD)
    for obj in objects:
        if obj["kind"] == "ValidatingAdmissionPolicyBinding":
            obj["spec"]["matchResources"] = {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            }
    kubectl.run("apply", "-f", "-", stdin="\n---\n".join(json.dumps(o) for o in objects))
    try:
        _wait_active(kubectl, namespace)
        yield
    finally:
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
            kubectl.run("delete", kind, POLICY, "--ignore-not-found", "--wait=false")


def _wait_active(kubectl: Kubectl, namespace: str) -> None:
    """A new policy takes a moment to apply: change a marked probe's template until refused."""
    probe = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hold-probe", "annotations": {ANNOTATION: "probe"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "hold-probe"}},
            "template": {
                "metadata": {"labels": {"app": "hold-probe"}},
                "spec": {"containers": [{"name": "probe", "image": "probe:0"}]},
            },
        },
    }
    kubectl.run("apply", "-n", namespace, "-f", "-", stdin=json.dumps(probe))
    deadline = time.monotonic() + 30
    for attempt in range(1, 10_000):
        done = kubectl.run(
            "set", "image", "-n", namespace, "deployment/hold-probe", f"probe=probe:{attempt}",
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            assert refusal("probe", "hold-probe") in done.stderr, done.stderr
            break
        assert time.monotonic() < deadline, "the promotion hold never came into force"
        time.sleep(0.2)
    kubectl.run("delete", "-n", namespace, "deployment/hold-probe", "--wait=false")


@contextlib.contextmanager
def bot_identity(kubectl: Kubectl, kubeconfig: Path, namespace: str) -> Iterator[Kube]:
    """A ``Kube`` that acts as canary-bot's ServiceAccount (impersonated), with every
    right in ``namespace``: this test is about admission, not RBAC."""
    binding = f"promotion-hold-bot-{namespace}"[:63]
    kubectl.run(
        "create", "-n", namespace, "rolebinding", binding, "--clusterrole=cluster-admin",
        f"--serviceaccount={SA_USER.split(':')[2]}:{SA_USER.split(':')[3]}",
    )  # fmt: skip
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    api.set_default_header("Impersonate-User", SA_USER)
    kube = Kube(api)
    try:
        yield kube
    finally:
        kube.close()


@dataclass(frozen=True)
class Seen:
    """One watch event: when it arrived (monotonic), its kind and object."""

    at: float
    kind: str
    obj: Any


class Timeline:
    """Pods created and Deployment states in one namespace, as watches deliver them."""

    def __init__(self, api: k8s.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.pods: list[Seen] = []
        self.deployments: list[Seen] = []
        self._stop = threading.Event()
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        self._threads = [
            threading.Thread(
                target=self._follow, args=(core.list_namespaced_pod, self.pods), daemon=True
            ),
            threading.Thread(
                target=self._follow,
                args=(apps.list_namespaced_deployment, self.deployments),
                daemon=True,
            ),
        ]
        self._listed = threading.Barrier(3)

    def __enter__(self) -> Timeline:
        for thread in self._threads:
            thread.start()
        self._listed.wait(30)  # both watches run from here on
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _follow(self, list_fn: Callable[..., Any], into: list[Seen]) -> None:
        version = list_fn(self.namespace).metadata.resource_version
        self._listed.wait(30)
        while not self._stop.is_set():
            stream = k8s_watch.Watch().stream(
                list_fn, self.namespace, resource_version=version, timeout_seconds=2
            )
            try:
                for event in stream:
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    into.append(Seen(time.monotonic(), event["type"], obj))
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if exc.status != 410:
                    raise
                version = list_fn(self.namespace).metadata.resource_version

    def pods_created(self, image: str, before: float = float("inf")) -> list[str]:
        """Pods of the user's Deployment (not the canary) with ``image``, first seen
        before ``before``."""
        names = []
        for seen in self.pods:
            pod = seen.obj
            if seen.kind != "ADDED" or seen.at >= before:
                continue
            if pod.metadata.name.startswith("podinfo-canary-"):
                continue
            if image in {c.image for c in pod.spec.containers} and pod.metadata.name not in names:
                names.append(pod.metadata.name)
        return names

    def first_deployment(self, matches: Callable[[Any], bool], after: float = 0.0) -> float | None:
        """When podinfo was first seen in a state ``matches`` accepts (after ``after``)."""
        for seen in self.deployments:
            if seen.at > after and seen.obj.metadata.name == "podinfo" and matches(seen.obj):
                return seen.at
        return None


def image_of(deployment: Any) -> str:
    """The image of podinfo's (only) container in its template."""
    return str(deployment.spec.template.spec.containers[0].image)


def promoting(deployment: Any) -> str:
    """The promotion mark on a Deployment ("" when there is none)."""
    return str((deployment.metadata.annotations or {}).get(ANNOTATION, ""))
