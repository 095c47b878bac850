"""The :class:`ControlPlane`: start the components in order, wait for health, stop them."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from sandbox.controlplane import components
from sandbox.controlplane.binaries import find_binaries, pinned_versions
from sandbox.controlplane.common import (
    KWOK_NODE_ANNOTATION,
    NODE_NAME,
    STOP_GRACE_SECONDS,
    VERSIONS_FILE,
    ControlPlaneError,
    log,
    open_url,
)
from sandbox.controlplane.pki import write_cluster_pki
from sandbox.controlplane.processes import (
    Component,
    die_with_parent,
    rss_bytes,
    tail,
    terminate,
)
from sandbox.ports import free_ports


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
        self._components: dict[str, Component] = {}
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
        return {name: rss_bytes(pid) for name, pid in self.pids.items()}

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
            log(f"stopping {', '.join(c.name for c in self._components.values() if c.process)}")

            def alive(pid: int) -> bool:
                return any(p.pid == pid and p.poll() is None for p in procs)

            terminate([p.pid for p in live], alive, STOP_GRACE_SECONDS)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)

    # -- start sequence -----------------------------------------------------------------

    # -- start sequence -----------------------------------------------------------------

    def _start(self) -> None:
        self.bin_dir = find_binaries(self._explicit_bin_dir)
        # Timings start here: a cold build of the binaries is reported by the build script.
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout
        versions = pinned_versions() if VERSIONS_FILE.exists() else {}
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        pki_dir = self.workdir / "pki"

        ports = components.Ports(*free_ports(6))
        self.server = ports.server

        t = time.monotonic()
        self._ssl_context = write_cluster_pki(pki_dir, self.workdir, self.server)
        log(f"generated certificates and service-account key ({time.monotonic() - t:.1f}s)")

        self._launch(components.etcd(self.workdir, ports, versions.get("ETCD_VERSION", "")))
        self._wait_healthy(["etcd"], deadline)
        version = versions.get("KUBERNETES_VERSION", "")
        self._launch(components.kube_apiserver(pki_dir, ports, version))
        self._wait_healthy(["kube-apiserver"], deadline)

        self._create_node()
        self._launch(components.kube_controller_manager(self.workdir, pki_dir, ports))
        self._launch(components.kube_scheduler(self.workdir, pki_dir, ports))
        self._launch(components.kwok(self.workdir, ports, versions.get("KWOK_VERSION", "")))
        self._wait_healthy(["kube-controller-manager", "kube-scheduler", "kwok"], deadline)

        t = time.monotonic()
        log(f"waiting for node {NODE_NAME} to be Ready and the default ServiceAccount")
        self._wait_for(self._node_ready, f"node {NODE_NAME} Ready without taints", deadline)
        self._wait_for(
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
            "ServiceAccount default/default",
            deadline,
        )
        log(f"node and ServiceAccount ready ({time.monotonic() - t:.1f}s)")
        log(f"control plane ready in {time.monotonic() - t0:.1f}s; KUBECONFIG={self.kubeconfig}")

    def relaunch(self, name: str, timeout: float = 120.0) -> None:
        """Start a stopped (or killed) component again with the command line it had, and
        wait until it is healthy: same ports, certificates and data (fault tests)."""
        component = self._components[name]
        if component.process is not None and component.process.poll() is None:
            raise RuntimeError(f"{name} is still running")
        assert component.health_url is not None, f"{name} has no health check"
        launch = components.Launch(name, component.argv[1:], component.health_url)
        self._launch(launch)
        self._wait_healthy([name], time.monotonic() + timeout)

    def _launch(self, launch: components.Launch) -> None:
        binary = self.bin_dir / launch.name
        log_file = self.log_path(launch.name)
        component = Component(
            name=launch.name,
            argv=[str(binary), *launch.args],
            log=log_file,
            health_url=launch.health_url,
        )
        self._components[launch.name] = component
        log(f"starting {launch.what or launch.name}")
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        with log_file.open("ab") as out:
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
                preexec_fn=die_with_parent(os.getpid()) if self.die_with_parent else None,
            )

    def _check_alive(self) -> None:
        for component in self._components.values():
            proc = component.process
            if proc is not None and proc.poll() is not None:
                raise ControlPlaneError(
                    f"{component.name} exited with code {proc.returncode}; "
                    f"last lines of {component.log}:\n{tail(component.log)}"
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
            f"\n--- last lines of {c.log} ---\n{tail(c.log, lines=15)}"
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
                    f"{tail(failing.log)}"
                )
            time.sleep(0.2)
        log(f"{', '.join(names)} ready ({time.monotonic() - t:.1f}s)")

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
            with open_url(url, context) as response:
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
        with open_url(request, self._ssl_context, timeout=10) as response:
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
