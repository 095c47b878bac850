"""Structured JSON logs: one object per line, with the release a line concerns."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Fields a log call may bind with ``extra=``; anything else in a record is left out.
BOUND_FIELDS = (
    "namespace",
    "release",
    "event",
    "seq",
    "weight",
    "action",
    "user",
    "request",
    "cluster",
)


class JsonFormatter(logging.Formatter):
    """Formats records as JSON; exceptions become a type and message, not a trace dump."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in BOUND_FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            entry["trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", json_lines: bool = True) -> None:
    """Route every logger to stderr, as JSON lines unless asked for plain text."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
