"""`make run` next to a real cluster (here: the test control plane as the "real" one, with
an installed engine holding the cluster's Lease).

- With a kube context and no flag it is console mode and the front only: no second
  engine, no Lease touched, and the test control plane is not built.
- With ``ARGS=--engine`` its engine campaigns for the same Lease and stands by while the
  installed engine leads; it takes over only once that one hands the Lease back.
- A Lease namespace that does not exist is an error, not a silent fallback.
- ``make run SANDBOX=1`` starts the sandbox even with a kube context.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from sandbox.controlplane import ControlPlane
from sandbox.polling import WaitTimeout, wait_for
from sandbox.ports import free_port
from tests.deploy.kubectl import NAMESPACE, create_namespace, engine, lease_holder
from tests.sandbox.test_make_run import ROOT, Terminal

pytestmark = pytest.mark.cluster

VENV = Path(sys.executable).parent.parent
INSTALLED = "installed-engine"
# never queried: no release here has metric checks
NO_PROMETHEUS = "http://127.0.0.1:9"


def until(condition: Callable[[], Any], timeout: float, describe: Callable[[], str]) -> None:
    """Poll ``condition``; on timeout fail with what ``describe`` says then."""
    try:
        wait_for(condition, timeout, "the condition", interval=0.2)
    except WaitTimeout:
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {describe()}")


def metrics(port: int) -> str:
    """The console process's /metrics ("" while it does not answer yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def make_run(tmp_path: Path, env: dict[str, str], *args: str, sandbox: bool = False) -> Terminal:
    """``make run`` as a person types it, with the installed venv and ``env`` added."""
    stamp = tmp_path / "venv-installed"
    stamp.touch()  # the venv is installed: make must not reinstall it
    command = ["make", "--no-print-directory", "run", f"VENV={VENV}", f"STAMP={stamp}"]
    if sandbox:
        command.append("SANDBOX=1")
    if args:
        command.append("ARGS=" + " ".join(args))
    return Terminal(command, env=env)


@pytest.fixture
def lease_namespace(kube_api_client: k8s.ApiClient, crd: None) -> Iterator[str]:
    """The CRD and the canary-bot namespace, as on a cluster where canary-bot is installed.

    Created fresh and deleted afterwards (waiting until it is gone), so no Lease of an
    earlier test, and no terminating namespace, is in the way.
    """
    core = k8s.CoreV1Api(kube_api_client)
    _delete_and_wait(core, NAMESPACE)
    create_namespace(kube_api_client, NAMESPACE)
    yield NAMESPACE
    _delete_and_wait(core, NAMESPACE)


def _delete_and_wait(core: k8s.CoreV1Api, name: str) -> None:
    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    if gone():
        return
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise
    wait_for(gone, 120, f"namespace {name} to be deleted", interval=0.5)


def test_make_run_with_a_kube_context_is_the_front_only_and_builds_nothing(
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    lease_namespace: str,
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    port = free_port()
    kubeconfig = control_plane.kubeconfig
    with engine(kubeconfig, namespace, NO_PROMETHEUS, tmp_path / "engine.log", INSTALLED) as ours:
        wait_for(lambda: lease_holder(kube_api_client) == INSTALLED, 30, f"\n{ours.log()}")
        term = make_run(
            tmp_path,
            {"KUBECONFIG": str(kubeconfig), "CANARY_BOT_CACHE": str(cache)},
            "--metrics-port",
            str(port),
        )
        try:
            banner = term.wait_for("canary-bot console against", 120)
            assert f"against {control_plane.server}" in banner
            assert "front only: no engine runs here" in banner
            assert "pass --engine to run one" in banner
            term.wait_for("Type help for the commands", 30)
            # the front works with the operator's credentials
            term.type(f"list -n {namespace}")
            term.wait_for(f"No active releases in {namespace}.", 30)
            page = wait_for(lambda: metrics(port), 30, "the console's /metrics")
            # no engine in this process at all, and the installed one still leads
            assert "canarybot_leader" not in page
            assert lease_holder(kube_api_client) == INSTALLED
        finally:
            exit_code = term.close()
    assert exit_code == 0
    started = "\n".join(term.transcript)
    assert "[control-plane]" not in started and "build-control-plane" not in started
    assert not cache.exists(), "make run built (or looked for) the test control plane"


def test_make_run_with_engine_stands_by_while_the_installed_engine_leads(
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    lease_namespace: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    kubeconfig = control_plane.kubeconfig
    env = {"KUBECONFIG": str(kubeconfig), "PROMETHEUS_URL": NO_PROMETHEUS}
    args = ("--engine", "--namespace", namespace, "--metrics-port", str(port))
    with engine(kubeconfig, namespace, NO_PROMETHEUS, tmp_path / "engine.log", INSTALLED) as ours:
        wait_for(lambda: lease_holder(kube_api_client) == INSTALLED, 30, f"\n{ours.log()}")
        term = make_run(tmp_path, env, *args)
        try:
            banner = term.wait_for("canary-bot console against", 120)
            assert (
                "engine on: it acts only while it holds the Lease "
                "canary-bot/canary-bot-leader, and stands by while another does"
            ) in banner
            term.wait_for("Type help for the commands", 30)
            # its engine runs and campaigns, but the Lease stays with the installed one
            wait_for(lambda: "canarybot_leader 0.0" in metrics(port), 30, "a standing-by engine")
            assert lease_holder(kube_api_client) == INSTALLED
            assert ours.stop() == 0  # hands the Lease back
            hostname = socket.gethostname()
            until(
                lambda: (lease_holder(kube_api_client) or "").startswith(hostname),
                60,
                lambda: f"the console's engine to take the free Lease (holder "
                f"{lease_holder(kube_api_client)!r}); its output:\n{term.drain()}",
            )
            wait_for(lambda: "canarybot_leader 1.0" in metrics(port), 30, "a leading engine")
        finally:
            exit_code = term.close()
    assert exit_code == 0


def test_an_engine_without_the_lease_namespace_says_so_and_stops(
    control_plane: ControlPlane, kube_api_client: k8s.ApiClient
) -> None:
    missing = "t-no-such-namespace"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    result = subprocess.run(
        [
            str(VENV / "bin" / "canary-bot"), "run", "--engine",
            "--lease-namespace", missing, "--metrics-port", str(free_port()),
        ],
        env={**env, "KUBECONFIG": str(control_plane.kubeconfig)},
        input="",  # a pipe, as at a terminal's console: the check comes before any reading
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"the leader Lease namespace '{missing}' does not exist in this cluster" in (
        result.stderr
    )
    # nothing was created anywhere on the way
    with pytest.raises(ApiException) as gone:
        k8s.CoreV1Api(kube_api_client).read_namespace(missing)
    assert gone.value.status == 404
    leases = k8s.CoordinationV1Api(kube_api_client).list_namespaced_lease("default").items
    assert [lease.metadata.name for lease in leases if "canary-bot" in lease.metadata.name] == []


@pytest.mark.prometheus
def test_make_run_sandbox_starts_the_sandbox_even_with_a_kube_context(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    term = make_run(
        tmp_path,
        {"KUBECONFIG": str(control_plane.kubeconfig)},
        "--port",
        str(free_port()),
        sandbox=True,
    )
    try:
        term.wait_for("[run] SANDBOX=1: starting the local sandbox", 60)
        where = term.wait_for("kubectl:", 180)
        # the sandbox's own control plane, never the configured cluster
        assert str(control_plane.kubeconfig) not in where
        term.wait_for("Type help for the commands", 60)
    finally:
        exit_code = term.close()
    assert exit_code == 0
