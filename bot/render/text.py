"""The status card as plain text: console mode and the screenshot-like dump."""

from __future__ import annotations

from datetime import datetime

from bot.render.card import headline
from bot.render.facts import (
    changed_by_text,
    images_change,
    metric_lines,
    progress_bar,
    requester_text,
    rolled_back_text,
    time_line,
)
from rollout.actions import actions_for
from rollout.models import CanaryRelease, RolloutEvent


def card_text(release: CanaryRelease, now: datetime) -> str:
    """The same facts as the Block Kit card, as aligned text lines."""
    status, analysis = release.status, release.spec.analysis
    rows = [
        ("target", f"{release.spec.target_ref.name} in {release.metadata.namespace}"),
        ("release", release.metadata.name),
        *(("image", line) for line in images_change(release)),
        ("phase", status.phase.value),
        (
            "weight",
            f"[{progress_bar(status.canary_weight, analysis.max_weight)}] "
            f"{status.canary_weight}% (max {analysis.max_weight}%)",
        ),
        ("failed", f"{status.failed_checks} / {analysis.threshold} checks"),
        ("time", time_line(release, now)),
        _who(release),
    ]
    if release.spec.cluster:
        rows.append(("cluster", release.spec.cluster))
    for line in metric_lines(release):
        mark = "…" if line.ok is None else ("ok" if line.ok else "FAIL")
        rows.append(("metric", f"{line.text()} {mark}"))
    if status.message:
        rows.append(("note", status.message))
    rolled_back = rolled_back_text(release)
    if rolled_back is not None:
        rows.append(("state", rolled_back))
    actions = actions_for(release)
    if actions:
        rows.append(("actions", " | ".join(actions)))
    width = max(len(label) for label, _ in rows)
    lines = [headline(release), "-" * len(headline(release))]
    lines += [f"{label.rjust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)


def _who(release: CanaryRelease) -> tuple[str, str]:
    changed_by = changed_by_text(release, slack=False)
    if changed_by is not None:
        return ("changed by", changed_by)
    return ("by", requester_text(release, slack=False))


def event_line(release: CanaryRelease, event: RolloutEvent) -> str:
    """One event as a console line: ``[podinfo-x.test] #3 StepAdvanced 10%: message``."""
    return (
        f"[{release.key}] #{event.seq} {event.type} {event.weight}% "
        f"{event.severity}: {event.message}"
    )
