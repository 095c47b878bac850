"""Child processes: free ports, dying with the parent, pids, memory and termination."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1

# Loaded once in the parent: loading a library between fork and exec is not safe.
_LIBC: ctypes.CDLL | None
try:
    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover - exotic platforms
    _LIBC = None


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec hook: the child gets SIGKILL when the process that started it dies."""

    def hook() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would stop us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


def tail(path: Path, lines: int = 30, max_bytes: int = 16384) -> str:
    """The last ``lines`` of a log, for error messages."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def pid_runs(pid: int, executable: str) -> bool:
    """True when ``pid`` is alive and still runs ``executable`` (guards against pid reuse)."""
    if not pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except OSError:
        return False
    return argv0 == executable


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def terminate(pids: Sequence[int], alive: Callable[[int], bool], grace: float) -> None:
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
class Component:
    """One started (or about to start) component and where its output goes."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    health_url: str | None = None
