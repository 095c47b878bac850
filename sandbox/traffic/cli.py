"""``python -m sandbox.traffic``: one simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

from sandbox.traffic.simulator import TrafficSimulator


def main(argv: list[str] | None = None) -> int:
    """Run one simulator until SIGINT/SIGTERM (``python -m sandbox.traffic``)."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.traffic",
        description=(
            "Simulate ingress-nginx traffic for one Ingress: read the canary weight from "
            "the API server, export ingress-nginx metrics, accept settings on /control."
        ),
    )
    parser.add_argument("--namespace", required=True, help="namespace of the Ingress")
    parser.add_argument("--ingress", required=True, help="name of the main Ingress")
    parser.add_argument("--service", required=True, help="backend Service of the main Ingress")
    parser.add_argument("--port", default="80", help="Service port (default 80)")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--rps", type=float, default=10.0, help="requests per second (10)")
    parser.add_argument("--tick", type=float, default=0.25, help="seconds per tick (0.25)")
    parser.add_argument("--listen-host", default="127.0.0.1", help="HTTP bind address")
    parser.add_argument("--listen-port", type=int, default=0, help="HTTP port (0 = free port)")
    args = parser.parse_args(argv)

    sim = TrafficSimulator(
        args.namespace,
        args.ingress,
        args.service,
        args.port,
        kubeconfig=args.kubeconfig,
        rps=args.rps,
        tick=args.tick,
        listen_host=args.listen_host,
        listen_port=args.listen_port,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with sim:
        print(f"metrics: {sim.url}/metrics", flush=True)
        print(f"control: {sim.url}/control", flush=True)
        done.wait()
    return 0
