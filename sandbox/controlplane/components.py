"""One argv builder per component: the flags each process of the control plane runs with.

Every builder returns a :class:`Launch`: the binary's name, its arguments, the URL that
answers 200 once it is healthy, and how the start line names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandbox.controlplane.common import (
    KWOK_NODE_ANNOTATION,
    KWOK_STAGES_DIR,
    POD_CIDR,
    SERVICE_CIDR,
    ControlPlaneError,
)


@dataclass(frozen=True)
class Ports:
    """The loopback ports of one control plane, all picked free together."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (plain HTTP on loopback)."""
        return f"http://127.0.0.1:{self.etcd_client}"

    @property
    def server(self) -> str:
        """The API server's URL."""
        return f"https://127.0.0.1:{self.apiserver}"


@dataclass(frozen=True)
class Launch:
    """How to start one component and how to tell it is healthy."""

    name: str
    args: list[str]
    health_url: str
    what: str | None = None


def etcd(workdir: Path, ports: Ports, version: str) -> Launch:
    """etcd, without fsync: the data is throwaway and fsync dominates on small machines."""
    peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
    return Launch(
        "etcd",
        [
            "--name=default",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls={ports.etcd_url}",
            f"--advertise-client-urls={ports.etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ],
        health_url=f"{ports.etcd_url}/health",
        what=f"etcd {version} on {ports.etcd_url}",
    )


def kube_apiserver(pki_dir: Path, ports: Ports, version: str) -> Launch:
    """The API server, with RBAC, service-account tokens and the front proxy of kubeadm."""
    return Launch(
        "kube-apiserver",
        [
            f"--etcd-servers={ports.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={pki_dir}",
            f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
            f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
            f"--client-ca-file={pki_dir / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki_dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            # The only address is loopback, which Endpoints refuse; nothing in a
            # kubelet-less cluster dials the `kubernetes` Service anyway.
            "--endpoint-reconciler-type=none",
            # The aggregation layer's front proxy, as kubeadm sets it up. Without it
            # the controller manager and scheduler log a missing CA bundle forever.
            f"--requestheader-client-ca-file={pki_dir / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki_dir / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki_dir / 'front-proxy-client.key'}",
        ],
        health_url=f"{ports.server}/readyz",
        what=f"kube-apiserver {version} on {ports.server}",
    )


def kube_controller_manager(workdir: Path, pki_dir: Path, ports: Ports) -> Launch:
    """The controller manager, signing with the cluster CA under its own identity."""
    kubeconfig = workdir / "kube-controller-manager.kubeconfig"
    return Launch(
        "kube-controller-manager",
        [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.controller_manager}",
            f"--cert-dir={pki_dir / 'kube-controller-manager'}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki_dir / 'sa.key'}",
            f"--root-ca-file={pki_dir / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}",
            f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*",
            "--profiling=false",
        ],
        health_url=f"https://127.0.0.1:{ports.controller_manager}/healthz",
    )


def kube_scheduler(workdir: Path, pki_dir: Path, ports: Ports) -> Launch:
    """The scheduler, under its own identity."""
    kubeconfig = workdir / "kube-scheduler.kubeconfig"
    return Launch(
        "kube-scheduler",
        [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}",
            f"--cert-dir={pki_dir / 'kube-scheduler'}",
            "--leader-elect=false",
            "--profiling=false",
        ],
        health_url=f"https://127.0.0.1:{ports.scheduler}/healthz",
    )


def kwok(workdir: Path, ports: Ports, version: str) -> Launch:
    """kwok, managing only the annotated fake Node and moving Pods by the Stage files."""
    return Launch(
        "kwok",
        [
            f"--kubeconfig={workdir / 'kwok.kubeconfig'}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--server-address=127.0.0.1:{ports.kwok}",
            "--node-ip=127.0.0.1",
            f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
            *(f"--config={p}" for p in kwok_stage_files()),
        ],
        health_url=f"http://127.0.0.1:{ports.kwok}/healthz",
        what=f"kwok {version}",
    )


def kwok_stage_files() -> list[Path]:
    """The Stage objects in ``sandbox/kwok/`` that drive Pod lifecycles."""
    stages = sorted(KWOK_STAGES_DIR.glob("*.yaml"))
    if not stages:
        raise ControlPlaneError(f"no kwok Stage files in {KWOK_STAGES_DIR}")
    return stages
