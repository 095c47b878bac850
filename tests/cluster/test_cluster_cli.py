"""`make cluster-up` / `make cluster-down` as the README documents them.

The Makefile targets run ``python -m sandbox.controlplane up|down``; this drives that
command (with a private state directory, so it never touches a developer's own cluster)
and uses the printed KUBECONFIG with the built kubectl, as a person would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.controlplane import find_binaries

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.cluster
def test_cluster_up_prints_a_kubeconfig_that_kubectl_uses_and_down_stops_it(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    cli = [sys.executable, "-m", "sandbox.controlplane"]
    up = subprocess.run(
        [*cli, "--state-dir", str(state), "up"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        last = up.stdout.strip().splitlines()[-1]
        assert last.startswith("export KUBECONFIG="), up.stdout
        kubeconfig = last.split("=", 1)[1]
        kubectl = find_binaries() / "kubectl"
        nodes = subprocess.run(
            [str(kubectl), "get", "nodes", "--no-headers"],
            env={**os.environ, "KUBECONFIG": kubeconfig},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert nodes.returncode == 0, nodes.stderr
        assert " Ready " in nodes.stdout, nodes.stdout
    finally:
        down = subprocess.run(
            [*cli, "--state-dir", str(state), "down"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert not state.exists()
