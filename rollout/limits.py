"""Bounds on every value a CanaryRelease holds, and the duration grammar they use.

Two kinds of bound. What an author writes in ``spec`` is refused when out of bounds
(``Field`` limits, ``DurationRange``), by the models and, through ``hack/gen_crd.py``, by
the API server. What the engine writes in ``status`` is cut to its bound (``Clipped``),
never refused, so a long message can neither make a status unwritable nor a stored one
unreadable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")

# Durations longer than this are refused before any arithmetic: a number of hundreds of
# digits must be a ValueError like any other bad input, never an OverflowError.
MAX_DURATION_LENGTH = 20


def parse_duration(text: str) -> float:
    """Parse a Go-style duration such as ``10s``, ``1m``, ``1m30s`` or ``500ms`` to seconds.

    Raises ``ValueError`` (and nothing else) for anything that is not such a duration.
    """
    if len(text) > MAX_DURATION_LENGTH:
        raise ValueError(
            f"{text[:MAX_DURATION_LENGTH]!r}... is not a duration: longer than "
            f"{MAX_DURATION_LENGTH} characters; use e.g. 30s, 1m, 2m30s"
        )
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(
            f"{text!r} is not a duration; use a number with a unit, e.g. 30s, 1m, 2m30s"
        )
    hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    total_ms = ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis
    return total_ms / 1000


def show_duration(seconds: float) -> str:
    """A bound as people (and CEL's ``duration()``) read it: ``100ms``, ``1s``, ``24h``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return format_duration(seconds)


@dataclass(frozen=True)
class DurationRange:
    """Bounds of a duration field, in seconds: ``Annotated[str, DurationRange(1, 86400)]``.

    The model refuses a duration outside them; ``hack/gen_crd.py`` reads them from the
    JSON schema (``x-duration``) and writes the same bounds into the CRD as a CEL rule.
    """

    minimum: float
    maximum: float

    def check(self, value: str) -> str:
        """``value`` if it is a duration within the bounds, else ``ValueError``."""
        seconds = parse_duration(value)
        if not self.minimum <= seconds <= self.maximum:
            raise ValueError(
                f"{value!r} is out of range: use a duration from "
                f"{show_duration(self.minimum)} to {show_duration(self.maximum)}"
            )
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out["x-duration"] = {"minimum": self.minimum, "maximum": self.maximum}
        return out


DAY = 86400.0
# How often a release is analysed: at most once a second (a "0s" interval must not turn
# the scheduler into a busy loop), at least once a day.
AnalysisInterval = Annotated[str, DurationRange(1, DAY)]
# A metric's rate window.
MetricInterval = Annotated[str, DurationRange(1, DAY)]
WebhookTimeout = Annotated[str, DurationRange(0.1, 600)]

# Limits on everything a CanaryRelease author writes, so one object cannot make the API
# server, the engine or Prometheus do unbounded work. The CRD carries the same numbers.
MAX_METRICS = 20
MAX_WEBHOOKS = 20
MAX_MATCH_RULES = 10
MAX_HEADERS = 16
MAX_IMAGES = 32
MAX_MAP_ENTRIES = 32
MAX_CONTROL_REQUESTS = 50
MAX_QUERY_LENGTH = 8192
MAX_VALUE_LENGTH = 4096
MAX_URL_LENGTH = 2048
MAX_KEY_LENGTH = 253
MAX_NAME_LENGTH = 63
MAX_TEXT_LENGTH = 256
# Measured values and thresholds: far beyond any real metric, finite.
MAX_MAGNITUDE = 1e15
MAX_COUNT = 1_000_000_000

Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]
Value = Annotated[str, Field(max_length=MAX_VALUE_LENGTH)]
Magnitude = Annotated[float, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
ContainerName = Annotated[
    str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
ImageRef = Annotated[str, Field(max_length=255)]

ShortText = Annotated[str, Field(max_length=MAX_TEXT_LENGTH)]


@dataclass(frozen=True)
class Clipped:
    """A bound on status that is kept by cutting, never by refusing.

    Text keeps its start (ending in an ellipsis), a list its newest entries. The engine
    composes status from measured values, webhook answers and spec names; a value over
    its bound must not make a status unwritable (the API server would refuse it and the
    release would stall) nor make a stored status unreadable. The CRD carries the bound
    as ``maxLength``/``maxItems`` for anyone else who writes status.
    """

    max_length: int

    def clip(self, value: Any) -> Any:
        """``value`` cut to the bound (other types unchanged)."""
        if isinstance(value, str) and len(value) > self.max_length:
            return value[: self.max_length - 1] + "\u2026"
        if isinstance(value, list) and len(value) > self.max_length:
            return value[-self.max_length :]
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.clip, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out["maxItems" if out.get("type") == "array" else "maxLength"] = self.max_length
        return out


STATUS_MESSAGE_LENGTH = 4096
StatusText = Annotated[str, Clipped(STATUS_MESSAGE_LENGTH)]
StatusShort = Annotated[str, Clipped(MAX_TEXT_LENGTH)]


def format_duration(seconds: float) -> str:
    """Render seconds the way the CLI and Slack show them: ``1m30s``, ``45s``, ``2h``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"


_M = TypeVar("_M", bound=BaseModel)


def fit_status(status: _M) -> _M:
    """``status`` with every ``Clipped`` string and list cut to its bound, at any depth.

    ``model_copy(update=...)``, which the decision uses, does not validate: this is what
    the store applies before it writes.
    """
    changes: dict[str, Any] = {}
    for name, info in type(status).model_fields.items():
        value = getattr(status, name)
        fitted: Any = value
        for bound in info.metadata:
            if isinstance(bound, Clipped):
                fitted = bound.clip(fitted)
        if isinstance(fitted, BaseModel):
            fitted = fit_status(fitted)
        elif isinstance(fitted, list):
            fitted = [fit_status(v) if isinstance(v, BaseModel) else v for v in fitted]
        if fitted != value:
            changes[name] = fitted
    return status.model_copy(update=changes) if changes else status
