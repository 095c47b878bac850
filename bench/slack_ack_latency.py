"""Slack ack latency: signed ``/canary status`` and ``/canary start`` under open-loop load.

Slack gives an app 3 s to acknowledge a slash command; a later ack is an error the user
sees. This measures that time where it matters: canary-bot runs as one process the way
it is deployed (``canary-bot run``: Bolt app in HTTP mode, notifier and engine in one
event loop) while it is busy with ``ROLLOUTS`` active rollouts on a real control plane,
with Prometheus, simulated traffic and the Slack fake (which receives the cards, thread
replies and ``response_url`` answers).

Setup: ``ROLLOUTS`` podinfo apps (one replica each) in one namespace, one shared traffic
generator (bench.trafficpool), and one CanaryRelease per app with a 30 s interval and
2 % steps (about 13 minutes to promotion, so they stay active for the whole run). The
bot runs as a child process under its own cluster user, and its notifier posts every
card to one channel, as a team with one deploys channel would have it.

Load: for each command and each offered rate in ``RATES``, requests are sent *open
loop*: each at its scheduled time (``i / rate``), whether or not earlier ones have been
answered, so queueing in the bot shows up as latency instead of slowing the sender.
Latency is taken from the scheduled time to the end of the HTTP answer, so it also
includes any delay of the sender in sending (reported separately as "send lag"). The
sender is a process of its own: this one also hosts the Slack fake and a watch of
every release, whose threads would hold the interpreter while a send or an answer
waits.

- ``status <app>``: acked at once; then one release is read and its card rendered into
  the ephemeral answer.
- ``start <app> image=…``: acked at once; then the authorization rules, the Deployment
  and the preflight check run, which refuses the start because the app already has a
  rollout in progress: the full read path of a start, and nothing is created.

Per case: ack latency p50/p90/p99/max, the ratio of p99 and max to Slack's 3 s, requests
that missed 3 s, the time until the answer reached the ``response_url``, and the bot's
CPU. Numbers only; nothing here passes or fails.

    python -m bench slack-ack [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import random
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.core import Options, Progress, Result, now_iso, percentile, ratio
from bench.env import (
    REPO,
    Cluster,
    Prometheus,
    scratch,
    wait_until,
)
from bench.scenario import analysis, create_release, release_spec
from bench.trafficpool import TrafficPool
from bench.watch import RELEASES_PATH, Watcher, status_of
from sandbox import slack_requests
from sandbox.ports import free_port
from sandbox.slack_fake import SlackFake

NAME = "slack-ack"
TITLE = "Slack ack latency of signed /canary status and start at 20/s and 100/s, 50 rollouts"
NAMESPACE = "bench-slack"
ROLLOUTS = 50
RATES = (20, 100)
COMMANDS = ("status", "start")
SLACK_DEADLINE = 3.0
CHANNEL = "C0DEPLOYS"
USER = slack_requests.DEFAULT_USER_ID
SECRET = "bench-signing-secret"
NEWER = "stefanprodan/podinfo:6.1.0"
RPS_PER_APP = 20
# seconds after a case's last ack that its answers may still arrive in
ANSWER_GRACE = 60.0
_API_REQUESTS = re.compile(
    r'^canarybot_kube_api_requests_total\{resource="(?P<resource>[^"]*)",'
    r'verb="(?P<verb>[^"]*)"\} (?P<value>[0-9.e+]+)$'
)

CONFIG = textwrap.dedent(
    f"""\
    cluster: bench
    channels:
      default: {CHANNEL}
    authorization:
      rules:
        - namespaces: ["{NAMESPACE}"]
          verbs: ["*"]
          users: ["{USER}"]
    defaults:
      namespace: {NAMESPACE}
      profile: slow
      targetPort: 9898
    profiles:
      slow:
        interval: 30s
        threshold: 5
        maxWeight: 50
        stepWeight: 2
        metrics:
          - name: request-success-rate
            thresholdRange: {{min: 99}}
            interval: 30s
    """
)


def run(options: Options, progress: Progress) -> Result:
    """Measure every (command, rate) case; 10 s per case with --quick, else 30 s."""
    seconds = 10.0 if options.quick else 30.0
    result = Result(NAME, TITLE, started_at=now_iso())
    result.params = {
        "rollouts": ROLLOUTS,
        "rates_per_s": list(RATES),
        "commands": [f"/canary {c}" for c in COMMANDS],
        "seconds_per_case": seconds,
        "load": "open loop: each request sent at its scheduled time",
        "latency": "scheduled send time -> end of the HTTP answer, client side",
        "slack_deadline_s": SLACK_DEADLINE,
        "bot": "canary-bot run (HTTP mode, engine on, no leader election), own process",
        "analysis": "interval 30s, stepWeight 2 up to 50, request-success-rate over 30s",
        "rps_per_app": RPS_PER_APP,
    }
    started = time.monotonic()
    try:
        with scratch(options.workdir, NAME) as workdir:
            cases = _run(workdir, seconds, progress)
    except Exception as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
        cases = []
    for case in cases:
        _rows(result, case)
    if cases:
        result.add(
            "whole run",
            "notifier publishes given up",
            cases[-1]["notifier_gave_up"],
            "publishes",
            f"{ROLLOUTS} rollouts' cards in one channel, ~1 post/s; 8 s deadline each",
        )
    result.details = {"cases": cases}
    result.seconds = time.monotonic() - started
    return result


def _rows(result: Result, case: dict[str, Any]) -> None:
    label = f"/canary {case['command']} @ {case['rate']}/s"
    ack = case["ack_ms"]
    result.add(label, "ack p50", percentile(ack, 0.5), "ms", f"n={len(ack)}")
    result.add(label, "ack p90", percentile(ack, 0.9), "ms")
    result.add(label, "ack p99", percentile(ack, 0.99), "ms")
    result.add(label, "ack max", max(ack, default=None), "ms")
    sent_ack = case.get("ack_from_send_ms", [])
    result.add(label, "ack from actual send, p50", percentile(sent_ack, 0.5), "ms")
    result.add(
        label, "ack from actual send, p99", percentile(sent_ack, 0.99), "ms", "send lag excluded"
    )
    p99, worst = percentile(ack, 0.99), max(ack, default=None)
    deadline_ms = SLACK_DEADLINE * 1000
    result.add(label, "ack p99 / 3 s", ratio(p99, deadline_ms), "", "share of Slack's deadline")
    result.add(label, "ack max / 3 s", ratio(worst, deadline_ms))
    result.add(label, "acks over 3 s", case["over_deadline"], "requests")
    result.add(label, "failed requests", case["failed"], "requests", "non-200 or no answer")
    result.add(label, "answer in response_url p50", percentile(case["answer_ms"], 0.5), "ms")
    result.add(label, "answer in response_url p99", percentile(case["answer_ms"], 0.99), "ms")
    result.add(
        label,
        "answers missing",
        case["sent"] - len(case["answer_ms"]),
        "requests",
        f"no response_url post {ANSWER_GRACE:.0f} s after the last send",
    )
    result.add(
        label,
        "answer throughput",
        case.get("answers_per_s"),
        "per s",
        "answers / (last answer - first scheduled send)",
    )
    result.add(
        label,
        "bot CPU per request",
        case.get("bot_cpu_ms_per_request"),
        "ms",
        "CPU from the first send until the answers were out (engine included) / requests",
    )
    result.add(
        label,
        "API requests per command",
        case.get("api_requests_per_command"),
        "requests",
        "the bot's, engine included, until the answers were out / requests",
    )
    result.add(
        label,
        "CanaryRelease GETs per command",
        case.get("release_reads_per_command"),
        "requests",
        "gets and lists of releases (the front's and the engine's) / requests",
    )
    result.add(label, "send lag max", case["send_lag_max_ms"], "ms", "this process falling behind")
    result.add(label, "bot CPU", case["bot_cpu_percent"], "% of a core")
    result.add(label, "active rollouts", case["active_rollouts"], "", "at the start of the case")


@dataclass
class BotChild:
    """``canary-bot run`` as a child process, logging to a file."""

    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200; raises if the process died."""
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"canary-bot exited ({self.process.returncode}):\n{tail}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api_requests(self) -> dict[str, float]:
        """The process's Kubernetes API requests so far, by ``VERB resource`` (engine
        included), from its ``/metrics``; empty when they cannot be read."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
            ) as response:
                text = response.read().decode()
        except OSError:
            return {}
        counts: dict[str, float] = {}
        for line in text.splitlines():
            match = _API_REQUESTS.match(line)
            if match:
                counts[f"{match['verb']} {match['resource']}"] = float(match["value"])
        return counts

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _start_bot(
    workdir: Path, kubeconfig: Path, prometheus_url: str, fake: SlackFake, port: int
) -> BotChild:
    config = workdir / "canary-bot.yaml"
    config.write_text(CONFIG)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KUBECONFIG"))},
        "PYTHONPATH": str(REPO),
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.api_url,
        "KUBECONFIG": str(kubeconfig),
        "PROMETHEUS_URL": prometheus_url,
        "CANARY_BOT_CONFIG": str(config),
    }
    log = workdir / "canary-bot.log"
    metrics_port = free_port()
    argv = [
        sys.executable,
        "-c",
        "import sys; from bot.cli import main; sys.exit(main())",
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--no-leader-election",
        "--namespace",
        NAMESPACE,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env
        )
    return BotChild(process, port, metrics_port, log)


def _run(workdir: Path, seconds: float, progress: Progress) -> list[dict[str, Any]]:
    with Cluster(workdir, progress) as cluster, SlackFake() as fake:
        apps = [f"app{i:02d}" for i in range(ROLLOUTS)]
        cluster.create_namespace(NAMESPACE)
        identity = cluster.identity("bench-bot")
        prometheus = Prometheus(workdir, progress).start()
        for app in apps:
            cluster.deploy_app(NAMESPACE, app, replicas=1)
        wait_until(
            lambda: cluster.ready_deployments([NAMESPACE], set(apps)) == ROLLOUTS,
            300,
            f"{ROLLOUTS} apps to roll out",
            interval=1,
        )
        progress(f"{ROLLOUTS} apps ready")
        traffic = TrafficPool(
            cluster.client, prometheus.server, [(NAMESPACE, a) for a in apps], rps=RPS_PER_APP
        ).start()
        bot = _start_bot(workdir, identity.kubeconfig, prometheus.url, fake, free_port())
        releases: Watcher | None = None
        try:
            wait_until(bot.ready, 60, "canary-bot to be ready", interval=0.5)
            progress(f"canary-bot pid {bot.process.pid} ready on port {bot.port}")
            releases = Watcher(cluster.client, RELEASES_PATH, status_of).start()
            block = analysis("30s", threshold=5, step_weight=2, max_weight=50, window="30s")
            for app in apps:
                create_release(cluster.client, NAMESPACE, app, release_spec(app, block))
            watcher = releases

            def progressing() -> bool:
                return _active(watcher, apps, phase="Progressing") >= math.ceil(0.95 * ROLLOUTS)

            wait_until(progressing, 300, f"{ROLLOUTS} releases to be Progressing", interval=1)
            progress(f"{_active(releases, apps, 'Progressing')} releases Progressing")
            cases = asyncio.run(_measure(bot, fake, releases, apps, seconds, progress))
            progress(f"bot log: {bot.log}")
            if cases:
                cases[-1]["notifier_gave_up"] = bot.log.read_text(errors="replace").count(
                    "could not notify Slack about"
                )
            return cases
        finally:
            if releases is not None:
                releases.stop()
            bot.stop()
            traffic.stop()
            prometheus.stop()


def _active(releases: Watcher, apps: list[str], phase: str | None = None) -> int:
    """Releases not finished (or in ``phase``)."""
    count = 0
    for app in apps:
        current = (releases.value(NAMESPACE, app) or {}).get("phase", "")
        if (phase is None and current not in ("", "Succeeded", "Failed")) or current == phase:
            count += 1
    return count


@dataclass
class Sent:
    """One request of a case: when it was due, sent and answered, and its response URL."""

    due: float  # monotonic
    due_wall: float
    response_url: str
    sent: float = 0.0
    answered: float = 0.0
    status: int = 0


async def _measure(
    bot: BotChild,
    fake: SlackFake,
    releases: Watcher,
    apps: list[str],
    seconds: float,
    progress: Progress,
) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{bot.port}/slack/events"
    # no connection limit: Slack opens as many connections as it needs
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    cases = []
    # The requests leave from a process of their own: this one also runs the Slack fake
    # and a watch of every release, whose threads would delay sending and reading
    # answers (the interpreter lock) and count as the bot's latency.
    sender = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    async with (
        _shut_down_after(sender),
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
    ):
        await asyncio.get_running_loop().run_in_executor(sender, _sender_ready)
        # warm-up: Bolt's first request makes its auth.test call; code paths load
        for _ in range(20):
            warm = _request(fake, "help")
            async with session.post(url, data=warm[1].body, headers=warm[1].headers) as response:
                await response.read()
        for command in COMMANDS:
            for rate in RATES:
                active = _active(releases, apps)
                progress(f"/canary {command} at {rate}/s for {seconds:.0f}s ({active} active)")
                case = await _case(sender, url, fake, bot, command, rate, seconds, apps)
                case["active_rollouts"] = active
                cases.append(case)
                progress(
                    f"  ack p50 {percentile(case['ack_ms'], 0.5) or 0:.1f} ms, "
                    f"p99 {percentile(case['ack_ms'], 0.99) or 0:.1f} ms, "
                    f"max {max(case['ack_ms'], default=0):.1f} ms, "
                    f"{case['over_deadline']} over 3 s, {case['failed']} failed"
                )
    return cases


@contextlib.asynccontextmanager
async def _shut_down_after(pool: ProcessPoolExecutor) -> AsyncIterator[None]:
    try:
        yield
    finally:
        pool.shutdown(cancel_futures=True)


def _text(command: str, app: str) -> str:
    if command == "status":
        return f"status {app} -n {NAMESPACE}"
    return f"start {app} image={NEWER} -n {NAMESPACE}"


def _request(fake: SlackFake, text: str) -> tuple[str, slack_requests.SignedRequest]:
    """A signed ``/canary text`` whose response URL the fake serves."""
    response_url = fake.new_response_url(user_id=USER)
    payload = slack_requests.slash_command_payload(
        text=text, user_id=USER, response_url=response_url, trigger_id=fake.new_trigger_id()
    )
    signed = slack_requests.sign(slack_requests.form_body(payload), signing_secret=SECRET)
    return response_url, signed


async def _case(
    sender: ProcessPoolExecutor,
    url: str,
    fake: SlackFake,
    bot: BotChild,
    command: str,
    rate: int,
    seconds: float,
    apps: list[str],
) -> dict[str, Any]:
    count = int(rate * seconds)
    rng = random.Random(f"{command}-{rate}")
    # built (and signed) before the clock starts, so building never delays a send
    requests = [_request(fake, _text(command, rng.choice(apps))) for _ in range(count)]
    pid = bot.process.pid
    api_before = bot.api_requests()
    cpu_before = procstat.snapshot(pid)
    bodies = [(request.body, request.headers) for _, request in requests]
    timings = await asyncio.get_running_loop().run_in_executor(
        sender, _send_open_loop, url, bodies, rate
    )
    cpu_after = procstat.snapshot(pid)
    # CLOCK_MONOTONIC is the machine's: the sender's times compare with this process's
    wall_offset = time.time() - time.monotonic()
    sent = [
        Sent(due, due + wall_offset, response_url, sent_at, answered, status)
        for (response_url, _), (due, sent_at, answered, status) in zip(
            requests, timings, strict=True
        )
    ]
    # Answers through the response URL come after the ack and may queue behind each
    # other; wait for the backlog to drain (bounded), so the next case starts quiet.
    urls = {item.response_url for item in sent}
    deadline = time.monotonic() + ANSWER_GRACE
    while time.monotonic() < deadline:
        posted = {p.url for p in fake.response_url_posts() if p.url in urls}
        if len(posted) == len(urls):
            break
        await asyncio.sleep(0.2)
    cpu_drained = procstat.snapshot(pid)
    api_after = bot.api_requests()
    api = {k: v - api_before.get(k, 0.0) for k, v in api_after.items()}
    first_post: dict[str, float] = {}
    for post in fake.response_url_posts():
        if post.url in urls and post.url not in first_post:
            first_post[post.url] = post.at
    ok = [s for s in sent if s.status == 200]
    ack_ms = [(s.answered - s.due) * 1000 for s in ok]
    # the same without this process's own delay in sending (a busy benchmark process)
    ack_from_send_ms = [(s.answered - s.sent) * 1000 for s in ok]
    answer_ms = [
        (first_post[s.response_url] - s.due_wall) * 1000
        for s in sent
        if s.response_url in first_post
    ]
    lags = [(s.sent - s.due) * 1000 for s in sent]
    # how fast the work behind the acks gets done: answers over the time they took
    span = max(first_post.values(), default=0.0) - (sent[0].due_wall if sent else 0.0)
    answers_per_s = round(len(first_post) / span, 1) if first_post and span > 0 else None
    return {
        "command": command,
        "rate": rate,
        "sent": len(sent),
        "failed": len(sent) - len(ok),
        "statuses": _counts([s.status for s in sent]),
        "over_deadline": sum(1 for ms in ack_ms if ms > SLACK_DEADLINE * 1000),
        "ack_ms": [round(ms, 2) for ms in ack_ms],
        "ack_from_send_ms": [round(ms, 2) for ms in ack_from_send_ms],
        "answer_ms": [round(ms, 1) for ms in answer_ms],
        "send_lag_max_ms": round(max(lags, default=0.0), 1),
        "answers_per_s": answers_per_s,
        # the bot's CPU until every answer was out (engine included), per request: less
        # sensitive to the machine's load than latencies are
        "bot_cpu_ms_per_request": round(
            1000 * (cpu_drained.cpu_seconds - cpu_before.cpu_seconds) / max(len(sent), 1), 2
        ),
        "bot_cpu_percent": round(procstat.usage(cpu_before, cpu_after).cpu_percent, 1),
        # until the answers were out, engine included (50 rollouts' steps: a few per s)
        "api_requests": {k: int(v) for k, v in sorted(api.items()) if v},
        "api_requests_per_command": round(sum(api.values()) / max(len(sent), 1), 2)
        if api_after
        else None,
        "release_reads_per_command": round(
            sum(v for k, v in api.items() if k.startswith("GET canaryreleases"))
            / max(len(sent), 1),
            3,
        )
        if api_after
        else None,
        "sample_answer": _sample_answer(fake, sent),
    }


def _sender_ready() -> bool:
    """Run once in the sender process so that it has imported this module."""
    return True


def _send_open_loop(
    url: str, bodies: list[tuple[bytes, dict[str, str]]], rate: int
) -> list[tuple[float, float, float, int]]:
    """In the sender process: POST each body at its time, whatever became of the earlier
    ones; (due, sent, answered, HTTP status or 0) per request, in monotonic seconds."""
    return asyncio.run(_send_all(url, bodies, rate))


async def _send_all(
    url: str, bodies: list[tuple[bytes, dict[str, str]]], rate: int
) -> list[tuple[float, float, float, int]]:
    # no connection limit: Slack opens as many connections as it needs
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    timings: list[list[float]] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(timing: list[float], body: bytes, headers: dict[str, str]) -> None:
            timing[1] = time.monotonic()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    timing[3] = response.status
            except (aiohttp.ClientError, TimeoutError):
                timing[3] = 0
            timing[2] = time.monotonic()

        start = time.monotonic() + 0.5
        tasks = []
        for index, (body, headers) in enumerate(bodies):
            due = start + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            timing = [due, 0.0, 0.0, 0]
            timings.append(timing)
            tasks.append(asyncio.create_task(one(timing, body, headers)))
        await asyncio.gather(*tasks)
    return [(t[0], t[1], t[2], int(t[3])) for t in timings]


def _counts(values: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


def _sample_answer(fake: SlackFake, sent: list[Sent]) -> str:
    """One answer of the case, so the JSON shows what the work produced."""
    for post in fake.response_url_posts(sent[-1].response_url if sent else None):
        return json.dumps(post.body)[:300]
    return ""


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main([NAME, *sys.argv[1:]]))
