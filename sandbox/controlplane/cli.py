"""The command line: ``python -m sandbox.controlplane up|status|down``.

``up`` starts a detached cluster (its children outlive the command) and records the pid
and executable of each component in a pids file under ``--state-dir``; ``status`` and
``down`` find it through that file, checking the executable so a reused pid is never
signalled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import urllib.error
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sandbox.controlplane.cluster import ControlPlane
from sandbox.controlplane.common import (
    BIN_ENV,
    COMPONENTS,
    STOP_GRACE_SECONDS,
    ControlPlaneError,
    log,
    open_url,
)
from sandbox.controlplane.processes import pid_runs, rss_bytes, terminate


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
        if pid_runs(int(info["pid"]), str(info["executable"]))
    }


def _api_ready(state: dict[str, Any]) -> bool:
    workdir = Path(state["workdir"])
    try:
        context = ssl.create_default_context(cafile=str(workdir / "pki" / "ca.crt"))
        context.load_cert_chain(
            str(workdir / "pki" / "admin.crt"), str(workdir / "pki" / "admin.key")
        )
        with open_url(f"{state['server']}/readyz", context) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError, KeyError):
        return False


def _stop_recorded(state_dir: Path, state: dict[str, Any]) -> list[str]:
    running = _running_components(state)
    executables = {
        int(info["pid"]): str(info["executable"]) for info in state.get("components", {}).values()
    }
    if running:
        terminate(
            list(running.values()),
            lambda pid: pid_runs(pid, executables[pid]),
            STOP_GRACE_SECONDS,
        )
    return list(running)


def _cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    state = _read_state(state_dir)
    if state is not None:
        running = _running_components(state)
        if set(running) == set(COMPONENTS) and _api_ready(state):
            log(f"already running at {state['server']}")
            print(f"export KUBECONFIG={state['kubeconfig']}")
            return 0
        log("found a stale or partial cluster; stopping it and starting afresh")
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
        log(f"failed: {err}")
        return 1
    except KeyboardInterrupt:
        return 130
    (state_dir / _STATE_FILE).write_text(json.dumps(cp.state(), indent=2) + "\n")
    log(f"stop it with: python -m sandbox.controlplane down  (logs in {state_dir / 'logs'})")
    print(f"export KUBECONFIG={cp.kubeconfig}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    state = _read_state(state_dir)
    if state is None:
        log(f"no cluster recorded in {state_dir}")
    else:
        stopped = _stop_recorded(state_dir, state)
        log(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    if state_dir.exists():
        shutil.rmtree(state_dir)
        log(f"removed {state_dir}")
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
        rss = rss_bytes(pid)
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
