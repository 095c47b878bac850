"""A real Prometheus server for the sandbox and the test suite.

Runs the ``prometheus`` binary (Debian's package, or ``$PROMETHEUS_BIN``) on a free
loopback port with a 1 s scrape and evaluation interval. Targets live in a
``file_sd_configs`` JSON file inside the work directory, so they can be added and
removed while the server runs.

How quickly a target change reaches the scrape loop is bounded by Prometheus itself,
not by this wrapper: the file watcher sees the rewrite at once, but the discovery
manager and the scrape manager each batch updates on their own 5 s ticker (not
configurable in 2.42), so a new file_sd target is first scraped after roughly 3-10 s.

For exporters that come and go often (one traffic simulator per test), use scrape
slots instead: :meth:`PrometheusServer.acquire_slot` hands out a loopback ``/metrics``
endpoint that Prometheus already scrapes every second. Attaching an exporter's render
function to a slot makes its series visible at the next scrape (about 1 s); detaching
it makes Prometheus mark them stale at the scrape after that.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sandbox.ports import free_port

__all__ = ["PrometheusError", "PrometheusServer", "ScrapeSlot", "find_prometheus_binary"]

_PR_SET_PDEATHSIG = 1
_DEFAULT_JOB = "sandbox"


class PrometheusError(RuntimeError):
    """Prometheus could not be started, queried or did not reach the expected state."""


def find_prometheus_binary() -> str:
    """Return the path of the Prometheus binary: ``$PROMETHEUS_BIN`` or ``prometheus`` on PATH."""
    explicit = os.environ.get("PROMETHEUS_BIN")
    if explicit:
        return explicit
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if not found:
        raise PrometheusError(
            "the prometheus binary was not found; install Debian's 'prometheus' package "
            "or set PROMETHEUS_BIN"
        )
    return found


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """Build a preexec_fn that makes the child receive SIGTERM when the parent dies.

    PR_SET_PDEATHSIG is tied to the thread that forked the child, so start() should be
    called from a long-lived thread (the main thread in pytest and the CLI).
    """

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may already have died between fork() and prctl(): then nobody
        # would ever stop this process, so do not start it at all.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


_EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ScrapeSlot:
    """A ``/metrics`` endpoint on loopback whose content comes from an attached source.

    Prometheus keeps scraping the slot's address; :meth:`attach` and :meth:`detach`
    change what it sees without a target-discovery round trip. With nothing attached
    the endpoint answers 200 with an empty body, so the target stays healthy.
    """

    def __init__(self) -> None:
        self._source: Callable[[], bytes] | None = None
        self._lock = threading.Lock()
        self._attached_at = 0.0
        slot = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                with slot._lock:
                    source = slot._source
                try:
                    body = source() if source is not None else b""
                except Exception as exc:  # the exporter's failure becomes a failed scrape
                    self.send_error(500, explain=str(exc))
                    return
                self.send_response(200)
                self.send_header("Content-Type", _EXPOSITION_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one scrape per second per slot would flood the test output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"scrape-slot-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The slot's TCP port on 127.0.0.1."""
        port: int = self._server.server_address[1]
        return port

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, the Prometheus target address."""
        return f"127.0.0.1:{self.port}"

    @property
    def attached(self) -> bool:
        """Whether a source is attached."""
        return self._source is not None

    @property
    def attached_at(self) -> float:
        """Wall-clock time (time.time()) of the last attach."""
        return self._attached_at

    def attach(self, source: Callable[[], bytes]) -> None:
        """Serve ``source()`` (Prometheus text exposition) from now on."""
        with self._lock:
            if self._source is not None:
                raise RuntimeError(f"scrape slot {self.address} is already in use")
            self._source = source
            self._attached_at = time.time()

    def detach(self) -> None:
        """Serve an empty exposition again."""
        with self._lock:
            self._source = None

    def close(self) -> None:
        """Stop the endpoint."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _parse_prom_time(text: str) -> float:
    # Prometheus reports nanosecond RFC 3339 times; datetime takes microseconds.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return datetime.fromisoformat(trimmed).timestamp()


class PrometheusServer:
    """A Prometheus child process with runtime-editable scrape targets.

    Usage::

        with PrometheusServer(tmp_path) as prom:
            prom.add_target("127.0.0.1:9913", {"job": "ingress-nginx"})
            prom.wait_for_target_up("127.0.0.1:9913")
            prom.query("up")

    ``workdir`` holds the configuration, the target file, the TSDB and the log.
    ``prewarm_slots`` scrape slots are registered at start so that the first
    :meth:`acquire_slot` calls find them already discovered; ``slot_labels`` are the
    target labels of every slot (e.g. ``{"job": "ingress-nginx"}``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        binary: str | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        retention: str = "2h",
        job_name: str = _DEFAULT_JOB,
        ready_timeout: float = 60.0,
        prewarm_slots: int = 0,
        slot_labels: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self._binary = binary
        self._scrape_interval = scrape_interval
        self._evaluation_interval = evaluation_interval
        self._retention = retention
        self._job_name = job_name
        self._ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._targets: dict[str, dict[str, str]] = {}
        self._lock = threading.RLock()
        self._prewarm_slots = prewarm_slots
        self._slot_labels = dict(slot_labels or {})
        self._free_slots: list[ScrapeSlot] = []
        self._all_slots: list[ScrapeSlot] = []

    # ----------------------------------------------------------------- paths

    @property
    def config_path(self) -> Path:
        """The generated prometheus.yml."""
        return self.workdir / "prometheus.yml"

    @property
    def targets_path(self) -> Path:
        """The file_sd JSON file Prometheus watches for targets."""
        return self.workdir / "targets.json"

    @property
    def log_path(self) -> Path:
        """Combined stdout/stderr of the Prometheus process."""
        return self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (only while running)."""
        if self._port is None:
            raise PrometheusError("Prometheus is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the running server, if any."""
        return self._process.pid if self._process is not None else None

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Write the configuration, start Prometheus and wait for ``/-/ready``.

        Raises PrometheusError, including the tail of the server log, on failure.
        """
        if self._process is not None:
            raise PrometheusError("Prometheus is already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_targets()
        self._write_config()
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                break
            except PrometheusError as exc:
                self._kill()
                in_use = "address already in use" in str(exc).lower()
                if not in_use or attempt == attempts:
                    raise
        if self._prewarm_slots:
            self._prewarm(self._prewarm_slots)
        return self

    def _start_once(self) -> None:
        binary = self._binary or find_prometheus_binary()
        # Prometheus must be told its port up front, so another process could take it
        # first; start() retries on "address already in use".
        self._port = free_port()
        args = [
            binary,
            f"--config.file={self.config_path}",
            f"--web.listen-address=127.0.0.1:{self._port}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--storage.tsdb.retention.time={self._retention}",
            "--web.enable-lifecycle",
            "--log.level=info",
        ]
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except OSError as exc:
            raise PrometheusError(f"cannot run {binary}: {exc}") from exc
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise PrometheusError(
                    f"Prometheus exited with code {code} during start-up; log tail:\n"
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last_error = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(0.1)
        raise PrometheusError(
            f"Prometheus was not ready within {self._ready_timeout:.0f}s ({last_error}); "
            f"log tail:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
        with self._lock:
            for slot in self._all_slots:
                slot.close()
            self._all_slots.clear()
            self._free_slots.clear()
        proc = self._process
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self._process = None
        self._port = None

    def _kill(self) -> None:
        proc = self._process
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self._process = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log (empty if there is none).

        Error lines from before the tail are put first: a flag error is followed by
        the whole usage text, which would otherwise push it out of view.
        """
        try:
            all_lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        tail = all_lines[-lines:]
        earlier = all_lines[:-lines] if len(all_lines) > lines else []
        errors = [line for line in earlier if "error" in line.lower()][-10:]
        if errors:
            return "\n".join([*errors, "...", *tail])
        return "\n".join(tail)

    # --------------------------------------------------------------- targets

    def add_target(self, address: str, labels: dict[str, str] | None = None) -> None:
        """Scrape ``address`` (``host:port``, path /metrics) with extra target labels.

        A ``job`` label overrides the default job name. Re-adding an address replaces
        its labels.
        """
        if not address or "/" in address:
            raise ValueError(f"target address must be host:port, got {address!r}")
        with self._lock:
            self._targets[address] = dict(labels or {})
            self._write_targets()

    def remove_target(self, address: str) -> None:
        """Stop scraping ``address`` (no error if it was not a target)."""
        with self._lock:
            if self._targets.pop(address, None) is not None:
                self._write_targets()

    @property
    def target_addresses(self) -> list[str]:
        """Addresses currently written to the target file."""
        with self._lock:
            return list(self._targets)

    def _write_targets(self) -> None:
        with self._lock:
            groups = [
                {"targets": [addr], "labels": labels} for addr, labels in self._targets.items()
            ]
            # Write-then-rename so the watcher never reads a half-written file.
            tmp = self.targets_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(groups, indent=1))
            os.replace(tmp, self.targets_path)

    # ----------------------------------------------------------- scrape slots

    def _new_slot(self) -> ScrapeSlot:
        slot = ScrapeSlot()
        with self._lock:
            self._all_slots.append(slot)
        self.add_target(slot.address, self._slot_labels)
        return slot

    def _prewarm(self, count: int) -> None:
        # Registered now, waited for in acquire_slot(): discovery runs in the
        # background while the caller does something else.
        slots = [self._new_slot() for _ in range(count)]
        with self._lock:
            self._free_slots.extend(slots)

    def acquire_slot(self, timeout: float = 60.0) -> ScrapeSlot:
        """A scrape slot Prometheus already scrapes; a new one is added if none is free.

        A new slot costs one target-discovery round trip (about 5 s); a reused or
        pre-warmed one none. Give it back with :meth:`release_slot`.
        """
        with self._lock:
            slot = self._free_slots.pop() if self._free_slots else None
        if slot is None:
            slot = self._new_slot()
        try:
            self.wait_for_target_up(slot.address, timeout=timeout)
        except BaseException:
            self.release_slot(slot)
            raise
        return slot

    def release_slot(self, slot: ScrapeSlot) -> None:
        """Detach whatever is attached and return the slot to the pool."""
        slot.detach()
        with self._lock:
            if slot in self._all_slots and slot not in self._free_slots:
                self._free_slots.append(slot)

    def _write_config(self) -> None:
        # JSON is valid YAML, which saves a YAML dependency here.
        config = {
            "global": {
                "scrape_interval": self._scrape_interval,
                "scrape_timeout": self._scrape_interval,
                "evaluation_interval": self._evaluation_interval,
            },
            "scrape_configs": [
                {
                    "job_name": self._job_name,
                    # The simulator exports ingress-nginx's own namespace/ingress labels;
                    # keep them rather than renaming them to exported_*.
                    "honor_labels": True,
                    "file_sd_configs": [
                        {"files": [str(self.targets_path)], "refresh_interval": "1s"}
                    ],
                }
            ],
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    # ------------------------------------------------------------------- API

    def api_get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET ``/api/v1/<path>`` and return the ``data`` member of the answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}/api/v1/{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise PrometheusError(f"GET {url} failed: HTTP {exc.code} {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise PrometheusError(f"GET {url} failed: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"GET {url} failed: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant query and return the result vector (empty when no series)."""
        data = self.api_get("query", {"query": promql})
        if data.get("resultType") != "vector":
            raise PrometheusError(
                f"expected a vector from {promql!r}, got {data.get('resultType')}"
            )
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_value(self, promql: str) -> float | None:
        """The single value of an instant query; None when it returns no series or NaN.

        Raises PrometheusError if the query returns more than one series.
        """
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{promql!r} returned {len(result)} series, expected one")
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def targets(self) -> list[dict[str, Any]]:
        """The active targets as reported by ``/api/v1/targets``."""
        data = self.api_get("targets", {"state": "active"})
        active: list[dict[str, Any]] = data.get("activeTargets", [])
        return active

    def target_health(self, address: str) -> dict[str, Any] | None:
        """The ``/api/v1/targets`` entry for ``address``, or None if not (yet) discovered."""
        for target in self.targets():
            if target.get("discoveredLabels", {}).get("__address__") == address:
                return target
        return None

    def wait_for_target_up(
        self, address: str, timeout: float = 30.0, *, since: float | None = None
    ) -> None:
        """Wait until ``address`` has been scraped successfully.

        With ``since`` (a time.time() value), the successful scrape must have started
        after that moment, which is how a caller knows that freshly attached data has
        been collected. Raises PrometheusError with the target's last state on timeout.
        """
        deadline = time.monotonic() + timeout
        state: dict[str, Any] | None = None
        while True:
            state = self.target_health(address)
            if (
                state is not None
                and state.get("health") == "up"
                and (since is None or _parse_prom_time(state["lastScrape"]) >= since)
            ):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if state is None:
            detail = "it was never discovered"
        else:
            detail = f"health={state.get('health')!r} lastError={state.get('lastError')!r}"
        raise PrometheusError(
            f"target {address} was not scraped within {timeout:.0f}s: {detail}; "
            f"targets file: {self.target_addresses}"
        )

    def wait_for_target_gone(self, address: str, timeout: float = 30.0) -> None:
        """Wait until ``address`` is no longer an active target."""
        deadline = time.monotonic() + timeout
        while self.target_health(address) is not None:
            if time.monotonic() >= deadline:
                raise PrometheusError(f"target {address} still active after {timeout:.0f}s")
            time.sleep(0.2)
