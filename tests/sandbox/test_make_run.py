"""The README's quick start, as a newcomer runs it: the sandbox console, a promotion, then
error injection and a rollback. Drives ``python -m sandbox`` (what ``make run`` starts when
nothing is configured) through its terminal, exactly as documented.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    """A child process with a line-reading thread, so tests can wait for output.

    Its environment has no Slack settings and no KUBECONFIG unless ``env`` adds them.
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
        base.pop("KUBECONFIG", None)
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**base, **(env or {})},
            # make and the processes it starts go together when the test ends
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.transcript: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def wait_for(self, fragment: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.transcript.append(line)
            if fragment in line:
                return line
        tail = "\n".join(self.transcript[-40:])
        pytest.fail(f"no line with {fragment!r} within {timeout:.0f}s; last output:\n{tail}")

    def drain(self) -> str:
        """Every line printed and not yet read (for failure messages)."""
        while not self.lines.empty():
            self.transcript.append(self.lines.get_nowait())
        return "\n".join(self.transcript[-40:])

    def close(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.type("quit")
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal([sys.executable, "-m", "sandbox", "--port", "0"])
    yield term
    term.close()


@pytest.mark.cluster
@pytest.mark.prometheus
def test_sandbox_tells_the_tutorials_story_set_image_promotes_then_500s_roll_back(
    terminal: Terminal,
) -> None:
    terminal.wait_for("Type help for the commands", 120)

    # the tutorial's step: kubectl set image on the Deployment the Canary protects
    set_image = "kubectl set image deployment/podinfo podinfod=stefanprodan/podinfo:6.0.3 -n test"
    deadline = time.monotonic() + 60
    while True:  # right after start-up the Canary may still be adopting podinfo
        terminal.type(set_image)
        answer = terminal.wait_for("podinfo", 30)
        if "image updated" in answer:
            break
        assert "has not paused podinfo yet" in answer and time.monotonic() < deadline, answer
        time.sleep(1)
    line = terminal.wait_for("kubectl set image deployment/podinfo", 10)
    assert "KUBECONFIG=" in line and "podinfod=stefanprodan/podinfo:6.0.3 -n test" in line
    terminal.wait_for("Advance podinfo.test canary weight 10", 90)
    terminal.wait_for("Advance podinfo.test canary weight 50", 90)
    done = terminal.wait_for("Promotion completed!", 120)
    assert "stefanprodan/podinfo:6.0.3" in done
    terminal.wait_for("phase  Succeeded", 30)

    # then the 500s; this time the new image comes through the Slack door, same path
    terminal.type("errors 50")
    terminal.wait_for("now answers HTTP 500 to 50% of its requests", 10)
    terminal.type("start podinfo image=stefanprodan/podinfo:6.0.4")
    wrote = terminal.wait_for("into the pod template of podinfo in test", 30)
    assert "(protected by Canary podinfo)" in wrote
    halt = terminal.wait_for("Halt advancement request-success-rate", 90)
    assert "threshold >= 99" in halt
    rolled = terminal.wait_for("Rolling back podinfo.test failed checks threshold reached", 120)
    assert "error" in rolled
    terminal.wait_for("phase  Failed", 30)
    terminal.type("status podinfo")
    state = terminal.wait_for("spec asks for podinfod=stefanprodan/podinfo:6.0.4", 30)
    assert "pods run podinfod=stefanprodan/podinfo:6.0.3" in state
    assert "push a fixed revision or revert" in state

    terminal.type("list")
    terminal.wait_for("No active releases", 15)
    assert terminal.close() == 0
