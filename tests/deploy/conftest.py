"""Fixtures for the installation tests: kubectl against the session's control plane."""

from __future__ import annotations

import pytest

from sandbox.controlplane import ControlPlane
from tests.deploy.kubectl import Kubectl


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """The control plane's own kubectl (v1.34, kustomize built in), as cluster admin."""
    return Kubectl(control_plane.bin_dir / "kubectl", control_plane.kubeconfig)
