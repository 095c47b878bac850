"""Names every part of the local control plane shares: topology, paths, the error type."""

from __future__ import annotations

import ssl
import sys
import urllib.request
from pathlib import Path
from typing import Any

BIN_ENV = "CANARY_BOT_CONTROL_PLANE_BIN"
"""Environment variable naming a directory that already holds the binaries."""

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
"""The processes of a running control plane, in start order."""

NODE_NAME = "kwok-node-0"
"""Name of the single fake Node that kwok manages."""

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
# The annotation kwok selects its nodes by (see --manage-nodes-with-annotation-selector).
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"

SANDBOX_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = SANDBOX_DIR.parent
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"
VERSIONS_FILE = REPO_ROOT / "hack" / "versions.env"
KWOK_STAGES_DIR = SANDBOX_DIR / "kwok"
STOP_GRACE_SECONDS = 5.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


def log(message: str) -> None:
    """A progress line on stderr (stdout of the CLI carries only its answer)."""
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def open_url(url: str | urllib.request.Request, context: ssl.SSLContext, timeout: float = 2) -> Any:
    """Open ``url`` without proxies: urllib would send even 127.0.0.1 through $https_proxy."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    return opener.open(url, timeout=timeout)
