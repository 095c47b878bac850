"""Run the rollout engine alone, without Slack: ``python -m rollout``.

For GitOps-only installations (CanaryReleases applied with kubectl) and for fault tests
that kill and restart the engine. Events go to the log.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys

from rollout.controller import Controller, EngineSettings
from rollout.kube import Kube
from rollout.notify import LoggingNotifier


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m rollout",
        description="Run the canary-bot rollout engine without the Slack front.",
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default: in-cluster, then $KUBECONFIG)",
    )
    parser.add_argument(
        "--prometheus-url",
        default=os.environ.get("PROMETHEUS_URL", "http://127.0.0.1:9090"),
        help="Prometheus base URL",
    )
    parser.add_argument(
        "--namespace", default=None, help="only handle releases in this namespace (default: all)"
    )
    parser.add_argument(
        "--identity",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="leader election identity",
    )
    parser.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the leader Lease",
    )
    parser.add_argument("--lease-seconds", type=int, default=15, help="leader Lease duration")
    parser.add_argument(
        "--no-leader-election", action="store_true", help="act at once (only one replica!)"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGTERM/SIGINT, then hand the Lease back."""
    kube = Kube.connect(kubeconfig=args.kubeconfig)
    settings = EngineSettings(
        prometheus_url=args.prometheus_url,
        namespace=args.namespace,
        leader_election=not args.no_leader_election,
        lease_namespace=args.lease_namespace,
        lease_seconds=args.lease_seconds,
        # client-go's proportions (15 s / 10 s / 2 s), for test-sized leases too
        renew_deadline_seconds=args.lease_seconds * 2 / 3,
        retry_seconds=args.lease_seconds * 2 / 15,
    )
    controller = Controller(kube, LoggingNotifier(), settings, args.identity)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await controller.start()
    logging.getLogger("canary_bot").info("rollout engine running as %s", args.identity)
    await stop.wait()
    await controller.stop()
    kube.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
