"""CPU time and memory of a process, read from /proc (Linux)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSnapshot:
    """One reading: monotonic time, user+system CPU seconds, resident and peak memory."""

    at: float
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (its threads included)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # the command name may hold spaces or parentheses: fields start after the last ")"
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLK_TCK


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes: resident memory now and its peak so far."""
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return rss, peak


def snapshot(pid: int) -> ProcSnapshot:
    """CPU and memory of ``pid`` now."""
    rss, peak = memory(pid)
    return ProcSnapshot(time.monotonic(), cpu_seconds(pid), rss, peak)


@dataclass(frozen=True)
class Usage:
    """What a process used between two snapshots."""

    seconds: float
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int
    max_rss_in_window: int

    @property
    def cpu_percent(self) -> float:
        """CPU used as a percentage of one core (200 % = both cores of this machine)."""
        return 100.0 * self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0


class RssSampler:
    """Samples a process's RSS every ``period`` seconds so a window's maximum is known."""

    def __init__(self, pid: int, period: float = 1.0) -> None:
        self.pid = pid
        self.period = period
        self._max = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def start(self) -> RssSampler:
        """Begin sampling."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss, _ = memory(self.pid)
            except (OSError, ValueError):
                return  # the process is gone
            with self._lock:
                self._max = max(self._max, rss)
            self._stop.wait(self.period)

    def reset(self) -> None:
        """Start a new window."""
        with self._lock:
            self._max = 0

    @property
    def max_rss(self) -> int:
        """The largest RSS seen since the last reset."""
        with self._lock:
            return self._max

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def usage(before: ProcSnapshot, after: ProcSnapshot, max_rss: int = 0) -> Usage:
    """The difference between two snapshots of the same process."""
    return Usage(
        seconds=after.at - before.at,
        cpu_seconds=after.cpu_seconds - before.cpu_seconds,
        rss_bytes=after.rss_bytes,
        peak_rss_bytes=after.peak_rss_bytes,
        max_rss_in_window=max(max_rss, after.rss_bytes),
    )
