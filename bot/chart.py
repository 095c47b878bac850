"""The end-of-rollout chart: one PNG that tells how a canary release went.

Layout, top to bottom, on a 1000 x 1200 px canvas (the width a phone shows full-screen
without zooming, at two to three image pixels per screen point):

- title: release and namespace; the image change; the decision as a coloured banner
  ("promoted" green, "rolled back: <cause>" red);
- success rate (%), canary vs stable, the ``thresholdRange.min`` as a dashed line, y from
  a floor just below the lowest value (or the threshold) up to 100; failed analysis
  checks as crosses;
- p99 latency (ms), canary vs stable, the ``request-duration`` ``max`` as a dashed line;
- the canary weight as a step line in a slim panel;
- one vertical line in the decision's colour through all three panels at the time of
  the decision, tagged above the top panel;
- the legend below the panels, where it covers no data.

Fonts are 20 pt and more at 100 dpi and lines several pixels thick, so the text stays
readable when Slack scales the image to a phone's width. Colours are the blue/orange
pair that reads the same for the common colour-vision deficiencies.

Rendering uses matplotlib's object API on an Agg canvas: a fresh ``Figure`` per call,
no pyplot, no change to global ``rcParams``. Same release and timeline, same bytes
(fixed size and dpi, no software or time stamp in the PNG metadata).
"""

from __future__ import annotations

import io
import math
import textwrap
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

from rollout.models import CanaryRelease, format_duration
from rollout.text import clip
from rollout.timeline import Sample, Timeline

WIDTH_PX = 1000
HEIGHT_PX = 1200
DPI = 100

CANARY = "#D96F00"
STABLE = "#1558B0"
THRESHOLD = "#222222"
PROMOTED = "#1B7A36"
ROLLED_BACK = "#B3261E"
NEUTRAL = "#555555"
GRID = "#D9D9D9"

TITLE_PT = 28
TEXT_PT = 21
TICK_PT = 19
LINE_PT = 4.0
# Stable is drawn wide under a narrower canary line: where the two sides measure the
# same (a healthy canary) both stay visible, blue edges around orange.
STABLE_PT = 9.0

# Characters per line at TEXT_PT across the canvas (DejaVu Sans averages ~0.55 em).
_TEXT_CHARS = 58
_TITLE_CHARS = 44

# matplotlib's font and text caches are shared by all figures; one render at a time.
_RENDER_LOCK = threading.Lock()

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Candidate tick spacings for the time axis, in seconds.
_TICK_SPACINGS = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200)


def render_rollout_chart(release: CanaryRelease, timeline: Timeline) -> bytes:
    """The rollout chart of ``release`` as PNG bytes (``WIDTH_PX`` x ``HEIGHT_PX``)."""
    with _RENDER_LOCK:
        fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor="white")
        FigureCanvasAgg(fig)
        _draw(fig, release, timeline)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
        return out.getvalue()


def decision_label(timeline: Timeline) -> str:
    """``promoted``, ``rolled back: <cause>`` or ``in progress``: the banner's words."""
    if timeline.outcome == "rolled back" and timeline.cause:
        return f"rolled back: {timeline.cause}"
    return timeline.outcome


def chart_alt_text(release: CanaryRelease, timeline: Timeline) -> str:
    """What the chart shows, in one or two sentences (alt text for screen readers)."""
    parts = [f"Rollout chart of {release.key}: {decision_label(timeline)}."]
    canary, stable = timeline.canary_success, timeline.stable_success
    if canary:
        low = min(s.value for s in canary)
        parts.append(f"Canary success rate lowest {low:.1f}%")
        if stable:
            parts[-1] += f", stable lowest {min(s.value for s in stable):.1f}%"
        parts[-1] += "."
    if timeline.canary_p99_ms:
        parts.append(f"Canary p99 up to {max(s.value for s in timeline.canary_p99_ms):.0f} ms.")
    if timeline.weights:
        parts.append(f"Canary weight up to {max(w.weight for w in timeline.weights)}%.")
    if not timeline.has_metrics:
        parts.append("No metrics were available.")
    return " ".join(parts)[:1000]


# -- drawing -------------------------------------------------------------------------------


def _draw(fig: Figure, release: CanaryRelease, timeline: Timeline) -> None:
    colour = _decision_colour(timeline)
    _header(fig, release, timeline, colour)
    grid = fig.add_gridspec(
        3,
        1,
        height_ratios=(335, 315, 120),
        left=0.125,
        right=0.9,
        top=1 - 205 / HEIGHT_PX,
        bottom=1 - 1025 / HEIGHT_PX,
        hspace=0.1,
    )
    success = fig.add_subplot(grid[0])
    latency = fig.add_subplot(grid[1], sharex=success)
    weight = fig.add_subplot(grid[2], sharex=success)
    span = max((timeline.end - timeline.start).total_seconds(), 1.0)
    for ax in (success, latency, weight):
        _style(ax)
        # a little room on the right, so the decision line does not sit on the edge
        ax.set_xlim(0, span * 1.03)
    gap = timeline.step_seconds * 2.5
    _success_panel(success, timeline, gap)
    _latency_panel(latency, timeline, gap)
    _weight_panel(weight, timeline, span)
    _time_axis(weight, span)
    for ax in (success, latency):
        ax.tick_params(labelbottom=False)
    if timeline.decided_at is not None and colour is not None:
        at = _seconds(timeline.start, timeline.decided_at)
        for ax in (success, latency, weight):
            ax.axvline(at, color=colour, linewidth=LINE_PT, zorder=4)
        success.annotate(
            f"{timeline.outcome} ▼",
            xy=(at, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 6),
            textcoords="offset points",
            ha="right" if at > span * 0.35 else "left",
            va="bottom",
            fontsize=TEXT_PT - 2,
            fontweight="bold",
            color=colour,
            annotation_clip=False,
        )
    _legend(fig, timeline)


def _header(fig: Figure, release: CanaryRelease, timeline: Timeline, colour: str | None) -> None:
    title = clip(f"{release.metadata.name} · {release.metadata.namespace}", _TITLE_CHARS)
    fig.text(0.03, 1 - 14 / HEIGHT_PX, title, fontsize=TITLE_PT, fontweight="bold", va="top")
    start = timeline.start.astimezone(UTC) if timeline.start.tzinfo else timeline.start
    # month names spelled here: strftime's %b follows the process locale
    started = f"{start.day} {_MONTHS[start.month - 1]} {start:%H:%M} UTC"
    took = format_duration((timeline.end - timeline.start).total_seconds())
    sub = f"{_image_change(release)}  ·  {started}, {took}"
    if len(sub) > _TEXT_CHARS:
        sub = f"{_image_change(release)}\n{started}, {took}"
    lines = sub.count("\n") + 1
    fig.text(0.03, 1 - 60 / HEIGHT_PX, sub, fontsize=TEXT_PT - 2, color=NEUTRAL, va="top")
    banner = textwrap.wrap(
        decision_label(timeline), _TEXT_CHARS - 4, max_lines=3 - lines, placeholder=" …"
    )
    fig.text(
        0.03,
        1 - (70 + 30 * lines) / HEIGHT_PX,
        "\n".join(banner),
        fontsize=TEXT_PT,
        fontweight="bold",
        color="white" if colour else NEUTRAL,
        va="top",
        linespacing=1.15,
        bbox={"boxstyle": "round,pad=0.3", "facecolor": colour, "edgecolor": "none"}
        if colour
        else None,
    )


def _success_panel(ax: Axes, timeline: Timeline, gap: float) -> None:
    values = [s.value for s in (*timeline.canary_success, *timeline.stable_success)]
    values += [c.success_rate for c in timeline.checks if c.success_rate is not None]
    floor = _success_floor(values, timeline.success_min)
    ax.set_ylim(floor, 100 + (100 - floor) * 0.05)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.set_ylabel("success %", fontsize=TEXT_PT)
    _series(ax, timeline, timeline.stable_success, STABLE, STABLE_PT, gap)
    _series(ax, timeline, timeline.canary_success, CANARY, LINE_PT, gap)
    if timeline.success_min is not None:
        _threshold(ax, timeline.success_min, f"≥{timeline.success_min:g}")
    failed = [c for c in timeline.checks if not c.ok]
    if failed:
        ax.plot(
            [_seconds(timeline.start, c.at) for c in failed],
            [
                min(max(c.success_rate if c.success_rate is not None else floor, floor), 100)
                for c in failed
            ],
            linestyle="none",
            marker="X",
            markersize=15,
            markerfacecolor=ROLLED_BACK,
            markeredgecolor="white",
            markeredgewidth=1.5,
            zorder=5,
            clip_on=False,
        )
    if not (timeline.canary_success or timeline.stable_success):
        _no_data(ax, timeline)


def _latency_panel(ax: Axes, timeline: Timeline, gap: float) -> None:
    values = [s.value for s in (*timeline.canary_p99_ms, *timeline.stable_p99_ms)]
    if timeline.p99_max_ms is not None:
        values.append(timeline.p99_max_ms)
    top = max(values, default=0.0)
    ax.set_ylim(0, top * 1.15 if top > 0 else 100)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.set_ylabel("p99 ms", fontsize=TEXT_PT)
    _series(ax, timeline, timeline.stable_p99_ms, STABLE, STABLE_PT, gap)
    _series(ax, timeline, timeline.canary_p99_ms, CANARY, LINE_PT, gap)
    if timeline.p99_max_ms is not None:
        _threshold(ax, timeline.p99_max_ms, f"≤{timeline.p99_max_ms:g}")
    if not (timeline.canary_p99_ms or timeline.stable_p99_ms):
        _no_data(ax, timeline)


def _weight_panel(ax: Axes, timeline: Timeline, span: float) -> None:
    steps = timeline.weights
    highest = max([w.weight for w in steps] + [timeline.max_weight or 0, 1])
    ax.set_ylim(0, highest * 1.2)
    ticks = sorted({0, highest})
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.set_ylabel("weight %", fontsize=TEXT_PT)
    if not steps:
        return
    # drawn to the right edge, so the drop to 0 at the decision shows past its line
    xs = [_seconds(timeline.start, w.at) for w in steps] + [span * 1.03]
    ys = [float(w.weight) for w in steps] + [float(steps[-1].weight)]
    ax.fill_between(xs, ys, step="post", color=CANARY, alpha=0.18, linewidth=0)
    ax.step(xs, ys, where="post", color=CANARY, linewidth=LINE_PT, solid_joinstyle="miter")


def _series(
    ax: Axes,
    timeline: Timeline,
    samples: Sequence[Sample],
    colour: str,
    width: float,
    gap: float,
) -> None:
    if not samples:
        return
    xs: list[float] = []
    ys: list[float] = []
    for sample in samples:
        x = _seconds(timeline.start, sample.at)
        if xs and x - xs[-1] > gap:
            # no value for a while (no requests): break the line instead of bridging it
            xs.append(math.nan)
            ys.append(math.nan)
        xs.append(x)
        ys.append(sample.value)
    ax.plot(xs, ys, color=colour, linewidth=width, solid_capstyle="round", zorder=3)


def _threshold(ax: Axes, value: float, label: str) -> None:
    ax.axhline(value, color=THRESHOLD, linewidth=2.5, linestyle=(0, (5, 3)), zorder=2)
    ax.annotate(
        label,
        xy=(1.0, value),
        xycoords=("axes fraction", "data"),
        xytext=(6, 0),
        textcoords="offset points",
        va="center",
        ha="left",
        fontsize=TICK_PT,
        color=THRESHOLD,
        annotation_clip=False,
    )


def _no_data(ax: Axes, timeline: Timeline) -> None:
    text = "no data from Prometheus"
    if timeline.problems:
        text += "\n" + "\n".join(
            textwrap.wrap(timeline.problems[0], 46, max_lines=2, placeholder=" …")
        )
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=TEXT_PT - 2,
        color=NEUTRAL,
    )


def _legend(fig: Figure, timeline: Timeline) -> None:
    handles = [
        Line2D([], [], color=CANARY, linewidth=LINE_PT, label="canary"),
        Line2D([], [], color=STABLE, linewidth=STABLE_PT, label="stable"),
    ]
    if timeline.success_min is not None or timeline.p99_max_ms is not None:
        handles.append(
            Line2D([], [], color=THRESHOLD, linewidth=2.5, linestyle=(0, (5, 3)), label="threshold")
        )
    if any(not c.ok for c in timeline.checks):
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="X",
                markersize=15,
                markerfacecolor=ROLLED_BACK,
                markeredgecolor="white",
                label="failed check",
            )
        )
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 12 / HEIGHT_PX),
        ncol=len(handles),
        frameon=False,
        fontsize=TEXT_PT - 1,
        handlelength=1.6,
        columnspacing=1.4,
    )


def _style(ax: Axes) -> None:
    ax.set_facecolor("white")
    ax.grid(True, color=GRID, linewidth=1.2)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=TICK_PT, width=1.5, length=6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_linewidth(1.5)


def _time_axis(ax: Axes, span: float) -> None:
    spacing = next((s for s in _TICK_SPACINGS if span / s <= 6), _TICK_SPACINGS[-1])
    ax.xaxis.set_major_locator(FixedLocator([i * spacing for i in range(int(span // spacing) + 1)]))
    hours = span >= 3600
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _clock(x, hours)))
    ax.set_xlabel(f"time since start ({'h:mm' if hours else 'm:ss'})", fontsize=TEXT_PT - 2)


# -- small helpers -------------------------------------------------------------------------


def _seconds(start: datetime, at: datetime) -> float:
    return (at - start).total_seconds()


def _clock(seconds: float, hours: bool) -> str:
    whole = round(seconds)
    if hours:
        return f"{whole // 3600}:{whole % 3600 // 60:02d}"
    return f"{whole // 60}:{whole % 60:02d}"


def _success_floor(values: Sequence[float], threshold: float | None) -> float:
    """A y floor just below the lowest value or threshold, on a round number, below 100."""
    candidates = [*values, *([threshold] if threshold is not None else [])]
    low = min(candidates, default=95.0)
    low = min(low, 99.0)
    spread = 100 - low
    unit = 1.0 if spread < 5 else 5.0 if spread < 30 else 10.0
    floor = math.floor((low - max(0.5, spread * 0.08)) / unit) * unit
    return max(0.0, min(floor, 98.0))


def _decision_colour(timeline: Timeline) -> str | None:
    if timeline.outcome == "promoted":
        return PROMOTED
    if timeline.outcome == "rolled back":
        return ROLLED_BACK
    return None


def _image_change(release: CanaryRelease) -> str:
    """``podinfo 6.0.0 → 6.0.3`` for one container; the first and a count for more."""
    changes = []
    for container, new in sorted(release.spec.images.items()):
        old = release.status.stable_images.get(container, "")
        changes.append(_one_change(old, new))
    text = changes[0] if changes else ""
    if len(changes) > 1:
        text += f" (+{len(changes) - 1} more)"
    return clip(text, _TEXT_CHARS)


def _one_change(old: str, new: str) -> str:
    old_repo, old_version = _split_image(old)
    new_repo, new_version = _split_image(new)
    if old and old_repo == new_repo:
        return f"{_short(new_repo)} {old_version.lstrip(':')} → {new_version.lstrip(':')}"
    before = f"{_short(old_repo)}{old_version}" if old else "?"
    return f"{before} → {_short(new_repo)}{new_version}"


def _split_image(ref: str) -> tuple[str, str]:
    """``(repository, ":tag" or "@digest-prefix")``; ``:latest`` when it has neither."""
    named, _, digest = ref.partition("@")
    if digest:
        # a reference may carry both (repo:tag@digest); the digest is what runs
        repo = named.rsplit(":", 1)[0] if ":" in named.rsplit("/", 1)[-1] else named
        return repo, f"@{digest[:19]}…"
    if ":" in named.rsplit("/", 1)[-1]:
        repo, tag = named.rsplit(":", 1)
        return repo, f":{tag}"
    return named, ":latest"


def _short(repo: str) -> str:
    return repo.rsplit("/", 1)[-1]


__all__ = [
    "DPI",
    "HEIGHT_PX",
    "WIDTH_PX",
    "chart_alt_text",
    "decision_label",
    "render_rollout_chart",
]
