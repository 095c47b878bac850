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


class CheckedBlock(Block):
    """A block that ``check_message`` already converted and checked.

    ``to_dict`` hands out that payload instead of validating the models again, and
    ``check_message`` does not check it twice: a card built once per release state
    (``bot.render.card``) is validated once, however often it is shown. The payload is
    shared by every message that shows the block: read it, never change it.
    """

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(type=payload.get("type"), block_id=payload.get("block_id"))
        self._payload = payload

    def to_dict(self, *args: Any) -> dict[str, Any]:
        """The checked payload itself (shared, read-only)."""
        return self._payload


def checked(blocks: Sequence[Block | dict[str, Any]], text: str = "") -> list[CheckedBlock]:
    """``blocks`` checked as ``check_message`` does, kept as ``CheckedBlock``s."""
    return [CheckedBlock(payload) for payload in check_message(blocks, text)]


def check_message(blocks: Sequence[Block | dict[str, Any]], text: str = "") -> list[dict[str, Any]]:
    """Validate blocks with slack_sdk's models and Slack's limits; return them as dicts.

    ``CheckedBlock``s passed their checks when they were made; they count toward the
    number of blocks only.
    """
    dicts = [b if isinstance(b, dict) else b.to_dict() for b in blocks]  # to_dict validates
    if len(dicts) > MAX_BLOCKS:
        raise MessageTooLarge(f"{len(dicts)} blocks; Slack allows {MAX_BLOCKS}")
    if len(text) > MAX_MESSAGE_TEXT:
        raise MessageTooLarge(f"text of {len(text)} characters; Slack allows {MAX_MESSAGE_TEXT}")
    for index, (original, block) in enumerate(zip(blocks, dicts, strict=True)):
        if not isinstance(original, CheckedBlock):
            _check_block(index, block)
    return dicts


def _check_block(index: int, block: dict[str, Any]) -> None:
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
                raise MessageTooLarge(f"block {index}: a field over {MAX_FIELD_TEXT} characters")
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

