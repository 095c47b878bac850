"""Prometheus metrics of the Slack front (served on /metrics with the engine's)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class BotMetrics:
    """Counters and histograms for Slack sends, commands and control requests."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.slack_sends = Counter(
            "canarybot_slack_sends",
            "Slack Web API calls made by the notifier and the app, by method and outcome.",
            ["method", "outcome"],
            registry=registry,
        )
        self.commands = Counter(
            "canarybot_slack_commands",
            "Slash commands and button clicks handled, by verb and outcome.",
            ["verb", "outcome"],
            registry=registry,
        )
        self.ack_seconds = Histogram(
            "canarybot_slack_ack_seconds",
            "Time from receiving a Slack request to acknowledging it.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
