"""The Prometheus wrapper: start-up errors, process hygiene, targets and scrape slots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from sandbox.prometheus import PrometheusError, PrometheusServer
from sandbox.traffic import TrafficSimulator
from tests.sim.promql import eventually

pytestmark = pytest.mark.prometheus


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def processes_using(path: Path) -> list[int]:
    """Pids whose command line mentions ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_start_failure_reports_the_log_and_leaves_nothing_running(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path, retention="nonsense")
    with pytest.raises(PrometheusError) as failure:
        server.start()
    message = str(failure.value)
    assert "log tail" in message
    assert 'not a valid duration string: "nonsense"' in message
    assert not server.running
    assert processes_using(tmp_path) == []


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    with PrometheusServer(tmp_path) as server:
        pid = server.pid
        assert pid is not None
        assert server.query_value("vector(1)") == 1.0
    assert process_gone(pid)
    assert processes_using(tmp_path) == []


def test_prometheus_dies_with_its_parent(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from sandbox.prometheus import PrometheusServer\n"
        "server = PrometheusServer(Path(sys.argv[1])).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the parent did not start Prometheus: {line!r}"
        child = int(line)
        assert not process_gone(child)
        # SIGKILL: the parent gets no chance to clean up; only PR_SET_PDEATHSIG acts.
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        eventually(
            lambda: process_gone(child),
            bool,
            timeout=15,
            what=f"Prometheus (pid {child}) after its parent was killed",
            interval=0.1,
        )
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_file_targets_can_be_added_and_removed_at_runtime(prometheus: PrometheusServer) -> None:
    ns = f"sim-{uuid.uuid4().hex[:8]}"
    with TrafficSimulator(ns, "web", "web", weight=lambda: 0.0, rps=10) as sim:
        prometheus.add_target(sim.address, {"job": "direct"})
        try:
            prometheus.wait_for_target_up(sim.address, timeout=30)
            up = prometheus.query_value(f'up{{instance="{sim.address}",job="direct"}}')
            assert up == 1.0
        finally:
            prometheus.remove_target(sim.address)
        prometheus.wait_for_target_gone(sim.address, timeout=30)
        assert sim.address not in prometheus.target_addresses


def test_detached_slot_series_go_stale(prometheus: PrometheusServer) -> None:
    ns = f"sim-{uuid.uuid4().hex[:8]}"
    query = f'nginx_ingress_controller_requests{{namespace="{ns}"}}'
    slot = prometheus.acquire_slot()
    try:
        with TrafficSimulator(ns, "web", "web", weight=lambda: 0.0, rps=20) as sim:
            slot.attach(sim.render_metrics)
            prometheus.wait_for_target_up(slot.address, since=slot.attached_at)
            eventually(lambda: prometheus.query(query), bool, timeout=10, what="series")
            slot.detach()
            # The next scrape no longer has them, so Prometheus marks them stale.
            eventually(
                lambda: prometheus.query(query),
                lambda r: r == [],
                timeout=10,
                what="series after detach",
            )
    finally:
        prometheus.release_slot(slot)


def test_wait_for_target_up_names_the_problem(prometheus: PrometheusServer) -> None:
    with pytest.raises(PrometheusError, match="never discovered"):
        prometheus.wait_for_target_up("127.0.0.1:1", timeout=0.5)
