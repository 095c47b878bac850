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
from rollout.egress import parse_networks
from rollout.kube import Kube
from rollout.lease_namespace import LeaseNamespaceMissing, check_lease_namespace
from rollout.notify import LoggingNotifier
from rollout.preflight import parse_namespace_list
from rollout.shards import SHARD_LABEL, check_shard, shard_lease_name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (``--help`` lists them in the order they are added)."""
    parser = argparse.ArgumentParser(
        prog="python -m rollout",
        description="Run the canary-bot rollout engine without the Slack front.",
    )
    _add_cluster_options(parser)
    _add_lease_options(parser)
    _add_webhook_options(parser)
    _add_engine_options(parser)
    args = parser.parse_args(argv)
    _check_webhook_ranges(parser, args)
    if args.shard is not None:
        try:
            check_shard(args.shard)
        except ValueError as exc:
            parser.error(f"--shard: {exc}")
    return args


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Where the cluster and Prometheus are, and which namespace to watch."""
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


def _add_lease_options(parser: argparse.ArgumentParser) -> None:
    """Who this replica is in the leader Lease, and which Lease."""
    parser.add_argument(
        "--identity",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="leader election identity",
    )
    parser.add_argument(
        "--lease-namespace",
        default=EngineSettings.lease_namespace,
        help="namespace of the leader Lease (default %(default)s, the same for every engine "
        "in the cluster; change it only for a deliberately separate installation)",
    )
    parser.add_argument(
        "--lease-name", default=EngineSettings.lease_name, help="leader Lease (%(default)s)"
    )


def _add_webhook_options(parser: argparse.ArgumentParser) -> None:
    """Where webhooks may go, and where their Secrets are."""
    parser.add_argument(
        "--webhook-allow-cidrs",
        default=os.environ.get("WEBHOOK_ALLOW_CIDRS", ""),
        help="comma-separated ranges webhooks may call although refused by default "
        "(link-local, cloud metadata), e.g. 169.254.20.10/32",
    )
    parser.add_argument(
        "--webhook-deny-cidrs",
        default=os.environ.get("WEBHOOK_DENY_CIDRS", ""),
        help="comma-separated ranges webhooks may not call, e.g. 127.0.0.0/8",
    )
    parser.add_argument(
        "--secret-namespace",
        default=os.environ.get("WEBHOOK_SECRET_NAMESPACE"),
        help="namespace of the Secrets webhooks' urlFrom/metadataFrom name "
        "(default: the lease namespace)",
    )


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    """How this engine runs: lease timing, retention, namespaces, shard, caches, logs."""
    parser.add_argument("--lease-seconds", type=int, default=15, help="leader Lease duration")
    parser.add_argument(
        "--keep-finished",
        type=int,
        default=EngineSettings.keep_finished,
        help="finished releases kept per target Deployment (default %(default)s)",
    )
    parser.add_argument(
        "--protected-namespaces",
        default=os.environ.get("CANARY_BOT_PROTECTED_NAMESPACES", ""),
        help="namespaces (comma-separated) the engine never acts in, besides kube-system, "
        "kube-public, kube-node-lease and its own (the lease namespace)",
    )
    parser.add_argument(
        "--shard",
        default=os.environ.get("CANARY_BOT_SHARD") or None,
        help=f"only handle releases labelled {SHARD_LABEL}=SHARD, leading through the Lease "
        "<lease-name>-SHARD (default: only releases without the label)",
    )
    parser.add_argument(
        "--no-watch-cache",
        action="store_true",
        help="read Deployments, Services and Ingresses with a request each time instead of "
        "watching them (for RBAC without list/watch on them)",
    )
    parser.add_argument(
        "--no-leader-election", action="store_true", help="act at once (only one replica!)"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )


def _check_webhook_ranges(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The CIDR lists as tuples; a malformed range ends the program with its option's name."""
    for option in ("webhook_allow_cidrs", "webhook_deny_cidrs"):
        values = tuple(v.strip() for v in getattr(args, option).split(",") if v.strip())
        try:
            parse_networks(values)
        except ValueError as exc:
            parser.error(f"--{option.replace('_', '-')}: {exc}")
        setattr(args, option, values)


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGTERM/SIGINT, then hand the Lease back."""
    kube = Kube.connect(kubeconfig=args.kubeconfig)
    settings = EngineSettings(
        prometheus_url=args.prometheus_url,
        namespace=args.namespace,
        leader_election=not args.no_leader_election,
        lease_namespace=args.lease_namespace,
        lease_name=shard_lease_name(args.lease_name, args.shard),
        shard=args.shard,
        watch_cache=not args.no_watch_cache,
        keep_finished=args.keep_finished,
        lease_seconds=args.lease_seconds,
        webhook_allow_cidrs=args.webhook_allow_cidrs,
        webhook_deny_cidrs=args.webhook_deny_cidrs,
        secret_namespace=args.secret_namespace,
        own_namespace=args.lease_namespace,
        protected_namespaces=parse_namespace_list(args.protected_namespaces),
        # client-go's proportions (15 s / 10 s / 2 s), for test-sized leases too
        renew_deadline_seconds=args.lease_seconds * 2 / 3,
        retry_seconds=args.lease_seconds * 2 / 15,
    )
    if settings.leader_election:
        await check_lease_namespace(kube, settings.lease_namespace, settings.lease_name)
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
    if args.keep_finished < 1:
        print("python -m rollout: --keep-finished must be at least 1", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args))
    except LeaseNamespaceMissing as exc:
        print(f"python -m rollout: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
