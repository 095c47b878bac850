"""The whole process ends a rollout with its chart: signed Slack request in, real control
plane, Prometheus and simulated traffic, and one PNG in the release's thread."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bot.chart import HEIGHT_PX, ROLLED_BACK, WIDTH_PX
from rollout.kube import Kube
from rollout.models import Phase
from rollout.store import ReleaseStore
from sandbox.slack_fake import SlackFake
from tests.bot.harness import config_for, environment, post_signed, running_bot
from tests.bot.test_chart import pixels_of
from tests.fixtures.slack import SlackRequests, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

CHANNEL = "C0DEPLOYS"
NEW = "stefanprodan/podinfo:6.0.3"


async def test_a_rolled_back_release_gets_its_chart_in_the_thread(
    kube: Kube,
    podinfo: str,
    traffic: Any,
    prometheus: Any,
    slack_fake: SlackFake,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    namespace = podinfo
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    sim.set_side("canary", error_rate=0.5)
    store = ReleaseStore(kube)
    env = environment(slack_fake, signing_secret=signing_secret, prometheus_url=prometheus.url)
    async with running_bot(
        env, config_for(namespace), kube, run_engine=True, namespace=namespace
    ) as bot:
        await post_signed(
            bot.bound_port, slack_requests.slash_command(text=f"start podinfo image={NEW}")
        )
        [chart] = await eventually(
            slack_fake.files, within=150, interval=0.5, message="no chart was uploaded"
        )
    [release] = await store.list_objects(namespace)
    assert release.status.phase == Phase.FAILED
    [root] = [m for m in slack_fake.messages(CHANNEL) if m.get("text", "").startswith("Canary ")]
    assert (chart.channel, chart.thread_ts) == (CHANNEL, root["ts"])
    # the chart comes after the rollback's reply in the thread, and only once
    thread = slack_fake.thread(CHANNEL, root["ts"])
    rolled_back = next(i for i, m in enumerate(thread) if "Rolling back" in m.get("text", ""))
    shared = [i for i, m in enumerate(thread) if m.get("files")]
    assert len(shared) == 1 and shared[0] > rolled_back
    assert len(slack_fake.files()) == 1

    with Image.open(io.BytesIO(chart.content)) as image:
        assert image.size == (WIDTH_PX, HEIGHT_PX)
        pixels = np.asarray(image.convert("RGB"))
    assert pixels_of(pixels, ROLLED_BACK) > 5_000, "the rollback is not marked in red"

    # the alt text is written from the measured series: half the canary's requests failed
    [request] = [c for c in slack_fake.calls("files.getUploadURLExternal") if c.status == 200]
    alt = str(request.params.get("alt_txt", ""))
    lowest = re.search(r"Canary success rate lowest ([\d.]+)%, stable lowest ([\d.]+)%", alt)
    assert lowest, alt
    assert float(lowest.group(1)) == pytest.approx(50, abs=10)
    assert float(lowest.group(2)) == pytest.approx(100)
