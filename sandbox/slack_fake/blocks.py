"""Block Kit validation: the limits Slack enforces on blocks and modal views."""

from __future__ import annotations

from typing import Any

from sandbox.slack_fake.errors import ApiError

# Slack's documented limits.
MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100

TEXT_TYPES = ("plain_text", "mrkdwn")
INTERACTIVE_ELEMENTS = frozenset(
    {
        "button",
        "checkboxes",
        "datepicker",
        "datetimepicker",
        "timepicker",
        "overflow",
        "radio_buttons",
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_external_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
        "plain_text_input",
        "email_text_input",
        "url_text_input",
        "number_input",
        "rich_text_input",
        "file_input",
        "workflow_button",
    }
)
BLOCK_TYPES = frozenset(
    {
        "section",
        "actions",
        "context",
        "divider",
        "header",
        "image",
        "input",
        "rich_text",
        "markdown",
        "file",
        "video",
        "table",
        "context_actions",
    }
)


class _BlockErrors:
    """Collects Slack-style error strings: ``<what> [json-pointer:<where>]``."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def text(self, obj: Any, pointer: str, *, max_len: int, plain_only: bool = False) -> None:
        """Check a required text object; Slack reports the schema mismatch, then the cause."""
        if obj is None:
            parent, _, name = pointer.rpartition("/")
            self.add(f"missing required field: {name}", parent or "/")
            return
        causes: list[tuple[str, str]] = []
        allowed = ("plain_text",) if plain_only else TEXT_TYPES
        if not isinstance(obj, dict):
            causes.append(("must be an object", pointer))
        else:
            if obj.get("type") not in allowed:
                causes.append((f"must be one of: {', '.join(allowed)}", f"{pointer}/type"))
            value = obj.get("text")
            if not isinstance(value, str):
                causes.append(("must be a string", f"{pointer}/text"))
            elif len(value) == 0:
                causes.append(("must be more than 0 characters", f"{pointer}/text"))
            elif len(value) > max_len:
                causes.append((f"must be less than {max_len + 1} characters", f"{pointer}/text"))
        if causes:
            self.add("failed to match all allowed schemas", pointer)
            for message, where in causes:
                self.add(message, where)

    def max_len(self, value: Any, pointer: str, limit: int) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.add(f"must be less than {limit + 1} characters", pointer)

    def items(self, value: Any, pointer: str, *, limit: int, minimum: int = 1) -> list[Any]:
        if not isinstance(value, list):
            self.add("must be an array", pointer)
            return []
        if len(value) > limit:
            self.add(f"no more than {limit} items allowed", pointer)
        elif len(value) < minimum:
            self.add(f"must provide at least {minimum} items", pointer)
        return value

    def confirm(self, obj: Any, pointer: str) -> None:
        if obj is None:
            return
        if not isinstance(obj, dict):
            self.add("must be an object", pointer)
            return
        self.text(obj.get("title"), f"{pointer}/title", max_len=100, plain_only=True)
        self.text(obj.get("text"), f"{pointer}/text", max_len=300)
        self.text(obj.get("confirm"), f"{pointer}/confirm", max_len=30, plain_only=True)
        self.text(obj.get("deny"), f"{pointer}/deny", max_len=30, plain_only=True)

    def element(self, el: Any, pointer: str, action_ids: set[str]) -> None:
        if not isinstance(el, dict):
            self.add("must be an object", pointer)
            return
        kind = el.get("type")
        if kind == "image":
            self.max_len(el.get("alt_text"), f"{pointer}/alt_text", 2000)
            return
        if kind not in INTERACTIVE_ELEMENTS:
            self.add(f"unsupported type: {kind}", f"{pointer}/type")
            return
        action_id = el.get("action_id")
        if isinstance(action_id, str):
            self.max_len(action_id, f"{pointer}/action_id", 255)
            if action_id in action_ids:
                self.add(f"duplicate action_id: {action_id}", f"{pointer}/action_id")
            action_ids.add(action_id)
        if kind == "button":
            self.text(el.get("text"), f"{pointer}/text", max_len=75, plain_only=True)
            self.max_len(el.get("value"), f"{pointer}/value", 2000)
            self.max_len(el.get("url"), f"{pointer}/url", 3000)
            style = el.get("style")
            if style is not None and style not in ("primary", "danger"):
                self.add("must be one of: primary, danger", f"{pointer}/style")
        if kind in ("static_select", "multi_static_select", "overflow", "radio_buttons"):
            limit = 5 if kind == "overflow" else (10 if kind == "radio_buttons" else 100)
            options = el.get("options")
            if options is not None or el.get("option_groups") is None:
                self.items(options, f"{pointer}/options", limit=limit)
        self.confirm(el.get("confirm"), f"{pointer}/confirm")


def validate_blocks(blocks: Any, *, limit: int = MESSAGE_BLOCK_LIMIT) -> list[str]:
    """Check ``blocks`` against Block Kit's limits; return Slack-style errors (empty if valid).

    Covers what a status card can trip over: 50 blocks per message (100 in a view),
    section text 3000 characters, 10 fields of 2000, 25 elements per actions block,
    10 per context block, header 150, button text 75 and value 2000, confirm dialogs,
    block_id 255 and unique, action_id 255 and unique.
    """
    errs = _BlockErrors()
    items = errs.items(blocks, "/blocks", limit=limit, minimum=0)
    if errs.errors:
        return errs.errors
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for index, block in enumerate(items):
        ptr = f"/blocks/{index}"
        if not isinstance(block, dict):
            errs.add("must be an object", ptr)
            continue
        kind = block.get("type")
        if kind not in BLOCK_TYPES:
            errs.add("failed to match all allowed schemas", ptr)
            errs.add(f"unsupported type: {kind}", f"{ptr}/type")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id:
                errs.add("must be a non-empty string", f"{ptr}/block_id")
            else:
                errs.max_len(block_id, f"{ptr}/block_id", 255)
                if block_id in block_ids:
                    errs.add(f"duplicate block_id: {block_id}", f"{ptr}/block_id")
                block_ids.add(block_id)
        if kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and fields is None:
                errs.add("must provide either text or fields", ptr)
            if text is not None:
                errs.text(text, f"{ptr}/text", max_len=3000)
            if fields is not None:
                for i, f in enumerate(errs.items(fields, f"{ptr}/fields", limit=10)):
                    errs.text(f, f"{ptr}/fields/{i}", max_len=2000)
            if block.get("accessory") is not None:
                errs.element(block["accessory"], f"{ptr}/accessory", action_ids)
        elif kind == "header":
            errs.text(block.get("text"), f"{ptr}/text", max_len=150, plain_only=True)
        elif kind == "actions":
            for i, el in enumerate(errs.items(block.get("elements"), f"{ptr}/elements", limit=25)):
                errs.element(el, f"{ptr}/elements/{i}", action_ids)
        elif kind == "context":
            for i, el in enumerate(errs.items(block.get("elements"), f"{ptr}/elements", limit=10)):
                if isinstance(el, dict) and el.get("type") in TEXT_TYPES:
                    errs.text(el, f"{ptr}/elements/{i}", max_len=3000)
                else:
                    errs.element(el, f"{ptr}/elements/{i}", action_ids)
        elif kind == "image":
            if not block.get("image_url") and not block.get("slack_file"):
                errs.add("missing required field: image_url", ptr)
            alt = block.get("alt_text")
            if not isinstance(alt, str) or not alt:
                errs.add("missing required field: alt_text", ptr)
            errs.max_len(alt, f"{ptr}/alt_text", 2000)
            if block.get("title") is not None:
                errs.text(block["title"], f"{ptr}/title", max_len=2000, plain_only=True)
        elif kind == "input":
            errs.text(block.get("label"), f"{ptr}/label", max_len=2000, plain_only=True)
            if block.get("element") is None:
                errs.add("missing required field: element", ptr)
            else:
                errs.element(block["element"], f"{ptr}/element", action_ids)
        elif kind == "markdown":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                errs.add("missing required field: text", ptr)
            errs.max_len(text, f"{ptr}/text", 12_000)
    return errs.errors


def check_blocks(blocks: Any) -> None:
    """Raise Slack's ``invalid_blocks`` error (errors and json-pointers) unless ``blocks`` pass."""
    errors = validate_blocks(blocks)
    if errors:
        raise ApiError(
            "invalid_blocks",
            errors=errors,
            response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
        )


def validate_view(view: Any) -> list[str]:
    """Check a modal view; return ``invalid_arguments`` messages (empty if valid)."""
    if not isinstance(view, dict):
        return ["failed to match all allowed schemas [json-pointer:/view]"]
    errs = _BlockErrors()
    kind = view.get("type")
    if kind not in ("modal", "home"):
        errs.add("must be one of: modal, home", "/view/type")
    if kind == "modal":
        errs.text(view.get("title"), "/view/title", max_len=24, plain_only=True)
        for key in ("submit", "close"):
            if view.get(key) is not None:
                errs.text(view[key], f"/view/{key}", max_len=24, plain_only=True)
        blocks = view.get("blocks") or []
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and view.get("submit") is None:
            errs.add("must provide submit argument when using input blocks", "/view")
    errs.max_len(view.get("private_metadata"), "/view/private_metadata", 3000)
    errs.max_len(view.get("callback_id"), "/view/callback_id", 255)
    errs.max_len(view.get("external_id"), "/view/external_id", 255)
    block_errors = validate_blocks(view.get("blocks", []), limit=VIEW_BLOCK_LIMIT)
    messages = errs.errors + [
        e.replace("[json-pointer:/blocks", "[json-pointer:/view/blocks") for e in block_errors
    ]
    if messages:
        messages.insert(0, "failed to match all allowed schemas [json-pointer:/view]")
    return messages
