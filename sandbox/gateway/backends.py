"""Backends for kwok's pods: one small podinfo-like HTTP server per Ready pod IP.

kwok runs no containers, so nothing answers on a pod's IP. :class:`BackendSimulator`
follows the EndpointSlices of the Services it is given (the stable Service and the
canary one) and, for every ready endpoint, listens on ``<pod IP>:<endpoint port>``
inside the network namespace where the pod range is local (``netns``, the data plane's
``pod_netns``; see ``sandbox.gateway.podnet``), so a real proxy in front of those
Services reaches real sockets through the veth into that namespace. Each server answers like
podinfo: ``GET /`` returns JSON with the pod's name and the version from its first
container's image tag; ``/status/<code>`` answers that code; ``/healthz`` and
``/readyz`` answer 200.

Each Service is one side, ``stable`` or ``canary``, with the same settings as the
ingress-nginx simulator (``sandbox.traffic.SideSettings``): an error rate (answered
with ``error_status``, spread deterministically: 20 % is exactly every fifth request),
a latency and its jitter. Settings change through :meth:`BackendSimulator.set_side` or
``POST /control`` on the simulator's own control server (``GET /control`` shows the
settings and the request counts per side and per pod).
"""

from __future__ import annotations

import contextlib
import json
import math
import socketserver
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from sandbox.gateway.podnet import in_netns
from sandbox.traffic import SIDES, ControlError, Side, SideSettings

__all__ = ["BackendSimulator", "PodCounts", "image_version"]

_GOLDEN = (math.sqrt(5) - 1) / 2
_SERVICE_LABEL = "kubernetes.io/service-name"
_MAX_BODY = 64 * 1024


def image_version(image: str) -> str:
    """The tag of an image reference (``ghcr.io/x/podinfo:6.0.3`` -> ``6.0.3``)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


class _PodServer(ThreadingHTTPServer):
    """An HTTP server that binds without ``HTTPServer``'s reverse DNS lookup.

    ``HTTPServer.server_bind`` calls ``socket.getfqdn`` on the address. Inside the pods'
    network namespace the host's resolver is unreachable, so every lookup waited for the
    resolver's timeout (about 10 s) while the pod was already Ready and Envoy already sent
    it requests: those all failed (503, upstream connect failure) and the sandbox's canary
    analysis read them as the canary's errors.
    """

    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


@dataclass
class PodCounts:
    """Requests one pod answered."""

    side: Side
    version: str
    requests: int = 0
    errors: int = 0


@dataclass
class _SideState:
    settings: SideSettings
    requests: int = 0
    errors: int = 0
    sequence: int = 0
    pods: dict[str, PodCounts] = field(default_factory=dict)


@dataclass(frozen=True)
class _Pod:
    name: str
    side: Side
    version: str


class BackendSimulator:
    """Serves every ready pod of ``services`` (``{service name: side}``) in ``namespace``.

    ``start()`` begins following the EndpointSlices (every ``poll`` seconds) and serves
    ``/control`` on ``127.0.0.1:<free port>`` (host namespace); ``stop()`` closes every
    listener. Pod listeners are bound in network namespace ``netns`` (``ip netns`` name);
    None binds them in this process's own namespace.
    """

    def __init__(
        self,
        kubeconfig: Path | str,
        namespace: str,
        services: Mapping[str, Side],
        *,
        stable: SideSettings | None = None,
        canary: SideSettings | None = None,
        poll: float = 0.2,
        netns: str | None = None,
    ) -> None:
        """Prepare (not start); the sides default to no errors and 2 ms ± 1 ms."""
        for side in services.values():
            if side not in SIDES:
                raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        self.kubeconfig = Path(kubeconfig)
        self.namespace = namespace
        self.services = dict(services)
        self.poll = poll
        self.netns = netns
        default = SideSettings(latency_ms=2.0, jitter_ms=1.0)
        self._sides: dict[Side, _SideState] = {
            "stable": _SideState(stable or default),
            "canary": _SideState(canary or default),
        }
        self._lock = threading.Lock()
        self._servers: dict[tuple[str, int], tuple[_Pod, ThreadingHTTPServer]] = {}
        self._pods: dict[str, _Pod] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._control: ThreadingHTTPServer | None = None
        self._api: kubernetes.client.ApiClient | None = None
        self.last_error: str | None = None

    # -- lifecycle ----------------------------------------------------------------------

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

    def start(self) -> None:
        """Serve the pods that are ready now, then keep following the EndpointSlices."""
        self._api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        self.sync()
        self._control = ThreadingHTTPServer(("127.0.0.1", 0), self._control_handler())
        self._control.daemon_threads = True
        threading.Thread(target=self._control.serve_forever, daemon=True).start()
        self._thread = threading.Thread(target=self._follow, name="backends", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following and close every listener."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            servers = [server for _, server in self._servers.values()]
            self._servers.clear()
        if self._control is not None:
            servers.append(self._control)
        for server in servers:
            server.shutdown()
            server.server_close()
        if self._api is not None:
            self._api.close()

    @property
    def control_url(self) -> str:
        """``http://127.0.0.1:<port>/control``."""
        if self._control is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self._control.server_address[1]}/control"

    # -- settings and counts ------------------------------------------------------------

    def set_side(self, side: Side, **changes: Any) -> SideSettings:
        """Change one side's settings (``error_rate``, ``latency_ms``, ...)."""
        self.apply_control({side: changes})
        return self._sides[side].settings

    def apply_control(self, update: Any) -> dict[str, Any]:
        """Apply ``{"stable": {...}, "canary": {...}}``; raises ControlError on bad input."""
        if not isinstance(update, Mapping):
            raise ControlError(f"the update must be an object, got {type(update).__name__}")
        unknown = set(update) - set(SIDES)
        if unknown:
            raise ControlError(f"unknown field(s) {sorted(unknown)}; allowed: stable, canary")
        new = {side: self._sides[side].settings.updated(update[side], side) for side in update}
        with self._lock:
            for side, settings in new.items():
                self._sides[side].settings = settings
        return self.state()

    def state(self) -> dict[str, Any]:
        """Settings, counts per side and per pod, and the addresses being served."""
        with self._lock:
            return {
                side: {
                    "settings": asdict(s.settings),
                    "requests": s.requests,
                    "errors": s.errors,
                    "pods": {name: asdict(c) for name, c in s.pods.items()},
                }
                for side, s in self._sides.items()
            } | {"serving": sorted(f"{ip}:{port}" for ip, port in self._servers)}

    def counts(self) -> dict[Side, int]:
        """Requests answered so far, per side."""
        with self._lock:
            return {side: s.requests for side, s in self._sides.items()}

    def serving(self) -> dict[str, str]:
        """``ip:port`` -> pod name for every listener."""
        with self._lock:
            return {f"{ip}:{port}": pod.name for (ip, port), (pod, _) in self._servers.items()}

    def wait_serving(self, counts: Mapping[Side, int], timeout: float = 60.0) -> None:
        """Wait until exactly ``counts[side]`` pods are served per side."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = {side: 0 for side in SIDES}
                for pod, _ in self._servers.values():
                    seen[pod.side] += 1
            if all(seen[side] == n for side, n in counts.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"backends serve {seen} pods, expected {dict(counts)} within {timeout:.0f}s"
                    f" (last error: {self.last_error})"
                )
            time.sleep(0.1)

    # -- following EndpointSlices -------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.sync()
            except (ApiException, OSError) as exc:  # the API server may restart in tests
                self.last_error = f"{type(exc).__name__}: {exc}"

    def sync(self) -> None:
        """Open listeners for new ready endpoints and close those that went away."""
        discovery = kubernetes.client.DiscoveryV1Api(self._api)
        selector = f"{_SERVICE_LABEL} in ({','.join(sorted(self.services))})"
        # Raw JSON: the client's models refuse a slice whose endpoints are null (no pods).
        response = discovery.list_namespaced_endpoint_slice(
            self.namespace, label_selector=selector, _preload_content=False
        )
        slices: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        wanted: dict[tuple[str, int], _Pod] = {}
        for endpoint_slice in slices:
            labels = endpoint_slice.get("metadata", {}).get("labels") or {}
            side = self.services.get(str(labels.get(_SERVICE_LABEL, "")))
            if side is None:
                continue
            ports = [int(p["port"]) for p in endpoint_slice.get("ports") or [] if p.get("port")]
            for endpoint in endpoint_slice.get("endpoints") or []:
                ready = (endpoint.get("conditions") or {}).get("ready") is not False
                ref = endpoint.get("targetRef") or {}
                if not ready or ref.get("kind") != "Pod":
                    continue
                pod = self._pod(str(ref["name"]), side)
                for address in endpoint.get("addresses") or []:
                    for port in ports:
                        wanted.setdefault((str(address), port), pod)
        self._reconcile(wanted)

    def _pod(self, name: str, side: Side) -> _Pod:
        known = self._pods.get(name)
        if known is not None and known.side == side:
            return known
        core = kubernetes.client.CoreV1Api(self._api)
        response = core.read_namespaced_pod(name, self.namespace, _preload_content=False)
        containers = json.loads(response.data).get("spec", {}).get("containers") or []
        version = image_version(str(containers[0].get("image", ""))) if containers else "unknown"
        pod = self._pods[name] = _Pod(name, side, version)
        return pod

    def _reconcile(self, wanted: dict[tuple[str, int], _Pod]) -> None:
        with self._lock:
            gone = [key for key in self._servers if key not in wanted]
            closing = [self._servers.pop(key)[1] for key in gone]
            new = [key for key in wanted if key not in self._servers]
        for server in closing:
            server.shutdown()
            server.server_close()
        for address, port in new:
            pod = wanted[(address, port)]
            try:
                server = self._listen(address, port, pod)
            except OSError as exc:  # e.g. the namespace is gone
                self.last_error = f"cannot listen on {address}:{port} for {pod.name}: {exc}"
                continue
            server.daemon_threads = True
            with self._lock:
                stopped = self._stop.is_set()
                if not stopped:
                    self._servers[(address, port)] = (pod, server)
            if stopped:  # stop() ran meanwhile: it did not see this one, so close it here
                server.server_close()
                continue
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def _listen(self, address: str, port: int, pod: _Pod) -> ThreadingHTTPServer:
        """Bind and listen on ``address:port`` in ``netns``; served from any thread."""

        def make() -> ThreadingHTTPServer:
            return _PodServer((address, port), self._handler(pod))

        return make() if self.netns is None else in_netns(self.netns, make)

    # -- answering ----------------------------------------------------------------------

    def _answer(self, pod: _Pod, path: str) -> tuple[int, float]:
        """The status and delay for one request to ``pod`` (counts it)."""
        with self._lock:
            state = self._sides[pod.side]
            settings = state.settings
            state.sequence += 1
            before = math.floor((state.requests) * settings.error_rate + 1e-9)
            state.requests += 1
            after = math.floor(state.requests * settings.error_rate + 1e-9)
            status = settings.error_status if after > before else 200
            counts = state.pods.setdefault(pod.name, PodCounts(pod.side, pod.version))
            counts.requests += 1
            if path.startswith("/status/"):
                with contextlib.suppress(ValueError):
                    status = min(max(int(path.split("/")[2]), 200), 599)
            if status >= 500:
                state.errors += 1
                counts.errors += 1
            spread = (state.sequence * _GOLDEN) % 1.0
            millis = settings.latency_ms + settings.jitter_ms * (2.0 * spread - 1.0)
        return status, max(millis, 0.0) / 1000.0

    def _handler(self, pod: _Pod) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/healthz", "/readyz"):
                    self._send(200, {"status": "OK"})
                    return
                status, delay = sim._answer(pod, path)
                if delay:
                    time.sleep(delay)  # the simulated service time of this request
                self._send(
                    status,
                    {
                        "hostname": pod.name,
                        "version": pod.version,
                        "message": f"greetings from podinfo v{pod.version}",
                        "side": pod.side,
                    },
                )

            do_POST = do_GET

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _control_handler(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/control":
                    self._send(404, {"error": "not found; use /control"})
                    return
                self._send(200, sim.state())

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != "/control":
                    self._send(404, {"error": "not found; use /control"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= _MAX_BODY:
                    self._send(400, {"error": f"send a JSON body of 1..{_MAX_BODY} bytes"})
                    return
                try:
                    self._send(200, sim.apply_control(json.loads(self.rfile.read(length))))
                except (ValueError, ControlError) as exc:
                    self._send(400, {"error": str(exc)})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
