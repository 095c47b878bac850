"""The :class:`TrafficSimulator`: ticks, request accounting, routing refresh, lifecycle."""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from prometheus_client import CollectorRegistry, generate_latest

from sandbox.traffic.control import make_handler
from sandbox.traffic.metrics import (
    DEFAULT_BUCKETS,
    LABEL_NAMES,
    REQUESTS,
    IngressCollector,
    Series,
)
from sandbox.traffic.routing import CanaryRouting
from sandbox.traffic.settings import MAX_RPS, SIDES, ControlError, Side, SideSettings, number

# Latency jitter walks the golden-ratio sequence: evenly spread, deterministic values.
_GOLDEN = (math.sqrt(5) - 1) / 2


def _whole(carry: float) -> int:
    """Whole units in an accumulator; the tolerance stops float error (0.1 * 10 ending
    up as 0.9999999999) from delaying a unit by a tick."""
    return max(int(carry + 1e-9), 0)


WeightSource = Callable[[], "float | CanaryRouting"]


class TrafficSimulator:
    """Simulated ingress-nginx traffic for one namespace/Ingress/Service.

    By default the canary routing is read from the Kubernetes API server (give
    ``kubeconfig`` or ``api_client``; with neither, the default kubeconfig is loaded).
    Pass ``weight`` (a number, a :class:`CanaryRouting`, or a callable returning
    either; numbers are percent of traffic) to run without an API server.

    ``start()`` runs the tick loop in a background thread and serves ``/metrics`` and
    ``/control`` on ``127.0.0.1:<free port>``; ``stop()`` ends both.
    """

    def __init__(
        self,
        namespace: str,
        ingress: str,
        service: str,
        port: int | str = 80,
        *,
        kubeconfig: str | Path | None = None,
        api_client: Any = None,
        weight: WeightSource | float | CanaryRouting | None = None,
        canary_ingress: str | None = None,
        rps: float = 10.0,
        tick: float = 0.25,
        stable: SideSettings | Mapping[str, Any] | None = None,
        canary: SideSettings | Mapping[str, Any] | None = None,
        header_share: float = 0.0,
        cookie_share: float = 0.0,
        method: str = "GET",
        path: str = "/",
        controller_class: str = "k8s.io/ingress-nginx",
        controller_namespace: str = "ingress-nginx",
        controller_pod: str = "ingress-nginx-controller-sandbox",
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        request_timeout: float = 2.0,
    ) -> None:
        if tick <= 0:
            raise ValueError(f"tick must be positive, got {tick!r}")
        self.namespace = namespace
        self.ingress = ingress
        self.service = service
        self.port = str(port)
        self.canary_ingress = canary_ingress or f"{ingress}-canary"
        self.tick_seconds = float(tick)
        self.method = method
        self.path = path
        self.controller_class = controller_class
        self.controller_namespace = controller_namespace
        self.controller_pod = controller_pod
        self._listen = (listen_host, listen_port)
        self._request_timeout = request_timeout

        self._weight_fn: WeightSource | None
        if weight is None or callable(weight):
            self._weight_fn = weight
        else:
            fixed: float | CanaryRouting = weight  # a constant routing, e.g. weight=20
            self._weight_fn = lambda: fixed
        self._kubeconfig = Path(kubeconfig) if kubeconfig is not None else None
        self._api_client = api_client
        self._own_api_client = False
        self._networking: Any = None

        self._lock = threading.RLock()
        self._rps = 0.0
        self._sides: dict[Side, SideSettings] = {"stable": SideSettings(), "canary": SideSettings()}
        self._header_share = 0.0
        self._cookie_share = 0.0
        self._routing = CanaryRouting()
        self._last_error: str | None = None
        self._api_errors = 0
        self._ticks = 0
        self._routing_changes = 0
        self._routing_changed_tick = 0
        # Fractional carry-overs that make the counts deterministic.
        self._request_carry = 0.0
        self._canary_carry = 0.0
        self._error_carry: dict[Side, float] = {"stable": 0.0, "canary": 0.0}
        self._sequence: dict[Side, int] = {"stable": 0, "canary": 0}
        self._series: dict[tuple[str, ...], Series] = {}
        self._totals: dict[Side, dict[str, int]] = {"stable": {}, "canary": {}}

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(IngressCollector(self))

        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None
        self._last_tick_at: float | None = None

        # Constructor settings go through the same validation as runtime updates.
        update: dict[str, Any] = {
            "rps": rps,
            "header_share": header_share,
            "cookie_share": cookie_share,
        }
        if isinstance(stable, SideSettings):
            self._sides["stable"] = stable
        elif stable is not None:
            update["stable"] = dict(stable)
        if isinstance(canary, SideSettings):
            self._sides["canary"] = canary
        elif canary is not None:
            update["canary"] = dict(canary)
        self.apply_control(update)

    # ------------------------------------------------------------------ properties

    @property
    def source(self) -> Literal["kubernetes", "callable"]:
        """Where the canary routing comes from."""
        return "callable" if self._weight_fn is not None else "kubernetes"

    @property
    def routing(self) -> CanaryRouting:
        """The canary routing observed at the last tick."""
        with self._lock:
            return self._routing

    @property
    def current_weight(self) -> float:
        """Percentage of requests currently routed to the canary (0-100)."""
        with self._lock:
            return 100.0 * self._routing.canary_share(self._header_share, self._cookie_share)

    @property
    def rps(self) -> float:
        """Requests per second generated in total."""
        with self._lock:
            return self._rps

    @property
    def ticks(self) -> int:
        """Number of ticks run so far."""
        with self._lock:
            return self._ticks

    @property
    def routing_changed_at_tick(self) -> int:
        """The tick that first served with the current routing (0: never changed)."""
        with self._lock:
            return self._routing_changed_tick

    @property
    def last_error(self) -> str | None:
        """The last error reading the canary Ingress (None after a successful read)."""
        with self._lock:
            return self._last_error

    def side(self, side: Side) -> SideSettings:
        """The current settings of ``side``."""
        with self._lock:
            return self._sides[side]

    @property
    def canary_upstream(self) -> str:
        """The canary upstream name, the ``canary`` label value on canary series."""
        with self._lock:
            routing = self._routing
        service = routing.backend_service or f"{self.service}-canary"
        port = routing.backend_port or self.port
        return f"{self.namespace}-{service}-{port}"

    @property
    def url(self) -> str:
        """Base URL of the metrics/control server (only while started)."""
        return f"http://{self.address}"

    @property
    def address(self) -> str:
        """``host:port`` of the metrics/control server (only while started)."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    # -------------------------------------------------------------------- settings

    def set_rps(self, rps: float) -> None:
        """Change the total request rate (0 stops traffic)."""
        self.apply_control({"rps": rps})

    def set_side(
        self,
        side: Side,
        *,
        error_rate: float | None = None,
        latency_ms: float | None = None,
        jitter_ms: float | None = None,
        error_status: int | None = None,
    ) -> None:
        """Change the behaviour of ``side``; unspecified fields keep their value."""
        if side not in SIDES:
            raise ControlError(f"side must be 'stable' or 'canary', got {side!r}")
        changes = {
            key: value
            for key, value in (
                ("error_rate", error_rate),
                ("latency_ms", latency_ms),
                ("jitter_ms", jitter_ms),
                ("error_status", error_status),
            )
            if value is not None
        }
        self.apply_control({side: changes})

    def set_header_share(self, share: float) -> None:
        """Fraction of requests carrying the canary header (when the Ingress uses one)."""
        self.apply_control({"header_share": share})

    def set_cookie_share(self, share: float) -> None:
        """Fraction of requests carrying the canary cookie set to ``always``."""
        self.apply_control({"cookie_share": share})

    def apply_control(self, update: Any) -> dict[str, Any]:
        """Apply a partial update shaped like the ``POST /control`` body.

        All fields are validated before any is applied. Returns the new state.
        Raises ControlError on invalid input.
        """
        if not isinstance(update, Mapping):
            raise ControlError(f"the body must be a JSON object, got {type(update).__name__}")
        with self._lock:
            rps = self._rps
            shares = {"header_share": self._header_share, "cookie_share": self._cookie_share}
            sides = dict(self._sides)
            for key, raw in update.items():
                if key == "rps":
                    rps = number(raw, "rps", 0.0, MAX_RPS)
                elif key in shares:
                    shares[key] = number(raw, key, 0.0, 1.0)
                elif key in SIDES:
                    sides[key] = sides[key].updated(raw, key)
                else:
                    raise ControlError(
                        f"unknown field {key!r}; allowed: rps, stable, canary, "
                        "header_share, cookie_share"
                    )
            self._rps = rps
            self._header_share = shares["header_share"]
            self._cookie_share = shares["cookie_share"]
            self._sides = sides
        return self.state()

    def state(self) -> dict[str, Any]:
        """Settings, observed routing and totals, as served by ``GET /control``."""
        with self._lock:
            return {
                "namespace": self.namespace,
                "ingress": self.ingress,
                "canary_ingress": self.canary_ingress,
                "service": self.service,
                "port": self.port,
                "source": self.source,
                "rps": self._rps,
                "tick_seconds": self.tick_seconds,
                "stable": asdict(self._sides["stable"]),
                "canary": asdict(self._sides["canary"]),
                "header_share": self._header_share,
                "cookie_share": self._cookie_share,
                "routing": asdict(self._routing),
                "weight": self.current_weight,
                "canary_upstream": self.canary_upstream,
                "ticks": self._ticks,
                "routing_changes": self._routing_changes,
                "requests": {side: dict(counts) for side, counts in self._totals.items()},
                "last_error": self._last_error,
                "api_errors": self._api_errors,
            }

    def totals(self) -> dict[Side, dict[str, int]]:
        """Requests generated so far per side and status code."""
        with self._lock:
            return {"stable": dict(self._totals["stable"]), "canary": dict(self._totals["canary"])}

    # ---------------------------------------------------------------- simulation

    def refresh_routing(self) -> CanaryRouting:
        """Read the routing from its source now; on error keep the last known one.

        ingress-nginx also keeps serving its last configuration when the API server
        cannot be reached, so errors are recorded in ``last_error`` rather than raised.
        """
        try:
            routing = self._fetch_routing()
        except Exception as exc:
            with self._lock:
                self._api_errors += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                return self._routing
        with self._lock:
            if routing != self._routing:
                self._routing_changes += 1
                # Counted as part of the tick about to serve with it.
                self._routing_changed_tick = self._ticks + 1
            self._routing = routing
            self._last_error = None
            return routing

    def _fetch_routing(self) -> CanaryRouting:
        if self._weight_fn is not None:
            value = self._weight_fn()
            if isinstance(value, CanaryRouting):
                return value
            return CanaryRouting.weighted(float(value))
        api = self._networking_api()
        # A list filtered by name answers "absent" with an empty list; a GET would
        # raise (and warn) on every tick until the canary Ingress exists.
        found = api.list_namespaced_ingress(
            self.namespace,
            field_selector=f"metadata.name={self.canary_ingress}",
            _request_timeout=self._request_timeout,
        )
        return CanaryRouting.from_ingress(found.items[0] if found.items else None)

    def _networking_api(self) -> Any:
        if self._networking is None:
            from kubernetes import client, config

            if self._api_client is None:
                if self._kubeconfig is not None:
                    self._api_client = config.new_client_from_config(
                        config_file=str(self._kubeconfig)
                    )
                else:
                    self._api_client = config.new_client_from_config()
                self._own_api_client = True
            self._networking = client.NetworkingV1Api(self._api_client)
        return self._networking

    def tick(self) -> None:
        """One simulation step: read the routing, then serve the requests due since
        the previous tick."""
        self.refresh_routing()
        now = time.monotonic()
        with self._lock:
            elapsed = 0.0 if self._last_tick_at is None else now - self._last_tick_at
            self._last_tick_at = now
            self._ticks += 1
            self._serve(elapsed)

    def step(self, seconds: float) -> None:
        """Serve ``seconds`` worth of requests with the current routing and settings.

        Deterministic and synchronous; lets unit tests drive the simulator without
        threads or clocks.
        """
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        with self._lock:
            self._serve(seconds)

    def _serve(self, seconds: float) -> None:
        self._request_carry += self._rps * seconds
        total = _whole(self._request_carry)
        self._request_carry -= total
        if total == 0:
            return
        share = self._routing.canary_share(self._header_share, self._cookie_share)
        self._canary_carry += total * share
        to_canary = min(_whole(self._canary_carry), total)
        self._canary_carry -= to_canary
        self._serve_side("stable", total - to_canary)
        self._serve_side("canary", to_canary)

    def _serve_side(self, side: Side, count: int) -> None:
        if count <= 0:
            return
        settings = self._sides[side]
        self._error_carry[side] += count * settings.error_rate
        errors = min(_whole(self._error_carry[side]), count)
        self._error_carry[side] -= errors
        canary_label = self.canary_upstream if side == "canary" else ""
        for status, n in ((str(settings.error_status), errors), ("200", count - errors)):
            if n == 0:
                continue
            labels = self._labels(status, canary_label)
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = Series()
            for _ in range(n):
                seconds = self._next_latency(side, settings)
                series.count += 1
                series.duration_sum += seconds
                series.buckets[bisect.bisect_left(DEFAULT_BUCKETS, seconds)] += 1
            totals = self._totals[side]
            totals[status] = totals.get(status, 0) + n

    def _next_latency(self, side: Side, settings: SideSettings) -> float:
        self._sequence[side] += 1
        spread = (self._sequence[side] * _GOLDEN) % 1.0  # evenly covers [0, 1)
        millis = settings.latency_ms + settings.jitter_ms * (2.0 * spread - 1.0)
        return max(millis, 0.0) / 1000.0

    def _labels(self, status: str, canary: str) -> tuple[str, ...]:
        values = {
            "canary": canary,
            "controller_class": self.controller_class,
            "controller_namespace": self.controller_namespace,
            "controller_pod": self.controller_pod,
            "ingress": self.ingress,
            "method": self.method,
            "namespace": self.namespace,
            "path": self.path,
            "service": self.service,
            "status": status,
        }
        return tuple(values[name] for name in LABEL_NAMES)

    def _series_snapshot(self) -> dict[tuple[str, ...], Series]:
        with self._lock:
            return {
                labels: Series(s.count, s.duration_sum, list(s.buckets))
                for labels, s in self._series.items()
            }

    def render_metrics(self) -> bytes:
        """The Prometheus text exposition of this simulator's registry."""
        text = generate_latest(self.registry).decode()
        # prometheus_client always names counter families "<name>_total", but
        # ingress-nginx's request counter has no such suffix; restore its real header.
        text = text.replace(f"# HELP {REQUESTS}_total ", f"# HELP {REQUESTS} ").replace(
            f"# TYPE {REQUESTS}_total counter", f"# TYPE {REQUESTS} counter"
        )
        return text.encode()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Serve ``/metrics`` and ``/control`` and start the tick loop."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already started")
        self._server = ThreadingHTTPServer(self._listen, make_handler(self))
        self._server.daemon_threads = True
        # A short poll interval keeps stop() fast; serve_forever only checks for
        # shutdown between polls.
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"traffic-http-{self.ingress}",
            daemon=True,
        )
        self._server_thread.start()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"traffic-{self.namespace}-{self.ingress}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.tick()
            next_at += self.tick_seconds
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow API read: catch up on the next tick, do not spin
                next_at = time.monotonic()
                delay = 0.0
            self._stop.wait(delay)

    def stop(self) -> None:
        """Stop the tick loop and the HTTP server; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
            self._server_thread = None
        if self._own_api_client and self._api_client is not None:
            self._api_client.close()
            self._api_client = None
            self._networking = None
            self._own_api_client = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_for_weight(self, weight: float, timeout: float = 10.0) -> None:
        """Wait until the simulator routes ``weight`` percent to the canary."""
        deadline = time.monotonic() + timeout
        while abs(self.current_weight - weight) > 1e-9:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"canary weight is {self.current_weight:g}, expected {weight:g} "
                    f"after {timeout:g}s (last error: {self.last_error})"
                )
            time.sleep(self.tick_seconds / 2)
