"""The rollout engine as a child process, for tests and benchmarks.

:class:`EngineProcess` runs ``python -m rollout`` (or a module that wraps it, as
``bench.enginehost`` does) as a separate OS process, the way the bot's Pod runs it. It
can be restarted, killed, frozen and thawed; every run logs to its own file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Self

from sandbox.polling import wait_for

__all__ = ["READY_LINE", "EngineExited", "EngineProcess"]

REPO = Path(__file__).resolve().parents[1]
READY_LINE = "rollout engine running as"
"""What the engine logs once it runs (``rollout/__main__.py``)."""


class EngineExited(AssertionError):
    """The engine exited while it was expected to start."""


class EngineProcess:
    """One engine process; restartable, every run logged to ``<log_dir>/<name>.<run>.log``."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        *,
        module: str = "rollout",
        module_args: Sequence[str] = (),
        unset_env: Iterable[str] = ("KUBECONFIG",),
        stop_timeout: float = 10,
    ) -> None:
        """Prepare (not start) an engine.

        Args:
            name: names the log files.
            args: the engine's command line (``python -m rollout ARGS``).
            log_dir: where the logs go.
            env: variables added to this process's environment.
            module: the module to run; a wrapper gets ``module_args``, then ``args``.
            unset_env: variables the engine must not inherit (it gets its kubeconfig
                from ``args``, never from ``$KUBECONFIG``).
            stop_timeout: seconds :meth:`stop` gives SIGTERM before SIGKILL.
        """
        self.name = name
        self.args = list(args)
        self.log_dir = log_dir
        self.env = dict(env or {})
        self.module = module
        self.module_args = list(module_args)
        self.unset_env = frozenset(unset_env)
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def identity(self) -> str | None:
        """The ``--identity`` the engine runs under, if given."""
        if "--identity" in self.args[:-1]:
            return self.args[self.args.index("--identity") + 1]
        return None

    @property
    def log_path(self) -> Path:
        """The current run's log."""
        return self.log_dir / f"{self.name}.{self.runs}.log"

    @property
    def pid(self) -> int:
        """Process id of the current run."""
        assert self.process is not None, f"engine {self.name} is not started"
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.process is not None and self.process.poll() is None

    def start(self, *, wait: bool = True, timeout: float = 60) -> Self:
        """Start a new run; with ``wait``, until the engine says it is running."""
        assert not self.alive, f"engine {self.name} is already running"
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if k not in self.unset_env}
        env["PYTHONPATH"] = str(REPO)
        env.update(self.env)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.module_args, *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
            )
        if wait:
            wait_for(
                self._running_or_dead,
                timeout,
                f"engine {self.name} to start (log: {self.log_path})",
            )
        return self

    def _running_or_dead(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise EngineExited(
                f"engine {self.name} exited with code {self.process.returncode}:\n{self.log()}"
            )
        return READY_LINE in self.current_log()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no Lease hand-back, like a node dying."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets and state but runs no instruction."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself (e.g. at a failpoint); its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM (the engine hands its Lease back), SIGKILL after ``timeout`` seconds
        (default: ``stop_timeout``).

        Returns the exit code (negative: the signal that ended it), None if never started.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test left it frozen
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def current_log(self) -> str:
        """The current run's log."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the current run's log."""
        return "\n".join(self.current_log().splitlines()[-lines:])

    def log(self) -> str:
        """Every run's log, oldest first."""
        parts = []
        for run in range(1, self.runs + 1):
            path = self.log_dir / f"{self.name}.{run}.log"
            if path.exists():
                parts.append(f"--- {self.name} run {run} ---\n" + path.read_text(errors="replace"))
        return "\n".join(parts)
