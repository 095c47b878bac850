"""Slack's message limits, checked on every payload before it is sent (and in tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import Block

# Re-exported: the renderers clip with the rule every front shares.
from rollout.text import clip as clip

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_ACTIONS = 25
MAX_HEADER_TEXT = 150
MAX_MESSAGE_TEXT = 40000


class MessageTooLarge(ValueError):
    """A rendered payload breaks one of Slack's limits (a rendering defect)."""


def check_message(blocks: Sequence[Block | dict[str, Any]], text: str = "") -> list[dict[str, Any]]:
    """Validate blocks with slack_sdk's models and Slack's limits; return them as dicts."""
    dicts = [b if isinstance(b, dict) else b.to_dict() for b in blocks]  # to_dict validates
    if len(dicts) > MAX_BLOCKS:
        raise MessageTooLarge(f"{len(dicts)} blocks; Slack allows {MAX_BLOCKS}")
    if len(text) > MAX_MESSAGE_TEXT:
        raise MessageTooLarge(f"text of {len(text)} characters; Slack allows {MAX_MESSAGE_TEXT}")
    for index, block in enumerate(dicts):
        kind = block.get("type")
        if kind == "section":
            body = (block.get("text") or {}).get("text", "")
            if len(body) > MAX_SECTION_TEXT:
                raise MessageTooLarge(f"block {index}: section text of {len(body)} characters")
            fields = block.get("fields") or []
            if len(fields) > MAX_FIELDS:
                raise MessageTooLarge(f"block {index}: {len(fields)} fields")
            for field in fields:
                if len(field.get("text", "")) > MAX_FIELD_TEXT:
                    raise MessageTooLarge(
                        f"block {index}: a field over {MAX_FIELD_TEXT} characters"
                    )
        elif kind == "header":
            if len(block["text"]["text"]) > MAX_HEADER_TEXT:
                raise MessageTooLarge(f"block {index}: header over {MAX_HEADER_TEXT} characters")
        elif kind == "actions":
            if len(block.get("elements", [])) > MAX_ACTIONS:
                raise MessageTooLarge(f"block {index}: more than {MAX_ACTIONS} elements")
        elif kind == "context":
            for element in block.get("elements", []):
                if len(element.get("text", "")) > MAX_SECTION_TEXT:
                    raise MessageTooLarge(f"block {index}: context text too long")
    return dicts
