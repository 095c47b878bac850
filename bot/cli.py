"""Command-line entry point: ``canary-bot run`` and ``canary-bot check-config``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import stat
import sys
from collections.abc import Mapping

from prometheus_client import REGISTRY
from pydantic import ValidationError

from bot import logs
from bot.config import ConfigError, Environment, load_config
from bot.console import ConsoleNotifier, ConsoleSession, ExtraCommand, stdin_reader
from bot.process import BotProcess


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canary-bot",
        description="Slack-driven canary releases on Kubernetes. Secrets and endpoints come "
        "from the environment: SLACK_BOT_TOKEN, SLACK_APP_TOKEN (Socket Mode) or "
        "SLACK_SIGNING_SECRET (HTTP mode), SLACK_API_URL, KUBECONFIG, PROMETHEUS_URL, "
        "CANARY_BOT_CONFIG.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the Slack app, the notifier and the engine")
    run.add_argument("--port", type=int, default=3000, help="HTTP port (default 3000)")
    run.add_argument("--host", default="0.0.0.0", help="address to listen on")
    run.add_argument("--config", help="config file (default: $CANARY_BOT_CONFIG)")
    run.add_argument("--no-engine", action="store_true", help="only the Slack front")
    run.add_argument(
        "--no-leader-election", action="store_true", help="act at once (single replica)"
    )
    run.add_argument(
        "--namespace",
        help="only handle releases in this namespace (for a namespace-scoped install)",
    )
    run.add_argument("--log-format", choices=("json", "text"), default="json")
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", nargs="?", help="config file (default: $CANARY_BOT_CONFIG)")
    return parser


async def run_process(
    process: BotProcess,
    *,
    interactive: bool,
    extra: Mapping[str, ExtraCommand] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM; in console mode also until ``quit`` or end of input."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await process.start()
    try:
        notifier = process.notifier
        if interactive and isinstance(notifier, ConsoleNotifier) and process.operations:
            session = ConsoleSession(process.operations, notifier, extra=extra)
            console = asyncio.create_task(session.run(stdin_reader()))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({console, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for task in (console, stopped):
                task.cancel()
        else:
            await stop.wait()
    finally:
        await process.stop()


def stdin_is_interactive() -> bool:
    """A terminal or a pipe feeds the console; /dev/null or a closed stdin does not."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return sys.stdin.isatty() or stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def main(argv: list[str] | None = None) -> int:
    """Run canary-bot; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        env = Environment()
    except ValidationError as exc:
        print(f"canary-bot: invalid environment: {exc.error_count()} problem(s)", file=sys.stderr)
        return 2
    path = getattr(args, "config", None) or getattr(args, "path", None) or env.canary_bot_config
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"canary-bot: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(
            f"{path or '(no file)'}: ok — {len(config.profiles)} profile(s), "
            f"{len(config.authorization.rules)} authorization rule(s), "
            f"{len(config.channels.routes)} channel route(s)"
        )
        return 0
    logs.configure(json_lines=args.log_format == "json")
    process = BotProcess(
        env=env,
        config=config,
        registry=REGISTRY,
        port=args.port,
        host=args.host,
        run_engine=not args.no_engine,
        leader_election=not args.no_leader_election,
        namespace=args.namespace,
    )
    try:
        asyncio.run(run_process(process, interactive=stdin_is_interactive()))
    except Exception as exc:  # start-up failures: one readable line, not a trace
        print(f"canary-bot: could not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
