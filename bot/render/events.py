"""Thread replies for rollout events, the channel alert for failures, audit lines."""

from __future__ import annotations

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.render.facts import metric_lines, requester_text
from bot.render.limits import clip
from bot.render.mrkdwn import escape, mention
from rollout.models import CanaryRelease, ControlAction, RolloutEvent

EVENT_EMOJI: dict[str, str] = {
    "Started": ":seedling:",
    "Initialized": ":hourglass_flowing_sand:",
    "Waiting": ":hourglass_flowing_sand:",
    "StepAdvanced": ":arrow_up:",
    "Halted": ":warning:",
    "WaitingApproval": ":raised_hand:",
    "Paused": ":double_vertical_bar:",
    "Resumed": ":arrow_forward:",
    "Approved": ":ok_hand:",
    "Promoting": ":rocket:",
    "Promoted": ":white_check_mark:",
    "RolledBack": ":rewind:",
    "Refused": ":no_entry:",
    "Control": ":joystick:",
}
SEVERITY_EMOJI = {"warning": ":warning:", "error": ":rotating_light:"}


def is_failure(event: RolloutEvent) -> bool:
    """Whether the event means the release failed (alert the channel)."""
    return event.type == "RolledBack" or event.severity == "error"


def event_text(event: RolloutEvent) -> str:
    """The reply's text: emoji, message, and the measured details."""
    emoji = EVENT_EMOJI.get(event.type) or SEVERITY_EMOJI.get(
        event.severity, ":information_source:"
    )
    text = f"{emoji} {escape(event.message)}"
    if event.details:
        text += "\n" + _details(event)
    return clip(text, 3000)


def _details(event: RolloutEvent) -> str:
    """``• key: value`` lines (keys and values come from the cluster: escaped)."""
    return "\n".join(
        f"• {escape(key)}: {escape(value)}" for key, value in sorted(event.details.items())
    )


def event_reply(event: RolloutEvent) -> tuple[str, list[Block]]:
    """A thread reply for one event: fallback text and blocks."""
    text = event_text(event)
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=text))]
    footer = f"weight {event.weight}%"
    if event.phase is not None:
        footer += f" · {event.phase.value}"
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=footer)]))
    return clip(escape(event.message), 3000), blocks


def failure_alert(
    release: CanaryRelease, event: RolloutEvent, thread_link: str
) -> tuple[str, list[Block]]:
    """Top-level channel alert: whom it concerns, what failed, the measured values, the thread."""
    who = requester_text(release, slack=True)
    cluster = f" on {escape(release.spec.cluster)}" if release.spec.cluster else ""
    text = (
        f":rotating_light: {who} canary {escape(release.key)}{cluster} failed: "
        f"{escape(event.message)}"
    )
    body = text
    if event.details:
        body += "\n" + _details(event)
    # The measured values that failed, so nobody has to open the thread to see why.
    failing = [line for line in metric_lines(release) if line.ok is False]
    if failing:
        body += "\n" + "\n".join(f"• last {escape(line.text())}" for line in failing)
    if thread_link.startswith(("https://", "http://")) and not set("<>|") & set(thread_link):
        body += f"\n<{thread_link}|Open the release thread>"
    elif thread_link:
        body += f"\n{escape(thread_link)}"
    return clip(text, 3000), [SectionBlock(text=MarkdownTextObject(text=clip(body, 3000)))]


AUDIT_VERB: dict[ControlAction, str] = {
    "abort": "aborted",
    "promote": "promoted",
    "pause": "paused",
    "resume": "resumed",
    "approve": "approved",
}


def audit_line(action: ControlAction, user: str, reason: str = "", user_name: str = "") -> str:
    """``:joystick: aborted by <@U123>: reason`` — posted in the thread when someone steers.

    The reason is the person's own text: escaped, so it cannot mention or link anything.
    """
    line = f":joystick: {AUDIT_VERB[action]} by {mention(user, user_name) or 'someone'}"
    if reason:
        line += f": {escape(clip(reason, 500))}"
    return line
