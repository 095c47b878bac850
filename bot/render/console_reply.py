"""Replies as terminal text for console mode: the same words, no Slack markup.

Values are shown verbatim: the terminal does not parse markup, so nothing is escaped.
"""

from __future__ import annotations

from bot.render.limits import clip
from bot.render.text import card_text
from bot.reply import Channel, Code, Group, Icon, Line, Link, Mention, Reply, Span, Strong

# Long enough for any listing Operations makes; it bounds what a hostile object can print.
MAX_CONSOLE_TEXT = 8000


def span_text(span: Span) -> str:
    """One span as terminal text."""
    if isinstance(span, str):
        return span
    if isinstance(span, Icon):
        return ""
    if isinstance(span, Code):
        return f"'{span.text}'"
    if isinstance(span, Strong):
        return span.text
    if isinstance(span, Channel):
        return span.channel if span.channel.startswith("#") else f"channel {span.channel}"
    if isinstance(span, Mention):
        return span.name or span.user
    if isinstance(span, Group):
        return f"user group {span.group}"
    if isinstance(span, Link):
        return f"{span.label} ({span.url})"
    raise TypeError(f"not a reply span: {span!r}")


def line_text(line: Line) -> str:
    """One line of spans as terminal text."""
    return "".join(span_text(span) for span in line)


def console_text(reply: Reply) -> str:
    """What the console prints for a reply: the card as text when there is one."""
    lines = [line_text(line) for line in reply.lines]
    if reply.card is not None:
        lines[:1] = [card_text(reply.card.release, reply.card.at)]
    return clip("\n".join(lines), MAX_CONSOLE_TEXT)
