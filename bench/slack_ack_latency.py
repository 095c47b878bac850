"""How fast canary-bot acknowledges signed slash commands in HTTP mode (Slack allows 3 s).

Runs the real process (Bolt app, aiohttp server) against the Slack fake and a local
control plane, sends signed ``/canary`` requests, and measures the HTTP round trip of
``POST /slack/events``: the time Slack would wait for the ack. Three kinds of command:
``help`` (answered inside the ack), ``list`` and ``status`` (acked first, then read the
cluster and answer through the response URL).

    .venv/bin/python -m bench.slack_ack_latency [--requests 200] [--concurrency 1 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import aiohttp
import yaml
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bot.config import BotConfig, Environment
from bot.process import BotProcess
from rollout.kube import Kube
from sandbox import slack_requests
from sandbox.controlplane import ControlPlane
from sandbox.slack_fake import SlackFake

CRD = Path(__file__).resolve().parents[1] / "manifests" / "crd.yaml"
SECRET = "bench-signing-secret"
COMMANDS = ("help", "list -n default", "status podinfo -n default")


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def install_crd(kube: Kube) -> None:
    """Create the CanaryRelease CRD and wait until it serves."""
    body = yaml.safe_load(CRD.read_text())
    await kube.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            await kube.request("GET", "/apis/canarybot.io/v1alpha1/canaryreleases")
            return
        except Exception:
            await asyncio.sleep(0.2)
    raise RuntimeError("the CRD did not become available")


async def measure(
    port: int, fake: SlackFake, text: str, requests: int, concurrency: int
) -> list[float]:
    """Round trips of ``requests`` signed ``/canary text`` posts, ``concurrency`` at a time."""
    url = f"http://127.0.0.1:{port}/slack/events"
    samples: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession) -> None:
        payload = slack_requests.slash_command_payload(
            text=text,
            response_url=fake.new_response_url(),
            trigger_id=fake.new_trigger_id(),
        )
        body, headers = slack_requests.sign(
            slack_requests.form_body(payload), signing_secret=SECRET
        )
        async with gate:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
            samples.append(time.perf_counter() - started)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session) for _ in range(requests)))
    return samples


async def main(requests: int, concurrencies: list[int]) -> None:
    """Start everything, measure each command at each concurrency, print a table."""
    with ControlPlane() as cluster, SlackFake() as fake:
        kube = Kube.connect(str(cluster.kubeconfig))
        await install_crd(kube)
        env = Environment(
            slack_bot_token=SecretStr(fake.bot_token),
            slack_app_token=None,
            slack_signing_secret=SecretStr(SECRET),
            slack_api_url=fake.api_url,
        )
        process = BotProcess(
            env=env,
            config=BotConfig(),
            registry=CollectorRegistry(),
            port=0,
            host="127.0.0.1",
            run_engine=False,
            kube=kube,
        )
        await process.start()
        try:
            await measure(process.bound_port, fake, "help", 20, 1)  # warm up
            print(f"{'command':<36}{'conc':>5}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
            for concurrency in concurrencies:
                for text in COMMANDS:
                    samples = await measure(process.bound_port, fake, text, requests, concurrency)
                    ms = [s * 1000 for s in samples]
                    print(
                        f"{'/canary ' + text:<36}{concurrency:>5}{len(ms):>6}"
                        f"{statistics.median(ms):>9.1f}{percentile(ms, 0.99):>9.1f}{max(ms):>9.1f}"
                    )
        finally:
            await process.stop()
            kube.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency))
