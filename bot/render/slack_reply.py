"""Replies as Slack messages: mrkdwn text and blocks.

Every plain span is escaped (``bot.render.mrkdwn``), so a release name, reason or user
value someone typed is shown as typed and never mentions, links or formats anything.
"""

from __future__ import annotations

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.render.card import card_blocks
from bot.render.limits import MAX_SECTION_TEXT, clip
from bot.render.mrkdwn import code, escape, mention
from bot.reply import Channel, Code, Group, Icon, Line, Mention, Reply, Span, Strong


def span_mrkdwn(span: Span) -> str:
    """One span as mrkdwn."""
    if isinstance(span, str):
        return escape(span)
    if isinstance(span, Icon):
        return f"{span.code} "
    if isinstance(span, Code):
        return code(span.text)
    if isinstance(span, Strong):
        return f"*{escape(span.text)}*"
    if isinstance(span, Channel):
        if span.channel.startswith("#"):
            return escape(span.channel)
        return f"<#{escape(span.channel)}>"
    if isinstance(span, Mention):
        return mention(span.user, span.name)
    if isinstance(span, Group):
        return f"<!subteam^{escape(span.group)}>"
    # a Link: only a well-formed address becomes one; the label is text either way
    if span.url.startswith(("https://", "http://")) and not set("<>|") & set(span.url):
        return f"<{span.url}|{escape(span.label)}>"
    return escape(span.label)


def line_mrkdwn(line: Line) -> str:
    """One line of spans as mrkdwn."""
    return "".join(span_mrkdwn(span) for span in line)


def slack_text(reply: Reply) -> str:
    """The message text (also the notification): every line, within a section's limit."""
    return clip("\n".join(line_mrkdwn(line) for line in reply.lines), MAX_SECTION_TEXT)


def slack_blocks(reply: Reply) -> list[Block]:
    """The message blocks: the card with the lines after its headline, or the text."""
    if reply.card is None:
        return [SectionBlock(text=MarkdownTextObject(text=slack_text(reply)))]
    blocks = card_blocks(reply.card.release, reply.card.at)
    for line in reply.lines[1:]:
        text = clip(line_mrkdwn(line), MAX_SECTION_TEXT)
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=text)]))
    return blocks
