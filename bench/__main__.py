"""``python -m bench`` (``make bench``): run benchmarks, print a table, write JSON.

    python -m bench                     # every benchmark, full size
    python -m bench --quick             # smaller samples (minutes instead of tens of them)
    python -m bench abort detection     # only these
    python -m bench scale --counts 10 100 --window 90

Each benchmark starts its own control plane, Prometheus and simulators, prints progress
on stderr, and writes ``bench/results/<name>.json`` (raw samples, parameters, machine).
The table goes to stdout. Numbers only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from bench.core import Options, Progress, Result, now_iso, table, write_json
from bench.registry import BENCHMARKS, load


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--quick", action="store_true", help="small samples, fewer scale points")
    parser.add_argument("--aborts", type=int, default=50, help="abort: aborts to time (50)")
    parser.add_argument("--runs", type=int, default=5, help="detection: rollbacks per variant; revision: revisions timed (5)")
    parser.add_argument(
        "--counts",
        type=int,
        nargs="+",
        default=None,
        help="scale: rollout counts (10 100 500 1000)",
    )
    parser.add_argument(
        "--window", type=float, default=None, help="scale: seconds measured per count (60)"
    )
    parser.add_argument(
        "--flagger-version", default="v1.36.1", help="flagger: Go module version to build"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep logs and state here (default: temporary)"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks one after another."""
    args = parse_args(argv)
    if args.list:
        for name in BENCHMARKS:
            print(f"{name:<12} {load(name).TITLE}")
        return 0
    counts = args.counts or ((10, 50) if args.quick else (10, 100, 500, 1000))
    window = args.window or (40.0 if args.quick else 60.0)
    options = Options(
        quick=args.quick,
        aborts=args.aborts,
        runs=3 if args.quick and args.runs == 5 else args.runs,
        counts=tuple(counts),
        window=window,
        flagger_version=args.flagger_version,
        workdir=args.workdir.resolve() if args.workdir else None,
    )
    results: list[Result] = []
    for name in args.names or list(BENCHMARKS):
        module = load(name)
        progress = Progress(name)
        progress(module.TITLE)
        started = time.monotonic()
        try:
            result: Result = module.run(options, progress)
        except Exception as exc:  # one broken benchmark must not lose the others' numbers
            traceback.print_exc()
            result = Result(name, module.TITLE, started_at=now_iso())
            result.errors.append(f"benchmark crashed: {type(exc).__name__}: {exc}")
            result.seconds = time.monotonic() - started
        path = write_json(result)
        progress(f"done in {result.seconds:.0f}s; wrote {path}")
        results.append(result)
        print(table([result]), flush=True)
        print(flush=True)
    if len(results) > 1:
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
