"""``python -m rollout`` with its own counters written to a file, for benchmarks.

    python -m bench.enginehost --stats-dir DIR -- <python -m rollout arguments>

The engine runs through the real entry point (``rollout.__main__.main``: same argument
parsing, same ``serve()``, same Controller, notifier and settings), so its CPU time and
memory are those of ``python -m rollout``. Two things are added, both read-only: the
Controller it builds is remembered, and ``Engine.on_advanced`` records each run. A daemon
thread then writes, every ``FLUSH_SECONDS`` and at exit:

- ``DIR/requests.json``: ``Kube.requests`` (client-side API request counts by verb and
  resource, errors by resource and status) and the number of advances so far;
- ``DIR/advances.jsonl``: one line per ``advance`` (wall time, release, seconds, actions,
  whether status was written, phase), appended in batches.

Writing costs a few milliseconds every two seconds; at hundreds of releases that is well
under 1 % of the engine's CPU.

With ``CANARY_BOT_BENCH_SLACK_API`` (a Slack Web API base URL, e.g. the local fake's) the
engine reports through the bot's ``SlackNotifier`` and Slack client instead of the log,
posting to channel ``CANARY_BOT_BENCH_SLACK_CHANNEL`` with token
``CANARY_BOT_BENCH_SLACK_TOKEN``: how the engine runs inside the bot.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import rollout.__main__ as entry
from bot.config import Channels
from bot.notifier import SlackNotifier
from bot.slack_client import make_client
from rollout.controller import Controller
from rollout.engine import AdvanceStats
from rollout.models import CanaryRelease
from rollout.notify import Notifier

FLUSH_SECONDS = 2.0


class _Recorder:
    """Collects what the engine did; flushed to files by a daemon thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.controller: Controller | None = None
        self.pending: collections.deque[dict[str, Any]] = collections.deque()
        self.advances = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def on_advanced(self, release: CanaryRelease, stats: AdvanceStats) -> None:
        # Runs on the engine's event loop: only an append (deque appends are thread-safe).
        self.advances += 1
        self.pending.append(
            {
                "t": time.time(),
                "key": f"{release.metadata.namespace}/{release.metadata.name}",
                "seconds": round(stats.seconds, 5),
                "actions": stats.actions,
                "wrote": stats.wrote_status,
                "phase": stats.phase,
            }
        )

    def flush(self) -> None:
        with self._lock:
            lines = []
            while self.pending:
                lines.append(json.dumps(self.pending.popleft()))
            if lines:
                with (self.directory / "advances.jsonl").open("a") as out:
                    out.write("\n".join(lines) + "\n")
            if self.controller is None:
                return
            counter = self.controller.kube.requests
            for _ in range(5):
                try:  # the counter is updated from worker threads while we copy it
                    counts = dict(counter.counts)
                    errors = dict(counter.errors)
                    break
                except RuntimeError:
                    continue
            else:
                return
            document = {
                "at": time.time(),
                "pid": os.getpid(),
                "advances": self.advances,
                "requests": {f"{verb} {plural}": n for (verb, plural), n in counts.items()},
                "errors": {f"{plural} {status}": n for (plural, status), n in errors.items()},
                "leading": self.controller.is_leader,
            }
            tmp = self.directory / "requests.json.tmp"
            tmp.write_text(json.dumps(document))
            os.replace(tmp, self.directory / "requests.json")

    def run(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self.flush()


def _slack_notifier(api_url: str) -> Notifier:
    """The bot's notifier on the bot's Slack client (see the module doc)."""
    client = make_client(os.environ.get("CANARY_BOT_BENCH_SLACK_TOKEN"), api_url)
    channel = os.environ.get("CANARY_BOT_BENCH_SLACK_CHANNEL", "")
    return SlackNotifier(client, Channels(default=channel or None))


def main(argv: list[str]) -> int:
    """Parse ``--stats-dir DIR --`` and hand the rest to the rollout entry point."""
    if len(argv) < 3 or argv[0] != "--stats-dir" or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    directory = Path(argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    recorder = _Recorder(directory)

    class ObservedController(Controller):
        """The entry point's Controller, remembered and with ``on_advanced`` set."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            recorder.controller = self
            self.engine.on_advanced = recorder.on_advanced
            slack_api = os.environ.get("CANARY_BOT_BENCH_SLACK_API")
            if slack_api:
                self.engine.notifier = _slack_notifier(slack_api)

    entry.Controller = ObservedController  # type: ignore[attr-defined]
    threading.Thread(target=recorder.run, name="bench-stats", daemon=True).start()
    atexit.register(recorder.flush)
    return entry.main(argv[3:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
