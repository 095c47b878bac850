"""How each upstream (stable, canary) behaves, and the bounds an update must respect."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

Side = Literal["stable", "canary"]
SIDES: tuple[Side, Side] = ("stable", "canary")
MAX_RPS = 10_000.0
_MAX_LATENCY_MS = 600_000.0


class ControlError(ValueError):
    """A settings update was rejected; the message says which field and why."""


@dataclass(frozen=True)
class SideSettings:
    """Behaviour of one upstream (stable or canary).

    ``error_rate`` is the fraction (0..1) of requests answered with ``error_status``;
    each request takes ``latency_ms`` ± ``jitter_ms`` (evenly spread, never below 0).
    """

    error_rate: float = 0.0
    latency_ms: float = 20.0
    jitter_ms: float = 5.0
    error_status: int = 500

    def updated(self, changes: Mapping[str, Any], where: str) -> SideSettings:
        """A copy with ``changes`` applied; raises ControlError on bad input."""
        if not isinstance(changes, Mapping):
            raise ControlError(f"{where} must be an object, got {type(changes).__name__}")
        values: dict[str, Any] = {}
        for key, raw in changes.items():
            path = f"{where}.{key}"
            if key == "error_rate":
                values[key] = number(raw, path, 0.0, 1.0, hint=" (a fraction: 0.5 = 50 %)")
            elif key in ("latency_ms", "jitter_ms"):
                values[key] = number(raw, path, 0.0, _MAX_LATENCY_MS)
            elif key == "error_status":
                if isinstance(raw, bool) or not isinstance(raw, int) or not 500 <= raw <= 599:
                    raise ControlError(f"{path} must be an integer 5xx status, got {raw!r}")
                values[key] = raw
            else:
                allowed = ", ".join(f.name for f in fields(SideSettings))
                raise ControlError(f"unknown field {path!r}; allowed: {allowed}")
        return replace(self, **values)


def number(raw: Any, path: str, low: float, high: float, hint: str = "") -> float:
    """``raw`` as a finite number within [low, high]; ControlError naming ``path`` if not."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ControlError(f"{path} must be a number, got {raw!r}")
    value = float(raw)
    if not math.isfinite(value) or not low <= value <= high:
        raise ControlError(f"{path} must be between {low:g} and {high:g}{hint}, got {raw!r}")
    return value
