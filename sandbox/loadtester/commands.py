"""The load tester's task runner: recognising commands and simulating them.

Nothing here runs a process. :func:`classify` tells an acceptance test from a load
test, :func:`parse_hey` reads a ``hey`` command line, and :class:`CommandRunner`
answers a task (by its ``metadata.type``) as the real load tester would.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from sandbox.loadtester.recorder import LoadRequest, Result

__all__ = ["CommandRunner", "classify", "parse_hey"]

log = logging.getLogger("sandbox.loadtester")

# Task types the real load tester knows. "cmd" and "ngrinder" are queued (202),
# the others run while the request waits (200 or 500).
_QUEUED_TYPES = ("cmd", "ngrinder")
_BLOCKING_TYPES = ("bash", "helm", "helmv3", "kubectl", "concord")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_TRUE_WORDS = ("1", "t", "T", "TRUE", "true", "True")
_TOKEN_OUTPUT = '{"token":"sandbox.token.value","expires_at":"2099-01-01T00:00:00Z"}'


def _parse_go_duration(text: str) -> float:
    """Seconds in a Go duration such as ``1m``, ``30s`` or ``1m30s``."""
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}")
    return total


def _parse_bool(text: str | None) -> bool:
    return text in _TRUE_WORDS


def _split(command: str) -> list[list[str]]:
    """The command's pipeline stages as argument lists ([] if it cannot be parsed)."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars="|&;")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return []
    stages: list[list[str]] = [[]]
    for token in tokens:
        if token and set(token) <= set("|&;"):
            stages.append([])
        else:
            stages[-1].append(token)
    return [stage for stage in stages if stage]


def classify(command: str | None) -> str:
    """The kind of a command: ``acceptance-test``, ``load-test`` or ``""``."""
    stages = _split(command or "")
    if not stages:
        return ""
    programs = [stage[0].rsplit("/", 1)[-1] for stage in stages]
    if "hey" in programs:
        return "load-test"
    if programs[0] in ("curl", "wget"):
        return "acceptance-test"
    return ""


def _hey_arguments(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """hey's flags with a value, and its positional arguments (the URL last)."""
    flags_with_value = {"-z", "-q", "-c", "-n", "-m", "-H", "-t", "-d", "-D", "-T", "-A", "-a"}
    flags_with_value |= {"-x", "-o", "-cpus"}
    values: dict[str, str] = {}
    positional: list[str] = []
    i = 1
    while i < len(args):
        arg = args[i]
        if arg in flags_with_value:
            if i + 1 >= len(args):
                raise ValueError(f"hey flag {arg} needs a value")
            values[arg] = args[i + 1]
            i += 2
            continue
        if arg.startswith("-"):
            i += 1  # boolean flags such as -h2 or -disable-keepalive
            continue
        positional.append(arg)
        i += 1
    return values, positional


def parse_hey(command: str, canary: str = "", namespace: str = "") -> LoadRequest:
    """Parse a ``hey`` command line into a LoadRequest; ValueError if it is not one."""
    stages = _split(command)
    args = next((s for s in stages if s[0].rsplit("/", 1)[-1] == "hey"), None)
    if args is None:
        raise ValueError("not a hey command")
    values, positional = _hey_arguments(args)
    if not positional:
        raise ValueError("hey needs a URL")
    qps = float(values.get("-q", "0"))
    concurrency = int(values.get("-c", "50"))
    requests = int(values["-n"]) if "-n" in values else None
    duration: float | None
    if "-z" in values:
        duration = _parse_go_duration(values["-z"])
        requests = None  # hey ignores -n when -z is given
    else:
        requests = requests if requests is not None else 200
        duration = requests / (qps * concurrency) if qps > 0 else None
    return LoadRequest(
        canary=canary,
        namespace=namespace,
        command=command,
        url=positional[-1],
        method=values.get("-m", "GET").upper(),
        duration_seconds=duration,
        qps=qps,
        concurrency=concurrency,
        requests=requests,
    )


def _shell_builtin(argv: list[str]) -> tuple[int, str] | None:
    """(exit status, output) of ``true``, ``:``, ``false``, ``exit N`` or ``echo``."""
    if argv[0] in ("true", ":"):
        return 0, ""
    if argv[0] == "false":
        return 1, ""
    if argv[0] == "exit":
        try:
            return (int(argv[1]) if len(argv) > 1 else 0) % 256, ""
        except ValueError:
            return 2, f"exit: {argv[1]}: numeric argument required\n"
    if argv[0] == "echo":
        return 0, " ".join(argv[1:]) + "\n"
    return None


class CommandRunner:
    """Answers tasks as the real load tester's runner does, simulating every command.

    ``started`` is called with each load command that starts (not with one that is
    still running for the same canary).
    """

    def __init__(
        self,
        started: Callable[[LoadRequest], None],
        unknown_commands: Literal["fail", "pass"] = "fail",
    ) -> None:
        self._started = started
        self._unknown_commands = unknown_commands
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}  # canary and command -> when it ends

    def run(self, payload: Mapping[str, Any], metadata: Mapping[str, str]) -> Result:
        """The answer to a task request with ``metadata`` (its ``type`` and ``cmd``)."""
        if not metadata:
            return Result(400, "metadata not found in payload", "rejected")
        task_type = metadata.get("type", "cmd")
        canary = str(payload.get("name") or "")
        namespace = str(payload.get("namespace") or "")
        if task_type == "bash":
            # The real tester runs `bash -c <cmd>`; an absent cmd is an empty script.
            command = metadata.get("cmd", "")
            code, output = self.simulate(command, canary, namespace)
            if code != 0:
                return Result(
                    500, f"command {command} failed: {output}: exit status {code}", "failed"
                )
            body = output if _parse_bool(metadata.get("returnCmdOutput")) else ""
            return Result(200, body, "passed")
        if task_type in _BLOCKING_TYPES:
            command = metadata.get("cmd", "")
            return Result(
                500,
                f"command {command} failed: {task_type} tasks are not available in the "
                "sandbox load tester: exit status 127",
                "unsupported",
            )
        if task_type not in _QUEUED_TYPES:
            return Result(400, f"unknown task type {task_type}", "rejected")
        if task_type == "ngrinder":
            return Result(
                400, "ngrinder tasks are not available in the sandbox load tester", "unsupported"
            )
        if "cmd" not in metadata:
            return Result(400, "cmd not found in metadata", "rejected")
        # Queued tasks are answered 202 before they run; their outcome is only logged,
        # so a command the sandbox cannot simulate is accepted and simply not run.
        command = metadata["cmd"]
        if classify(command) == "load-test":
            return Result(202, "", self.start_load(command, canary, namespace))
        return Result(202, "", "accepted")

    def simulate(self, command: str, canary: str, namespace: str) -> tuple[int, str]:
        """(exit status, output) of a command, without running it."""
        stripped = command.strip()
        if not stripped:
            return 0, ""
        kind = classify(stripped)
        if kind == "acceptance-test":
            return 0, _TOKEN_OUTPUT + "\n"
        if kind == "load-test":
            outcome = self.start_load(stripped, canary, namespace)
            return (0, "") if outcome != "invalid" else (1, "hey: invalid arguments\n")
        stages = _split(stripped)
        if len(stages) == 1 and (builtin := _shell_builtin(stages[0])) is not None:
            return builtin
        if self._unknown_commands == "pass":
            return 0, ""
        return 127, f"sandbox load tester does not run unrecognised commands: {stripped}\n"

    def start_load(self, command: str, canary: str, namespace: str) -> str:
        """Start a ``hey`` command: ``started``, ``already running`` or ``invalid``."""
        try:
            load = parse_hey(command, canary, namespace)
        except ValueError as exc:
            log.warning("cannot parse load command %r: %s", command, exc)
            return "invalid"
        key = f"{canary}.{namespace}\x00{command}"
        now = time.monotonic()
        with self._lock:
            # Like the real task runner: the same command for the same canary is not
            # started again while it still runs.
            if self._running.get(key, 0.0) > now:
                return "already running"
            self._running[key] = now + (load.duration_seconds or 0.0)
        self._started(load)
        return "started"
