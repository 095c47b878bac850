"""``python -m sandbox.loadtester``: serve the fake until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from sandbox.loadtester.server import LoadTester

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Serve the fake until SIGINT/SIGTERM (``python -m sandbox.loadtester``)."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.loadtester",
        description="A flagger-loadtester stand-in that simulates commands instead of "
        "running them.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0 = a free port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with LoadTester(host=args.host, port=args.port) as tester:
        print(f"load tester: {tester.url}/", flush=True)
        done.wait()
    return 0
