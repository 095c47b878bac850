"""Text every front shows the same way: values cut to a limit, validation problems.

One home for both rules: a reason stored in a status, a Slack field, a chart title and a
config error all clip with the same ellipsis and name a bad field the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

ELLIPSIS = "\u2026"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def show_images(images: dict[str, str]) -> str:
    """``podinfod=stefanprodan/podinfo:6.0.3`` (several joined by commas)."""
    return ", ".join(f"{c}={i}" for c, i in sorted(images.items()))


def rolled_back(
    asks: dict[str, str], runs: dict[str, str], at: datetime | None, cause: str
) -> str:
    """A managed Deployment after a rollback, plainly: ``spec asks for X, pods run Y
    (rolled back at T: cause); push a fixed revision or revert``. The Canary's status,
    the card and ``/canary status`` all say it in these words."""
    when = f" at {at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if at is not None else ""
    because = f": {cause}" if cause else ""
    return (
        f"spec asks for {show_images(asks)}, pods run "
        f"{show_images(runs) or 'the previous revision'} (rolled back{when}{because}); "
        "push a fixed revision or revert"
    )


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
