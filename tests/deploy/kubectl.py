"""Helpers for installing canary-bot's manifests on the test control plane.

Everything goes through the same kubectl binary the control plane was built with (its
built-in kustomize renders the manifests), so the tests see what an operator running
``kubectl apply -k manifests/`` sees.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from sandbox.controlplane import ControlPlane
from sandbox.engine_process import EngineProcess
from sandbox.polling import wait_for
from sandbox.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CRDS = MANIFESTS / "crds"
BASE = MANIFESTS / "base"
NAMESPACED = MANIFESTS / "overlays" / "namespaced"

NAMESPACE = "canary-bot"
SERVICE_ACCOUNT = "canary-bot"
SA_USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
# What the API server attaches to a request made with the ServiceAccount's token; a
# SubjectAccessReview must carry them too, or bindings to these groups would be missed.
SA_GROUPS = [
    "system:serviceaccounts",
    f"system:serviceaccounts:{NAMESPACE}",
    "system:authenticated",
]
LEASE = "canary-bot-leader"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Kubectl:
    """The control plane's kubectl with its admin kubeconfig."""

    binary: Path
    kubeconfig: Path

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; with ``check`` a non-zero exit fails the test with its output."""
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"kubectl {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def render(self, directory: Path) -> list[Manifest]:
        """``kubectl kustomize <directory>`` as a list of objects."""
        output = self.run("kustomize", str(directory)).stdout
        return [doc for doc in yaml.safe_load_all(output) if doc]


def find(objects: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    """Objects of one kind (and name, when given)."""
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single object of that kind (and name)."""
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]





def _gone(read: Any) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def uninstall(kubectl: Kubectl, api: k8s.ApiClient, directory: Path) -> None:
    """Delete what ``directory`` installs except the CRD, and wait for the namespace to go.

    The CRD stays: the session's other tests keep using it (the ``crd`` fixture), and
    deleting it would delete every CanaryRelease in the cluster.
    """
    objects = [o for o in kubectl.render(directory) if o["kind"] != "CustomResourceDefinition"]
    kubectl.run(
        "delete", "--ignore-not-found", "--wait=false", "-f", "-",
        stdin=yaml.safe_dump_all(objects),
    )  # fmt: skip
    core = k8s.CoreV1Api(api)
    wait_for(
        lambda: _gone(lambda: core.read_namespace(NAMESPACE)),
        180,
        f"namespace {NAMESPACE} to be deleted",
        interval=0.5,
    )


def rendered_namespace(objects: list[Manifest]) -> Manifest:
    """The bot's Namespace object as rendered."""
    return one(objects, "Namespace", NAMESPACE)


def can(
    api: k8s.ApiClient,
    verb: str,
    resource: str,
    *,
    group: str = "",
    namespace: str | None = None,
    subresource: str = "",
    name: str = "",
) -> bool:
    """A SubjectAccessReview: may the bot's ServiceAccount do this?"""
    review = k8s.V1SubjectAccessReview(
        spec=k8s.V1SubjectAccessReviewSpec(
            user=SA_USER,
            groups=SA_GROUPS,
            resource_attributes=k8s.V1ResourceAttributes(
                verb=verb,
                group=group,
                resource=resource,
                subresource=subresource or None,
                namespace=namespace,
                name=name or None,
            ),
        )
    )
    result = k8s.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(result.status.allowed)


def service_account_kubeconfig(kubectl: Kubectl, control_plane: ControlPlane, path: Path) -> Path:
    """A kubeconfig that authenticates as the bot's ServiceAccount (TokenRequest API).

    The cluster entry (server and CA) is copied from the admin kubeconfig; the user is
    only a bearer token, as a Pod's mounted token would be.
    """
    token = kubectl.run(
        "create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    ca = cluster.get("certificate-authority-data")
    if ca is None:
        ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": cluster["server"], "certificate-authority-data": ca},
            }
        ],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {"name": "canary-bot", "context": {"cluster": "test", "user": SERVICE_ACCOUNT}}
        ],
        "current-context": "canary-bot",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def engine(
    kubeconfig: Path, namespace: str, prometheus_url: str, log_path: Path, identity: str
) -> Iterator[EngineProcess]:
    """Run the engine alone as a separate process, as the bot's Pod would run it."""
    running = EngineProcess(
        log_path.stem,
        [
            "--kubeconfig", str(kubeconfig),
            "--namespace", namespace,
            "--lease-namespace", NAMESPACE,
            "--prometheus-url", prometheus_url,
            "--identity", identity,
        ],
        log_path.parent,
        unset_env=("KUBECONFIG", "POD_NAMESPACE"),
        stop_timeout=30,
    )  # fmt: skip
    running.start(wait=False)
    try:
        yield running
    finally:
        running.stop()


def lease_holder(api: k8s.ApiClient) -> str | None:
    """Who holds the bot's leader Lease now (None: no Lease; "" released)."""
    try:
        lease = k8s.CoordinationV1Api(api).read_namespaced_lease(LEASE, NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return str(lease.spec.holder_identity or "")


def create_namespace(api: k8s.ApiClient, name: str) -> None:
    """Create a namespace (if missing) and wait until it can run Pods."""
    core = k8s.CoreV1Api(api)
    try:
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    except ApiException as exc:
        if exc.status != 409:
            raise
    wait_for(
        lambda: not _gone(lambda: core.read_namespaced_service_account("default", name)),
        60,
        f"ServiceAccount {name}/default",
    )


@dataclass
class BotRun:
    """``canary-bot run`` started with a Deployment's arguments; its ports and log."""

    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log_path: Path

    def log(self) -> str:
        """Everything it printed so far."""
        return self.log_path.read_text(errors="replace")


def pod_command(deployment: Manifest, port: int, metrics_port: int) -> list[str]:
    """The Deployment's container args, on local ports instead of 3000 and 9090."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args: list[str] = list(container["args"])
    for flag, value in (("--port", port), ("--metrics-port", metrics_port)):
        at = args.index(flag)
        args[at + 1] = str(value)
    return [str(Path(sys.executable).parent / "canary-bot"), *args, "--host", "127.0.0.1"]


@contextlib.contextmanager
def run_as_pod(
    deployment: Manifest, configmap: Manifest, kubeconfig: Path, env: dict[str, str], tmp: Path
) -> Iterator[BotRun]:
    """Run the bot as the Deployment's pod would: its args, the ConfigMap's config file,
    the ServiceAccount's kubeconfig and ``env`` (Slack settings, PROMETHEUS_URL)."""
    config = tmp / "config.yaml"
    config.write_text(configmap["data"]["config.yaml"])
    port, metrics_port = free_port(), free_port()
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "KUBECONFIG", "CANARY_BOT_"))
    }
    log = tmp / "bot.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            pod_command(deployment, port, metrics_port),
            env={**base, "KUBECONFIG": str(kubeconfig), "CANARY_BOT_CONFIG": str(config), **env},
            stdin=subprocess.DEVNULL,  # a pod has no terminal
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield BotRun(process, port, metrics_port, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET on a local port: status and body (0 while nothing listens)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)
