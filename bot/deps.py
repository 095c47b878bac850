"""What the Slack handlers need, passed in explicitly (no globals)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from slack_sdk.web.async_client import AsyncWebClient

from bot.clusters import Clusters
from bot.config import BotConfig
from bot.metrics import BotMetrics


class AuditTrail:
    """Control request ids whose audit line this process already posted (bounded)."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def claim(self, request_id: str) -> bool:
        """True the first time ``request_id`` is seen; atomic within one event loop."""
        if request_id in self._seen:
            return False
        self._seen[request_id] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True


@dataclass(frozen=True)
class Deps:
    """The clusters (each with its Operations), config, metrics and the Web API client."""

    clusters: Clusters
    config: BotConfig
    metrics: BotMetrics
    client: AsyncWebClient
    audit: AuditTrail = field(default_factory=AuditTrail)
