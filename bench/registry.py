"""The benchmarks ``python -m bench`` knows, in the order it runs them.

Each entry names a module with ``NAME``, ``TITLE`` and ``run(options, progress) ->
Result`` (see ``bench.core``). Adding a benchmark (e.g. Slack ack latency or Slack 429
handling) is one module plus one line here; the table and JSON output come for free.
Modules are imported only when selected, so one benchmark's dependencies never stop
another from running.
"""

from __future__ import annotations

import importlib
from types import ModuleType

BENCHMARKS: dict[str, str] = {
    "abort": "bench.abort",
    "detection": "bench.detection",
    "scale": "bench.scale",
    "flagger": "bench.flagger",
    "slack-ack": "bench.slack_ack_latency",
    "gateway": "bench.gateway",
    "revision": "bench.revision",
}


def load(name: str) -> ModuleType:
    """The module of benchmark ``name``."""
    return importlib.import_module(BENCHMARKS[name])
