"""Text every front shows the same way: values cut to a limit, validation problems.

One home for both rules: a reason stored in a status, a Slack field, a chart title and a
config error all clip with the same ellipsis and name a bad field the same way.
"""

from __future__ import annotations

from pydantic import ValidationError

ELLIPSIS = "\u2026"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def validation_problems(error: ValidationError, *, unknown_field: str | None = None) -> list[str]:
    """One readable line per problem: ``spec.analysis.maxWeight: must be ...``.

    ``unknown_field`` replaces pydantic's message for a field the model does not have
    (e.g. a hint to check the spelling against the documented fields).
    """
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if unknown_field is not None and item["type"] == "extra_forbidden":
            message = unknown_field
        lines.append(f"{where}: {message}" if where else message)
    return lines
