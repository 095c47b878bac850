"""Facts about a release that every rendering shows the same way (text, no markup)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.render.mrkdwn import escape, is_user_id, mention
from rollout.models import CanaryRelease, Phase, format_duration
from rollout.text import rolled_back

PHASE_EMOJI: dict[Phase, str] = {
    Phase.INITIALIZING: ":hourglass_flowing_sand:",
    Phase.INITIALIZED: ":hourglass_flowing_sand:",
    Phase.WAITING: ":hourglass_flowing_sand:",
    Phase.PROGRESSING: ":arrows_counterclockwise:",
    Phase.WAITING_PROMOTION: ":raised_hand:",
    Phase.PROMOTING: ":rocket:",
    Phase.FINALISING: ":rocket:",
    Phase.SUCCEEDED: ":white_check_mark:",
    Phase.FAILED: ":x:",
    Phase.PAUSED: ":double_vertical_bar:",
}


def progress_bar(weight: int, max_weight: int, width: int = 20) -> str:
    """``▰▰▰▱▱…`` showing ``weight`` of 100 % with ``max_weight`` marked as the goal."""
    weight = max(0, min(100, weight))
    filled = round(weight * width / 100)
    goal = max(filled, round(max(0, min(100, max_weight)) * width / 100))
    return "▰" * filled + "▱" * (goal - filled) + "·" * (width - goal)


def images_change(release: CanaryRelease) -> list[str]:
    """One ``container: old → new`` line per container."""
    lines = []
    for container, new in sorted(release.spec.images.items()):
        old = release.status.stable_images.get(container)
        lines.append(f"{container}: {old} → {new}" if old else f"{container}: → {new}")
    return lines


def elapsed_seconds(release: CanaryRelease, now: datetime) -> float | None:
    """Seconds since the release started (until it ended, when it has)."""
    start = release.status.started_at or release.metadata.creation_timestamp
    if start is None:
        return None
    end = release.status.finished_at if release.status.phase.is_final else None
    return max(0.0, ((end or now) - start).total_seconds())


def remaining_seconds(release: CanaryRelease) -> float | None:
    """Estimated seconds to promotion if every check passes (None when not estimable)."""
    status, analysis = release.status, release.spec.analysis
    if status.phase.is_final or status.phase in (Phase.PAUSED, Phase.WAITING_PROMOTION):
        return None
    interval = analysis.interval_seconds
    if status.phase in (Phase.PROMOTING, Phase.FINALISING):
        return interval
    if analysis.iterations is not None:
        steps = max(0, analysis.iterations - status.iterations)
    else:
        steps = len([w for w in analysis.weights() if w > status.canary_weight])
    return (steps + 1) * interval


def time_line(release: CanaryRelease, now: datetime) -> str:
    """``elapsed 1m20s · about 2m left`` or ``took 3m10s`` when finished."""
    elapsed = elapsed_seconds(release, now)
    if elapsed is None:
        return "not started yet"
    if release.status.phase.is_final:
        return f"took {format_duration(elapsed)}"
    remaining = remaining_seconds(release)
    if release.status.phase is Phase.PAUSED:
        return f"elapsed {format_duration(elapsed)} · paused"
    if release.status.phase is Phase.WAITING_PROMOTION:
        return f"elapsed {format_duration(elapsed)} · waiting for approval"
    if remaining is None:
        return f"elapsed {format_duration(elapsed)}"
    return f"elapsed {format_duration(elapsed)} · about {format_duration(remaining)} left"


@dataclass(frozen=True)
class MetricLine:
    """One metric's last value against its threshold."""

    name: str
    value: str
    threshold: str
    ok: bool | None  # None: not measured yet
    message: str

    def text(self) -> str:
        """``request-success-rate 99.2 (>= 99)``."""
        return f"{self.name} {self.value} ({self.threshold})"


def _format_value(value: float | None) -> str:
    if value is None:
        return "no value"
    return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"


def metric_lines(release: CanaryRelease) -> list[MetricLine]:
    """Each analysed metric: last measurement if any, else its threshold only."""
    measured = {m.name: m for m in release.status.metrics}
    lines = []
    for metric in release.spec.analysis.metrics:
        threshold = metric.threshold_range.describe()
        last = measured.pop(metric.name, None)
        if last is None:
            lines.append(MetricLine(metric.name, "not measured yet", threshold, None, ""))
        else:
            lines.append(
                MetricLine(
                    metric.name,
                    _format_value(last.value),
                    last.threshold or threshold,
                    last.ok,
                    last.message,
                )
            )
    for last in measured.values():  # measured but no longer in the spec: still show it
        lines.append(
            MetricLine(last.name, _format_value(last.value), last.threshold, last.ok, last.message)
        )
    return lines


def requester_text(release: CanaryRelease, *, slack: bool) -> str:
    """Who asked: a Slack mention, a name, or the door it came through.

    With ``slack``, the result is mrkdwn: a mention only when ``requestedBy.user`` is a
    valid Slack user id (anyone who can write a CanaryRelease can write anything there),
    otherwise the name as escaped plain text.
    """
    who = release.spec.requested_by
    if slack and who.source == "slack" and is_user_id(who.user):
        return mention(who.user)
    plain = who.user_name or who.user or f"({who.source})"
    return escape(plain) if slack else plain


# Field managers of the tools that change pod templates, and the tool's name.
_TOOLS = {
    "kustomize-controller": "Flux",
    "helm-controller": "Flux",
    "argocd-controller": "Argo CD",
    "argocd-application-controller": "Argo CD",
    "argocd-server": "Argo CD",
}
_START_PREFIX = "canary-bot-start/"


def changed_by_text(release: CanaryRelease, *, slack: bool) -> str | None:
    """Who changed the Deployment's pod template (its field manager), None if unknown.

    ``kubectl-set``, ``kustomize-controller (Flux)``, ``argocd-controller (Argo CD)``,
    ``helm``; a ``/canary start`` write names its Slack user. With ``slack``, mrkdwn
    (anyone who can change a Deployment picks the field manager's name: escaped).
    """
    manager = release.spec.changed_by
    if not manager:
        return None
    if manager.startswith(_START_PREFIX):
        user = manager[len(_START_PREFIX) :]
        if is_user_id(user):
            who = mention(user) if slack else user
            return f"{who} with /canary start"
    tool = _TOOLS.get(manager)
    plain = f"{manager} ({tool})" if tool else manager
    return escape(plain) if slack else plain


def rolled_back_text(release: CanaryRelease) -> str | None:
    """A managed Deployment's state after a rollback, plainly (text, no markup).

    ``spec asks for podinfod=…:6.0.4, pods run podinfod=…:6.0.3 (rolled back at …:
    cause); push a fixed revision or revert``: the sentence the revision loop writes into
    the Canary's status, built from the release's own spec and status. None unless the
    release came from a Canary and failed.
    """
    status = release.status
    if release.spec.canary_ref is None or status.phase is not Phase.FAILED:
        return None
    at = status.finished_at or status.phase_since
    cause = status.reason or status.message
    return rolled_back(dict(release.spec.images), dict(status.stable_images), at, cause)
