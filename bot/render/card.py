"""The status card: the thread root, updated in place as the release moves.

Built with ``slack_sdk.models.blocks`` as pure functions of the release; every payload
passes ``check_message`` (Slack's limits) in the tests.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.render.facts import (
    PHASE_EMOJI,
    changed_by_text,
    images_change,
    metric_lines,
    progress_bar,
    requester_text,
    rolled_back_text,
    time_line,
)
from bot.render.limits import CheckedBlock, checked, clip
from bot.render.mrkdwn import code, escape
from rollout.actions import actions_for
from rollout.models import CanaryRelease, ControlAction, Phase, is_dns_label

ACTION_PREFIX = "canary_"


@dataclass(frozen=True)
class ButtonSpec:
    """A control button: its action, label, style and confirmation question."""

    action: ControlAction
    label: str
    style: str | None
    confirm: str | None  # None: not destructive, no dialog


BUTTONS: dict[ControlAction, ButtonSpec] = {
    "approve": ButtonSpec("approve", "Approve", "primary", "Approve promotion of {target}?"),
    "promote": ButtonSpec(
        "promote",
        "Promote",
        "primary",
        "Promote {target} now? The remaining analysis is skipped and all traffic moves "
        "to the new version.",
    ),
    "pause": ButtonSpec("pause", "Pause", None, None),
    "resume": ButtonSpec("resume", "Resume", None, None),
    "abort": ButtonSpec(
        "abort",
        "Abort",
        "danger",
        "Abort {target}? All traffic goes back to the stable version and the canary is removed.",
    ),
}


def button_value(release: CanaryRelease) -> str:
    """``[cluster:]namespace/name@seq``: which release, and which version of the card.

    The event sequence pins the click to the card the person saw, so a double click or a
    Slack retry of the same card becomes the same control request id. The cluster (the
    release's ``spec.cluster`` when it is a DNS label) sends a click on a card to the
    cluster it came from when one front serves several.
    """
    meta = release.metadata
    cluster = release.spec.cluster
    prefix = f"{cluster}:" if is_dns_label(cluster) else ""
    return f"{prefix}{meta.namespace}/{meta.name}@{release.status.event_seq}"


@dataclass(frozen=True)
class ButtonTarget:
    """What a button's value names; ``cluster`` is None on a card that names none."""

    cluster: str | None
    namespace: str
    name: str
    seq: int


def parse_button_target(value: str) -> ButtonTarget:
    """Inverse of ``button_value``; raises ``ValueError`` on anything else.

    The value comes back from Slack in a click: the caller still checks the cluster is
    one it serves, and the namespace and name against the cluster.
    """
    head, colon, tail = value.partition(":")
    cluster = head if colon else None
    if cluster is not None and not is_dns_label(cluster):
        raise ValueError(f"not a canary button value: {value[:80]!r}")
    namespace, name, seq = parse_button_value(tail if colon else value)
    return ButtonTarget(cluster, namespace, name, seq)


def parse_button_value(value: str) -> tuple[str, str, int]:
    """``namespace/name@seq`` (no cluster); raises ``ValueError`` on anything else."""
    ref, _, seq = value.partition("@")
    namespace, _, name = ref.partition("/")
    if not namespace or not name or not seq.isdigit() or ":" in ref:
        raise ValueError(f"not a canary button value: {value[:80]!r}")
    return namespace, name, int(seq)


def buttons(release: CanaryRelease) -> list[ButtonElement]:
    """The buttons of the card, with confirmation dialogs for destructive ones."""
    target = release.spec.target_ref.name
    elements = []
    for action in actions_for(release):  # rollout.actions: what the engine takes now
        spec = BUTTONS[action]
        confirm = None
        if spec.confirm is not None:
            confirm = ConfirmObject(
                title=f"{spec.label} {target}?"[:100],
                text=spec.confirm.format(
                    target=escape(f"{target} in {release.metadata.namespace}")
                ),
                confirm=spec.label,
                deny="Cancel",
                style="danger" if spec.style == "danger" else "primary",
            )
        elements.append(
            ButtonElement(
                text=spec.label,
                action_id=f"{ACTION_PREFIX}{action}",
                value=button_value(release),
                style=spec.style,
                confirm=confirm,
            )
        )
    return elements


def headline(release: CanaryRelease) -> str:
    """One line: ``Canary podinfo.test: Progressing at 25%`` (also the notification text).

    Plain text (the card's header); ``headline_mrkdwn`` is the same for message text.
    """
    status = release.status
    line = f"Canary {release.key}: {status.phase.value}"
    if status.phase in (Phase.PROGRESSING, Phase.PAUSED, Phase.WAITING_PROMOTION):
        line += f" at {status.canary_weight}%"
    return line


def headline_mrkdwn(release: CanaryRelease) -> str:
    """``headline`` escaped, for a message's ``text`` (which Slack parses as mrkdwn)."""
    return escape(headline(release))


def route_waiting(release: CanaryRelease) -> str:
    """Which Gateway and condition the route still waits for ('' when none), while the
    release is running (the ``RouteReady`` condition)."""
    if release.status.phase.is_final:
        return ""
    for condition in release.status.conditions:
        if condition.type == "RouteReady" and condition.status == "False":
            return condition.message
    return ""


def _route_blocks(release: CanaryRelease) -> list[Block]:
    route = route_waiting(release)
    if not route:
        return []
    text = f":hourglass_flowing_sand: *Route not in force yet*: {escape(route)}"
    return [SectionBlock(text=MarkdownTextObject(text=clip(text, 3000)))]


def _who(release: CanaryRelease) -> str:
    changed_by = changed_by_text(release, slack=True)
    if changed_by is not None:
        return f"*Changed by*\n{changed_by}"
    return f"*Requested by*\n{requester_text(release, slack=True)}"


def _analysis_block(release: CanaryRelease) -> Block:
    """Each metric's last value against its threshold (or that there are none)."""
    lines = metric_lines(release)
    if lines:
        rendered = []
        for line in lines:
            mark = (
                ":white_circle:"
                if line.ok is None
                else (":large_green_circle:" if line.ok else ":red_circle:")
            )
            text = (
                f"{mark} *{escape(line.name)}* {escape(line.value)} (want {escape(line.threshold)})"
            )
            if line.message and not line.ok:
                text += f" — {escape(line.message)}"
            rendered.append(text)
        return SectionBlock(
            text=MarkdownTextObject(text=clip("*Analysis*\n" + "\n".join(rendered), 3000))
        )
    return ContextBlock(
        elements=[MarkdownTextObject(text="No metrics configured: weights advance on schedule.")]
    )


# The card's fields, in order; the time is the only one that changes without a new
# resourceVersion (it counts up), so a cached card replaces only that field.
TIME_FIELD = 3
CARD_CACHE_SIZE = 512


def _field_texts(release: CanaryRelease, time_text: str) -> list[str]:
    status, analysis = release.status, release.spec.analysis
    emoji = PHASE_EMOJI.get(status.phase, "")
    max_weight = analysis.max_weight
    weight_line = (
        f"`{progress_bar(status.canary_weight, max_weight)}` "
        f"{status.canary_weight}% (max {max_weight}%)"
    )
    texts = [
        f"*Phase*\n{emoji} {status.phase.value}",
        f"*Canary weight*\n{weight_line}",
        f"*Failed checks*\n{status.failed_checks} / {analysis.threshold}",
        _time_field(time_text),
        # a revision of a protected Deployment was asked for by whoever changed it
        _who(release),
    ]
    if release.spec.cluster:  # named in the config (`cluster:`); nothing to say otherwise
        texts.append(f"*Cluster*\n{escape(release.spec.cluster)}")
    return [clip(text, 2000) for text in texts]


def _time_field(time_text: str) -> str:
    return clip(f"*Time*\n{time_text}", 2000)


def _build(release: CanaryRelease, time_text: str, with_buttons: bool) -> list[Block]:
    """The card's blocks, built from the models (``card_blocks`` caches the result)."""
    status = release.status
    fields = _field_texts(release, time_text)
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(headline(release), 150), emoji=True)),
        SectionBlock(
            text=MarkdownTextObject(
                text=clip(
                    f"*{escape(release.spec.target_ref.name)}* in "
                    f"{code(release.metadata.namespace)} (release {code(release.metadata.name)})\n"
                    + "\n".join(code(line) for line in images_change(release)),
                    3000,
                )
            )
        ),
        SectionBlock(fields=[MarkdownTextObject(text=text) for text in fields]),
    ]
    blocks.append(_analysis_block(release))
    blocks.extend(_route_blocks(release))
    if status.message:
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=clip(escape(status.message), 3000))])
        )
    rolled_back = rolled_back_text(release)
    if rolled_back is not None:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(text=clip(f":rewind: {escape(rolled_back)}", 3000))
            )
        )
    if with_buttons:
        elements = buttons(release)
        if elements:
            blocks.append(ActionsBlock(block_id="canary_controls", elements=list(elements)))
    return blocks


# Which object a card was built from: the API server gives every change of an object a
# new resourceVersion; the phase and event sequence guard against an in-memory copy
# that was changed without being written.
_CardKey = tuple[str, str, str, str, int, bool]


@dataclass(frozen=True)
class _CachedCard:
    """A card's blocks, checked once; the fields block has the time left to fill in."""

    blocks: tuple[CheckedBlock, ...]
    fields_at: int  # index of the fields block in ``blocks``

    def with_time(self, time_text: str) -> list[Block]:
        shared = self.blocks[self.fields_at].to_dict()
        fields = list(shared["fields"])
        fields[TIME_FIELD] = {**fields[TIME_FIELD], "text": _time_field(time_text)}
        payload = {**shared, "fields": fields}
        blocks: list[Block] = list(self.blocks)
        blocks[self.fields_at] = CheckedBlock(payload)
        return blocks


_cards: OrderedDict[_CardKey, _CachedCard] = OrderedDict()


def _cache_key(release: CanaryRelease, with_buttons: bool) -> _CardKey | None:
    meta, status = release.metadata, release.status
    if not meta.uid or not meta.resource_version:
        return None  # not read from the API server: nothing says it is unchanged
    return (
        meta.uid,
        meta.resource_version,
        status.phase.value,
        meta.name,
        status.event_seq,
        with_buttons,
    )


def card_blocks(release: CanaryRelease, now: datetime, *, with_buttons: bool = True) -> list[Block]:
    """The status card's blocks.

    Built and checked once per state of the release (its resourceVersion) and then
    reused with the elapsed time filled in: a busy channel and many ``/canary status``
    requests ask for the same card many times. The blocks are ``CheckedBlock``s then,
    so ``check_message`` does not validate them again.
    """
    time_text = time_line(release, now)
    key = _cache_key(release, with_buttons)
    if key is None:
        return _build(release, time_text, with_buttons)
    cached = _cards.get(key)
    if cached is None:
        blocks = checked(_build(release, "", with_buttons))
        fields_at = next(i for i, b in enumerate(blocks) if "fields" in b.to_dict())
        cached = _cards[key] = _CachedCard(tuple(blocks), fields_at)
        if len(_cards) > CARD_CACHE_SIZE:
            _cards.popitem(last=False)
    else:
        _cards.move_to_end(key)
    return cached.with_time(time_text)
