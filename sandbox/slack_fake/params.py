"""Parameters as Slack reads them, whether they came form-encoded, as JSON or in the query."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sandbox.slack_fake.records import JSON

# Parameters that Slack takes as JSON, which form-encoded callers send as strings.
JSON_PARAMS = ("blocks", "attachments", "view", "files", "metadata")


def truthy(value: Any) -> bool:
    """A boolean parameter as Slack reads it (``true``, ``1``, ``yes``, or a JSON true)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return False


def str_param(params: Mapping[str, Any], name: str) -> str | None:
    """A string parameter; None when absent or empty."""
    value = params.get(name)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def redacted(params: Mapping[str, Any]) -> JSON:
    """A copy of ``params`` fit for the call records."""
    # Tokens and secrets never reach the records: tests print them on failure.
    return {
        k: ("[redacted]" if k in ("token", "client_secret", "app_token") else copy.deepcopy(v))
        for k, v in params.items()
    }
