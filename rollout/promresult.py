"""Reading Prometheus's answers within bounds: what one query may make the engine hold.

A custom query is written by whoever writes the CanaryRelease; ``{__name__=~".+"}`` would
otherwise load every series of the server into the leader. ``bounded_body`` is a
``requests`` response hook that reads at most ``MAX_RESULT_BYTES`` of an answer (hooks run
before requests buffers a body); ``sample_value`` and ``range_samples`` refuse results
over ``MAX_SERIES`` series or ``MAX_SAMPLES`` samples. Each refusal says what to change.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import requests

# What one query may return. A check needs one number (one series); a chart one series of
# at most timeline.MAX_POINTS samples. Prometheus's own per-series cap is 11,000 points.
MAX_SERIES = 1
MAX_SAMPLES = 11_000
MAX_RESULT_BYTES = 512 * 1024
_AGGREGATE_HINT = "aggregate the query (e.g. with sum(...)) so it returns one series"


class UnusableResult(ValueError):
    """Prometheus answered, but not with one number (e.g. several series)."""


class ResultTooLarge(UnusableResult):
    """The answer was bigger than the engine reads for one query."""


def bounded_body(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A response hook: read at most ``MAX_RESULT_BYTES`` of the body, refuse a larger one.

    requests runs response hooks before it reads the body, so a huge answer is never held
    in memory whole: the read stops one byte past the limit.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_RESULT_BYTES:
        response.close()
        raise ResultTooLarge(_too_large())
    body = response.raw.read(MAX_RESULT_BYTES + 1, decode_content=True)
    if len(body) > MAX_RESULT_BYTES:
        response.close()
        raise ResultTooLarge(_too_large())
    response._content = body
    return response


def _too_large() -> str:
    return (
        f"the query's answer is over {MAX_RESULT_BYTES // 1024} KiB, more than one "
        f"check reads; {_AGGREGATE_HINT}"
    )


def _too_many_series(count: int) -> UnusableResult:
    return UnusableResult(
        f"the query returned {count} series; it must return {MAX_SERIES} ({_AGGREGATE_HINT})"
    )


def sample_value(result: Any) -> float | None:
    """The one number in an instant query's result; None for no data, NaN or Inf."""
    if not result:
        return None
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        raw = result[1]  # a scalar: [timestamp, "value"]
    elif isinstance(result, list) and isinstance(result[0], dict):
        if len(result) > MAX_SERIES:
            raise _too_many_series(len(result))
        raw = result[0].get("value", [None, None])[1]
    else:
        raise UnusableResult(f"unexpected query result {str(result)[:80]!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def range_samples(result: Any) -> list[tuple[datetime, float]]:
    """The samples of a range query's one series, oldest first.

    No series means no data (an empty list). NaN and Inf samples (e.g. a success rate
    over a window without requests, 0/0) are dropped: a chart shows them as a gap.
    """
    if not result:
        return []
    if not isinstance(result, list) or not isinstance(result[0], dict):
        raise UnusableResult(f"unexpected query result {str(result)[:80]!r}")
    if len(result) > MAX_SERIES:
        raise _too_many_series(len(result))
    values = result[0].get("values") or []
    if len(values) > MAX_SAMPLES:
        raise UnusableResult(
            f"the query returned {len(values)} samples, over {MAX_SAMPLES}; "
            "query a shorter range or a coarser step"
        )
    samples: list[tuple[datetime, float]] = []
    for pair in values:
        try:
            stamp, raw = pair
            at = datetime.fromtimestamp(float(stamp), UTC)
            value = float(raw)
        except (TypeError, ValueError, OverflowError, OSError):
            continue
        if math.isfinite(value):
            samples.append((at, value))
    return samples
