"""What every benchmark shares: options, progress lines, results, the table and JSON files.

A benchmark is a module with ``NAME``, ``TITLE`` and ``run(options, progress) -> Result``
(see ``bench.registry``). It starts its own environment, measures, and returns numbers:
never a verdict. ``python -m bench`` runs the selected ones, prints one table and writes
``bench/results/<name>.json`` per benchmark.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Options:
    """Command-line settings every benchmark may read."""

    quick: bool = False
    # abort: how many aborts to time
    aborts: int = 50
    # detection: rollbacks per variant
    runs: int = 5
    # scale: rollout counts
    counts: tuple[int, ...] = (10, 100, 500)
    # scale: seconds of steady state to measure per count
    window: float = 60.0
    flagger_version: str = "v1.36.1"
    workdir: Path | None = None


@dataclass
class Row:
    """One number in the table."""

    case: str
    metric: str
    value: float | None
    unit: str = ""
    note: str = ""


@dataclass
class Result:
    """Everything a benchmark measured; ``details`` holds raw samples for the JSON file."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    # things that could not be measured, with the exact reason
    errors: list[str] = field(default_factory=list)
    started_at: str = ""
    seconds: float = 0.0

    def add(
        self, case: str, metric: str, value: float | None, unit: str = "", note: str = ""
    ) -> None:
        """Append a row."""
        self.rows.append(Row(case, metric, value, unit, note))


class Progress:
    """Prints ``[bench name +12.3s] message`` lines as a benchmark goes (unbuffered)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {self.name} +{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- statistics -----------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None without samples.

    With n samples the p99 is the largest of them when n < 100: say n next to it.
    """
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def mean(samples: Sequence[float]) -> float | None:
    """Arithmetic mean; None without samples."""
    return sum(samples) / len(samples) if samples else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


# -- output -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """The machine the numbers come from (they mean little without it)."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def format_value(value: float | None) -> str:
    """Numbers as a person reads them: 3 significant digits, no exponent for normal ranges."""
    if value is None:
        return "n/a"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e9):
        return f"{int(value)}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(results: Iterable[Result]) -> str:
    """One plain-text table of every row (also valid Markdown)."""
    header = ("benchmark", "case", "metric", "value", "unit", "note")
    lines = [header]
    for result in results:
        for row in result.rows:
            lines.append(
                (result.name, row.case, row.metric, format_value(row.value), row.unit, row.note)
            )
        for error in result.errors:
            lines.append((result.name, "-", "not measured", "n/a", "", error[:160]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if index == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def write_json(result: Result, directory: Path = RESULTS_DIR) -> Path:
    """``<directory>/<name>.json`` with the rows, parameters, raw samples and machine."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.name}.json"
    document = {
        "name": result.name,
        "title": result.title,
        "started_at": result.started_at,
        "seconds": round(result.seconds, 1),
        "machine": machine(),
        "params": result.params,
        "rows": [asdict(r) for r in result.rows],
        "errors": result.errors,
        "details": result.details,
    }
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    return path


def now_iso() -> str:
    """UTC now, for ``started_at``."""
    return datetime.now(UTC).isoformat(timespec="seconds")
