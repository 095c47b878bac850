"""A real, local Kubernetes control plane for tests and the sandbox.

``ControlPlane`` runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok as child processes bound to 127.0.0.1 on free ports, with a throwaway PKI generated
at start. kwok stands in for kubelets: it manages one fake Node and moves Pods through
their lifecycle (scheduled -> Running + Ready, deleted -> gone) using the Stage objects in
``sandbox/kwok/``, so Deployments really roll out without any container runtime.

Binaries come from ``hack/build-control-plane.sh`` (pinned in ``hack/versions.env``,
cached under ``~/.cache/canary-bot``), from an explicit ``bin_dir``, or from the
``CANARY_BOT_CONTROL_PLANE_BIN`` environment variable.

Command line (used by ``make cluster-up`` / ``make cluster-down``)::

    python -m sandbox.controlplane up       # start a detached cluster, print `export KUBECONFIG=…`
    python -m sandbox.controlplane status   # show components, pids, memory, readiness
    python -m sandbox.controlplane down     # stop it and delete its state

Decisions worth knowing:

- Admin access is a client certificate with ``O=system:masters``; the controller manager
  and the scheduler get their own identities (``system:kube-controller-manager``,
  ``system:kube-scheduler``) so the bootstrap RBAC roles apply as in a kubeadm cluster.
- etcd runs with ``--unsafe-no-fsync``: the data is throwaway and fsync dominates start
  and write latency on small machines.
- Children started by ``start()`` get ``PR_SET_PDEATHSIG`` (SIGKILL), so they die with the
  Python process that started them even when it is killed; the detached CLI cluster
  opts out of that and is stopped through its pids file inste

The package: :mod:`~sandbox.controlplane.binaries` (finding or building the binaries),
:mod:`~sandbox.controlplane.pki` (the throwaway CA, certificates and kubeconfigs),
:mod:`~sandbox.controlplane.components` (one argv builder per component),
:mod:`~sandbox.controlplane.processes` (child processes and their pids),
:mod:`~sandbox.controlplane.cluster` (:class:`ControlPlane`) and
:mod:`~sandbox.controlplane.cli` (the command line).
"""

from sandbox.controlplane.binaries import find_binaries, pinned_versions
from sandbox.controlplane.cli import main
from sandbox.controlplane.cluster import ControlPlane
from sandbox.controlplane.common import (
    BIN_ENV,
    COMPONENTS,
    KWOK_NODE_ANNOTATION,
    NODE_NAME,
    POD_CIDR,
    SERVICE_CIDR,
    ControlPlaneError,
)

__all__ = [
    "BIN_ENV",
    "COMPONENTS",
    "KWOK_NODE_ANNOTATION",
    "NODE_NAME",
    "POD_CIDR",
    "SERVICE_CIDR",
    "ControlPlane",
    "ControlPlaneError",
    "find_binaries",
    "main",
    "pinned_versions",
]
