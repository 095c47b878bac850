"""The rollout chart as a person gets it: a PNG of phone size with the decision marked."""

from __future__ import annotations

import io
import math
from datetime import datetime, timedelta

import numpy as np
import pytest
from matplotlib import colors
from PIL import Image

from bot.chart import (
    HEIGHT_PX,
    PROMOTED,
    ROLLED_BACK,
    WIDTH_PX,
    chart_alt_text,
    decision_label,
    render_rollout_chart,
)
from rollout.models import CanaryRelease, Phase
from rollout.timeline import AnalysisPoint, Sample, Timeline, WeightStep
from tests.bot.factories import NOW, release

START = NOW - timedelta(minutes=5)
END = NOW - timedelta(minutes=1)
CAUSE = "failed checks threshold reached 10"


def synthetic_timeline(outcome: str = "promoted", *, start: datetime = START) -> Timeline:
    """A four-minute rollout in 5 s steps; a rolled-back canary loses half its requests."""
    end = start + (END - START)
    failing = outcome == "rolled back"
    canary, stable, canary_p99, stable_p99 = [], [], [], []
    for i in range(4, 49):  # the first 20 s the canary has no traffic yet
        at = start + timedelta(seconds=5 * i)
        bad = failing and i > 24
        canary.append(Sample(at, 50.0 + 0.5 * math.sin(i) if bad else 100.0))
        stable.append(Sample(at, 100.0 - 0.05 * (i % 3)))
        canary_p99.append(Sample(at, 240.0 if bad else 45.0 + 3 * math.sin(i / 3)))
        stable_p99.append(Sample(at, 40.0 + 2 * math.cos(i / 4)))
    last_step = 7 if failing else 10
    weights = [WeightStep(start, 0)]
    weights += [WeightStep(start + timedelta(seconds=20 * k), 5 * k) for k in range(1, last_step)]
    weights.append(WeightStep(end, 0))
    checks = [
        AnalysisPoint(
            at=start + timedelta(seconds=20 * k),
            weight=5 * k,
            ok=not (failing and k > 6),
            success_rate=50.0 if failing and k > 6 else 100.0,
        )
        for k in range(1, 12 if failing else 11)
    ]
    return Timeline(
        start=start,
        end=end,
        step_seconds=5,
        canary_success=tuple(canary),
        stable_success=tuple(stable),
        canary_p99_ms=tuple(canary_p99),
        stable_p99_ms=tuple(stable_p99),
        weights=tuple(weights),
        checks=tuple(checks),
        phase=Phase.FAILED if failing else Phase.SUCCEEDED,
        decided_at=end,
        cause=CAUSE if failing else "",
        success_min=99,
        p99_max_ms=500,
        max_weight=50,
        success_window="1m",
        duration_window="1m",
    )


def final_release(outcome: str = "promoted") -> CanaryRelease:
    return release(Phase.FAILED if outcome == "rolled back" else Phase.SUCCEEDED, weight=0)


def decode(png: bytes) -> np.ndarray:
    """The PNG's pixels as an (height, width, 3) uint8 array; fails if it is no PNG."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG"
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def pixels_of(image: np.ndarray, colour: str, tolerance: int = 12) -> int:
    """How many pixels have ``colour`` (within ``tolerance`` per channel)."""
    wanted = np.array([round(c * 255) for c in colors.to_rgb(colour)])
    close = np.all(np.abs(image.astype(int) - wanted) <= tolerance, axis=-1)
    return int(close.sum())


@pytest.mark.parametrize("outcome", ["promoted", "rolled back"])
def test_chart_is_a_png_of_phone_size(outcome: str) -> None:
    png = render_rollout_chart(final_release(outcome), synthetic_timeline(outcome))

    image = decode(png)
    assert image.shape == (HEIGHT_PX, WIDTH_PX, 3)
    # a chart on a phone: a few hundred kilobytes at most, not a photo
    assert len(png) < 400_000


def test_promoted_and_rolled_back_charts_are_marked_in_their_colours() -> None:
    promoted = decode(render_rollout_chart(final_release(), synthetic_timeline()))
    rolled_back = decode(
        render_rollout_chart(final_release("rolled back"), synthetic_timeline("rolled back"))
    )

    assert promoted.shape == rolled_back.shape
    assert np.any(promoted != rolled_back)
    # the green banner and decision line on one, the red ones on the other
    assert pixels_of(promoted, PROMOTED) > 5_000
    assert pixels_of(promoted, ROLLED_BACK) == 0
    assert pixels_of(rolled_back, ROLLED_BACK) > 5_000
    assert pixels_of(rolled_back, PROMOTED) == 0


def test_decision_label_and_alt_text_name_the_outcome() -> None:
    failed = synthetic_timeline("rolled back")
    assert decision_label(failed) == f"rolled back: {CAUSE}"
    assert decision_label(synthetic_timeline()) == "promoted"
    alt = chart_alt_text(final_release("rolled back"), failed)
    assert alt.startswith(f"Rollout chart of podinfo-x7k2p.test: rolled back: {CAUSE}.")
    assert "Canary success rate lowest 49.5%" in alt and "stable lowest 99.9%" in alt


def test_same_inputs_give_the_same_bytes_without_a_software_or_time_stamp() -> None:
    first = render_rollout_chart(final_release(), synthetic_timeline())
    second = render_rollout_chart(final_release(), synthetic_timeline())

    assert first == second
    with Image.open(io.BytesIO(first)) as image:
        text = {key.lower(): value for key, value in image.info.items() if isinstance(value, str)}
    assert "software" not in text and "creation time" not in text


def test_a_rollout_without_metrics_still_shows_weights_and_decision() -> None:
    bare = Timeline(
        start=START,
        end=END,
        step_seconds=5,
        weights=(WeightStep(START, 0), WeightStep(START + timedelta(seconds=30), 10)),
        phase=Phase.FAILED,
        decided_at=END,
        cause="aborted by alice",
        problems=("Prometheus could not be queried: connection failed (connection refused)",),
    )

    image = decode(render_rollout_chart(final_release("rolled back"), bare))

    assert image.shape == (HEIGHT_PX, WIDTH_PX, 3)
    assert pixels_of(image, ROLLED_BACK) > 5_000
    assert "No metrics were available." in chart_alt_text(final_release("rolled back"), bare)


def test_long_and_hour_long_rollouts_render() -> None:
    start = NOW - timedelta(hours=3)
    timeline = synthetic_timeline("rolled back", start=start)
    long_timeline = Timeline(
        **{
            **timeline.__dict__,
            "end": NOW,
            "decided_at": NOW,
            "cause": "fail-fast threshold crossed: " + "request-success-rate 48.12% " * 8,
        }
    )
    many_images = final_release("rolled back").model_copy(
        update={
            "spec": final_release().spec.model_copy(
                update={
                    "images": {
                        "podinfod": "registry.example.com:5000/team/podinfo@sha256:" + "a" * 64,
                        "sidecar": "envoyproxy/envoy:v1.31.0",
                    }
                }
            )
        }
    )

    image = decode(render_rollout_chart(many_images, long_timeline))

    assert image.shape == (HEIGHT_PX, WIDTH_PX, 3)
