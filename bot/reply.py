"""A command's answer as structure, so each front renders it in its own markup.

``Operations`` says what happened (``kind``), in lines of spans: plain text, names to
copy, channels, people, links. Nothing here is markup: the Slack renderer
(``bot.render.slack_reply``) escapes every plain span and writes mrkdwn; the console
renderer (``bot.render.console_reply``) writes the same words as terminal text. A value
from a person or the cluster is always a plain span or a ``Code`` span, never markup.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from rollout.models import CanaryRelease

ReplyKind = Literal["ok", "info", "refused", "error"]


@dataclass(frozen=True)
class Icon:
    """A Slack emoji code (``:seedling:``) leading a line; the console leaves it out."""

    code: str


@dataclass(frozen=True)
class Code:
    """A name or command to copy: a code span in Slack, quoted on the console."""

    text: str


@dataclass(frozen=True)
class Strong:
    """A title: bold in Slack, plain on the console."""

    text: str


@dataclass(frozen=True)
class Channel:
    """A Slack channel, by id (``C0123``) or by ``#name`` as configured."""

    channel: str


@dataclass(frozen=True)
class Mention:
    """A person: a mention in Slack when ``user`` is a Slack user id, else their name."""

    user: str
    name: str = ""


@dataclass(frozen=True)
class Group:
    """A Slack user group (``S0123``), mentioned in Slack."""

    group: str


@dataclass(frozen=True)
class Link:
    """A link with a label (shown as the label and the address on the console)."""

    url: str
    label: str


Span = str | Icon | Code | Strong | Channel | Mention | Group | Link
Line = tuple[Span, ...]


@dataclass(frozen=True)
class Card:
    """A release's status card, as of ``at``, shown with the reply."""

    release: CanaryRelease
    at: datetime


@dataclass(frozen=True)
class Reply:
    """What the person who asked sees (ephemeral unless ``public``).

    ``lines[0]`` is the headline; further lines follow it (details, bullets, notes).
    With a ``card``, the headline is the card's: Slack sends it as the message text
    beside the card's blocks, the console prints the card in its place.
    """

    kind: ReplyKind
    lines: tuple[Line, ...]
    card: Card | None = None
    public: bool = False
    # (channel, thread ts) of the release thread the reply is about; Slack adds its link
    thread: tuple[str, str] | None = None

    @property
    def headline(self) -> Line:
        """The first line: what happened."""
        return self.lines[0] if self.lines else ()

    def extended(self, *spans: Span) -> Reply:
        """The same reply with ``spans`` added at the end of its last line."""
        if not self.lines:
            return dataclasses.replace(self, lines=(tuple(spans),))
        return dataclasses.replace(self, lines=(*self.lines[:-1], (*self.lines[-1], *spans)))


def reply(kind: ReplyKind, *spans: Span, more: tuple[Line, ...] = ()) -> Reply:
    """A reply whose headline is ``spans``, followed by the lines in ``more``."""
    return Reply(kind, (tuple(spans), *more))


def warning(*spans: Span, more: tuple[Line, ...] = ()) -> Reply:
    """A refusal of what was asked, led by the warning sign."""
    return reply("refused", Icon(":warning:"), *spans, more=more)


def failure(*spans: Span) -> Reply:
    """An error of ours or of the cluster: nothing was done."""
    return Reply("error", ((Icon(":warning:"), *spans),))


def spans_of(text: str) -> Line:
    """Our own text with `code` spans between backticks (help, parse errors) as spans.

    Only for text canary-bot writes: the parser quotes what a person typed with any
    backtick replaced, so the pairs are always the ones it wrote.
    """
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: keep it as text
        return (text,)
    return tuple(Code(p) if i % 2 else p for i, p in enumerate(parts) if p or i % 2)


def lines_of(text: str) -> tuple[Line, ...]:
    """``spans_of`` for each line of ``text``."""
    return tuple(spans_of(line) for line in text.splitlines())
