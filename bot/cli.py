"""Command-line entry point: ``canary-bot run``, ``check-config`` and ``convert``."""

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
from bot.config import BotConfig, ConfigError, Environment, load_config
from bot.console import ConsoleNotifier, ConsoleSession, ExtraCommand, stdin_reader
from bot.convert import MAX_INPUT_BYTES, ConvertError, convert_text
from bot.process import BotProcess, engine_only_problem, slack_problem
from rollout.controller import EngineSettings
from rollout.lease_namespace import LeaseNamespaceMissing

# The metrics/probes port (the Slack port's Service never exposes it).
DEFAULT_METRICS_PORT = 9090


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
    run.add_argument(
        "--port", type=int, default=3000, help="Slack port, /slack/events in HTTP mode (3000)"
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of /metrics, /healthz and /readyz "
        f"(default $CANARY_BOT_METRICS_PORT or {DEFAULT_METRICS_PORT})",
    )
    run.add_argument("--host", default="0.0.0.0", help="address to listen on")
    run.add_argument("--config", help="config file (default: $CANARY_BOT_CONFIG)")
    _add_engine_options(run)
    run.add_argument(
        "--no-leader-election", action="store_true", help="act at once (single replica)"
    )
    run.add_argument(
        "--namespace",
        help="only handle releases in this namespace (for a namespace-scoped install)",
    )
    run.add_argument(
        "--lease-namespace",
        default=EngineSettings.lease_namespace,
        help="namespace of the leader Lease (default %(default)s; change it only for a "
        "deliberately separate installation)",
    )
    run.add_argument(
        "--lease-name", default=EngineSettings.lease_name, help="leader Lease (%(default)s)"
    )
    run.add_argument(
        "--keep-finished",
        type=_at_least_one,
        default=EngineSettings.keep_finished,
        help="finished releases kept per target Deployment; older ones are deleted "
        "(default %(default)s)",
    )
    run.add_argument("--log-format", choices=("json", "text"), default="json")
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", nargs="?", help="config file (default: $CANARY_BOT_CONFIG)")
    return _add_convert(parser, commands)


def _add_engine_options(run: argparse.ArgumentParser) -> None:
    """Which parts run: the engine, the front, or both."""
    engine = run.add_mutually_exclusive_group()
    engine.add_argument(
        "--engine",
        dest="engine",
        action="store_true",
        default=None,
        help="run the engine also in console mode (it stands by while another holds the Lease)",
    )
    engine.add_argument(
        "--no-engine",
        dest="engine",
        action="store_false",
        help="only the Slack front (the default with clusters: in the config)",
    )
    engine.add_argument(
        "--engine-only",
        action="store_true",
        help="only the engine, for one cluster of a front that serves several: needs only "
        "SLACK_BOT_TOKEN (SLACK_APP_TOKEN and SLACK_SIGNING_SECRET are not used), posts "
        "the cards naming config cluster:, opens no Socket Mode connection or Slack port",
    )


def _add_convert(
    parser: argparse.ArgumentParser,
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``canary-bot convert FILE``; returns ``parser``."""
    convert = commands.add_parser(
        "convert",
        help="print a Flagger Canary as a canary-bot Canary",
        description="Read a Flagger Canary (flagger.app/v1beta1) and print the canary-bot "
        "Canary (canarybot.io/v1alpha1) on stdout. Other documents in the file (the "
        "Deployment, the Ingress) are printed unchanged. Every field that cannot be carried "
        "over is named on stderr with the reason. Exit status: 0 when the result behaves "
        "as the Flagger Canary did, 2 when something would change behaviour (e.g. provider "
        "istio, autoscalerRef, sessionAffinity, mirror, alerts) or the input is not a "
        "Flagger Canary.",
        epilog="example: canary-bot convert podinfo-canary.yaml > canary.yaml; "
        "kubectl get canaries.flagger.app podinfo -n test -o yaml | canary-bot convert -",
    )
    convert.add_argument("file", help="the YAML file to read, or - for stdin")
    return parser


def _convert(path: str) -> int:
    """``canary-bot convert FILE``: converted YAML on stdout, findings on stderr."""
    try:
        if path == "-":
            text = sys.stdin.read(MAX_INPUT_BYTES + 1)
        else:
            with open(path, encoding="utf-8") as stream:
                text = stream.read(MAX_INPUT_BYTES + 1)
        result = convert_text(text)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"canary-bot convert: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    except ConvertError as exc:
        print(f"canary-bot convert: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(result.to_yaml())
    for finding in result.findings:
        print(f"canary-bot convert: {finding.line()}", file=sys.stderr)
    if not result.equivalent:
        print(
            "canary-bot convert: the result does not behave like the Flagger Canary "
            "(see 'changes behaviour' above); review it before applying",
            file=sys.stderr,
        )
        return 2
    return 0


def _metrics_port(flag: int | None) -> int:
    """``--metrics-port``, else ``$CANARY_BOT_METRICS_PORT``, else 9090."""
    if flag is not None:
        value = str(flag)
        source = "--metrics-port"
    else:
        value = os.environ.get("CANARY_BOT_METRICS_PORT", "") or str(DEFAULT_METRICS_PORT)
        source = "CANARY_BOT_METRICS_PORT"
    if not value.isdigit() or int(value) > 65535:
        raise ValueError(f"{source} {value!r} is not a port number (0-65535)")
    return int(value)


def _runs_engine(flag: bool | None, env: Environment, config: BotConfig) -> bool:
    """``--engine``/``--no-engine``, else: an engine with Slack, none at a terminal
    (it must never be a surprise next to the installed one) nor in a front of clusters."""
    if flag is not None:
        return flag
    return env.transport != "console" and not config.clusters


def _at_least_one(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return int(value)


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
        if isinstance(notifier, ConsoleNotifier):
            print(process.banner(), file=sys.stderr, flush=True)
        if interactive and isinstance(notifier, ConsoleNotifier) and process.operations:
            session = ConsoleSession(
                process.operations, notifier, extra=extra, clusters=process.clusters
            )
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


def _slack_refusal(args: argparse.Namespace, env: Environment, config: BotConfig) -> str | None:
    """Why ``run`` must not start with this Slack configuration and these parts, if so.

    A partial configuration in a Pod (stdin not a terminal) stops it: a half-configured
    Slack must not look healthy. At a terminal it falls back to console mode.
    """
    if args.engine_only:
        problem = engine_only_problem(env)
        return None if problem is None else f"incomplete Slack configuration: {problem}"
    if config.clusters and args.engine:
        return (
            "a front with clusters: runs no engine; leave out --engine and run "
            "`canary-bot run --engine-only` in each cluster (docs/multicluster.md)"
        )
    problem = slack_problem(env)
    if problem is None:
        return None
    if not sys.stdin.isatty():
        return f"incomplete Slack configuration: {problem}"
    print(f"canary-bot: {problem}; running in console mode", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run canary-bot; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "convert":  # needs no environment or config
        return _convert(args.file)
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
            + (f", {len(config.clusters)} cluster(s)" if config.clusters else "")
        )
        return 0
    try:
        metrics_port = _metrics_port(args.metrics_port)
    except ValueError as exc:
        print(f"canary-bot: {exc}", file=sys.stderr)
        return 2
    refused = _slack_refusal(args, env, config)
    if refused is not None:
        print(f"canary-bot: {refused}", file=sys.stderr)
        return 2
    logs.configure(json_lines=args.log_format == "json")
    process = BotProcess(
        env=env,
        config=config,
        registry=REGISTRY,
        port=args.port,
        metrics_port=metrics_port,
        host=args.host,
        run_engine=_runs_engine(args.engine, env, config),
        engine_only=args.engine_only,
        leader_election=not args.no_leader_election,
        namespace=args.namespace,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        keep_finished=args.keep_finished,
    )
    try:
        asyncio.run(run_process(process, interactive=stdin_is_interactive()))
    except LeaseNamespaceMissing as exc:
        print(f"canary-bot: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # start-up failures: one readable line, not a trace
        print(f"canary-bot: could not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
