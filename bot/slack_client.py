"""The Slack Web API client canary-bot uses: a base URL that tests and proxies can change,
a short timeout, and retry handlers that honour ``Retry-After`` on HTTP 429.
"""

from __future__ import annotations

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

DEFAULT_API_URL = "https://slack.com/api/"


def make_client(
    token: str | None,
    base_url: str = DEFAULT_API_URL,
    *,
    timeout: int = 5,
    rate_limit_retries: int = 3,
) -> AsyncWebClient:
    """An ``AsyncWebClient`` that waits out 429s (Retry-After) and retries 5xx/network once.

    The notifier bounds every publish with its own deadline, so a long Retry-After ends in
    a re-offer by the engine rather than a hang.
    """
    return AsyncWebClient(
        token=token,
        base_url=base_url if base_url.endswith("/") else base_url + "/",
        timeout=timeout,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
            AsyncServerErrorRetryHandler(max_retry_count=1),
            AsyncConnectionErrorRetryHandler(max_retry_count=1),
        ],
    )
