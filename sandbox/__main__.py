"""``python -m sandbox`` (what ``make run`` starts when nothing is configured).

Brings up the local sandbox and runs canary-bot in console mode against it, so a newcomer
can type the tutorial's ``kubectl set image deployment/podinfo
podinfod=stefanprodan/podinfo:6.0.3 -n test`` and watch the canary promote, then
``errors 50`` and set another image to watch a rollback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from bot.cli import run_process, stdin_is_interactive
from bot.config import Environment, load_config
from bot.console import ExtraCommand
from bot.logs import configure
from bot.process import BotProcess
from sandbox.local import LocalSandbox


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Start a local Kubernetes control plane, Prometheus, simulated "
        "ingress-nginx traffic and the podinfo app, then canary-bot in console mode.",
    )
    parser.add_argument(
        "--port", type=int, default=3000, help="canary-bot's HTTP port (/healthz, /readyz, /metrics)"
    )
    parser.add_argument(
        "--rps", type=float, default=20.0, help="simulated requests per second to podinfo"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the sandbox's files here (default: a temp dir)"
    )
    parser.add_argument(
        "--router",
        choices=("ingress", "gateway"),
        default=os.environ.get("ROUTER") or "ingress",
        help="the data plane: ingress (simulated ingress-nginx, default) or gateway (real "
        "Envoy programmed by Contour from an HTTPRoute; needs root); env ROUTER",
    )
    return parser


def sandbox_commands(sandbox: LocalSandbox) -> dict[str, ExtraCommand]:
    """Console commands that act on the simulated data plane (like the tutorial's curl)."""

    def errors(words: list[str]) -> str:
        try:
            percent = float(words[0]) if words else 50.0
        except ValueError:
            return "usage: errors <percent>   e.g. errors 50 (the canary answers HTTP 500 to half its requests)"
        if not 0 <= percent <= 100:
            return "errors takes a percentage between 0 and 100"
        sandbox.inject_errors(percent / 100)
        return f"The canary side now answers HTTP 500 to {percent:g}% of its requests."

    def heal(words: list[str]) -> str:
        sandbox.heal()
        return "No more injected errors."

    def where(words: list[str]) -> str:
        return sandbox.summary()

    def kubectl(words: list[str]) -> str:
        if not words or words[0] != "set":
            return (
                "Only `kubectl set image ...` runs in the console; use the kubectl line "
                "that `sandbox` prints for anything else."
            )
        return sandbox.set_image(words[1:])

    return {
        "errors": errors,
        "heal": heal,
        "sandbox": where,
        "set": sandbox.set_image,
        "kubectl": kubectl,
    }


async def _serve(sandbox: LocalSandbox, port: int) -> None:
    config_path = sandbox.write_config()
    env = Environment(
        slack_bot_token=None,
        slack_app_token=None,
        slack_signing_secret=None,
        kubeconfig=str(sandbox.kubeconfig),
        prometheus_url=sandbox.prometheus_url,
        canary_bot_config=str(config_path),
    )
    process = BotProcess(
        env=env,
        config=load_config(str(config_path)),
        registry=CollectorRegistry(),
        metrics_port=port,
        host="127.0.0.1",
        leader_election=False,
    )
    await run_process(process, interactive=stdin_is_interactive(), extra=sandbox_commands(sandbox))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    configure(level="WARNING", json_lines=False)
    sandbox = LocalSandbox(args.workdir, rps=args.rps, router=args.router)
    try:
        sandbox.start()
    except Exception as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    print(sandbox.summary(), flush=True)
    print(
        "\npodinfo is protected by the tutorial's Canary. Release a new version the tutorial's way:\n"
        "Try:  kubectl set image deployment/podinfo podinfod=stefanprodan/podinfo:6.0.3 -n test\n"
        "      (or from Slack's side: start podinfo image=stefanprodan/podinfo:6.0.3)\n"
        "Then: errors 50, and set image deployment/podinfo podinfod=stefanprodan/podinfo:6.0.4\n"
        "      to watch a rollback.",
        flush=True,
    )
    os.environ.pop("KUBECONFIG", None)  # never point at a real cluster by accident
    try:
        asyncio.run(_serve(sandbox, args.port))
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
