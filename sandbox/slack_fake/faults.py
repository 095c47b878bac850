"""Fault injection: HTTP 429s and 5xxs when told to, or rate limits at Slack's own rates."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass
class Fault:
    """One injected fault: for ``remaining`` calls or ``until`` a time, to one method or all."""

    kind: Literal["ratelimit", "server_error"]
    method: str | None
    remaining: int | None
    until: float | None
    retry_after: int = 1
    status: int = 500


@dataclass
class _Bucket:
    """A token bucket: ``capacity`` calls at once, refilled at ``rate`` calls a second."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float | None:
        """Take one call; return None if allowed, else the seconds until one is."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


@dataclass(frozen=True)
class _RateLimits:
    post_rate: float
    post_burst: int
    updates_per_minute: int


class Faults:
    """The faults in force. Not thread-safe: callers hold the fake's lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._faults: list[Fault] = []
        self._rate_limits: _RateLimits | None = None
        self._buckets: dict[tuple[str, ...], _Bucket] = {}

    def clear(self) -> None:
        """Drop injected faults and enforced rate limits."""
        self._faults.clear()
        self._rate_limits = None
        self._buckets.clear()

    def add(
        self,
        kind: Literal["ratelimit", "server_error"],
        calls: int | None,
        seconds: float | None,
        method: str | None,
        *,
        retry_after: int = 1,
        status: int = 500,
    ) -> None:
        """Inject a fault for ``calls`` calls or ``seconds`` from now (default: one call)."""
        if calls is not None and seconds is not None:
            raise ValueError("give calls or seconds, not both")
        if calls is None and seconds is None:
            calls = 1
        until = None if seconds is None else self._clock() + seconds
        self._faults.append(
            Fault(kind, method, calls, until, retry_after=retry_after, status=status)
        )

    def take(self, method: str) -> Fault | None:
        """The fault that answers this call of ``method``, if any (one call used up)."""
        now = self._clock()
        self._faults = [
            f
            for f in self._faults
            if (f.remaining is None or f.remaining > 0) and (f.until is None or f.until > now)
        ]
        for fault in self._faults:
            if fault.method is None or fault.method == method:
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def enforce_rate_limits(
        self, posts_per_second: float, post_burst: int, updates_per_minute: int
    ) -> None:
        """Rate-limit ``chat.postMessage`` per channel and ``chat.update`` per app."""
        self._rate_limits = _RateLimits(posts_per_second, post_burst, updates_per_minute)
        self._buckets.clear()

    def over_rate_limit(self, method: str, channel_id: str) -> int | None:
        """Seconds to wait (``Retry-After``) if this call is over Slack's rate, else None."""
        limits = self._rate_limits
        if limits is None:
            return None
        if method == "chat.postMessage":
            key: tuple[str, ...] = (method, channel_id)
            capacity, rate = float(limits.post_burst), limits.post_rate
        elif method == "chat.update":
            key = (method,)
            capacity, rate = float(limits.updates_per_minute), limits.updates_per_minute / 60
        else:
            return None
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket(capacity, rate, capacity, now))
        wait = bucket.take(now)
        return None if wait is None else max(1, math.ceil(wait))
