"""Releases in every phase, built like the engine writes them (for rendering tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rollout.models import CanaryRelease, Phase

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)

TUTORIAL_ANALYSIS: dict[str, Any] = {
    "interval": "10s",
    "threshold": 10,
    "maxWeight": 50,
    "stepWeight": 5,
    "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}],
}


def release(
    phase: Phase = Phase.PROGRESSING,
    *,
    weight: int = 25,
    failed_checks: int = 0,
    metric_value: float | None = 99.7,
    seq: int = 7,
    events: list[dict[str, Any]] | None = None,
    notification: dict[str, Any] | None = None,
    message: str = "",
    name: str = "podinfo-x7k2p",
    namespace: str = "test",
    uid: str = "uid-1",
) -> CanaryRelease:
    """A tutorial release in ``phase`` started five minutes before ``NOW``."""
    status: dict[str, Any] = {
        "phase": phase.value,
        "canaryWeight": weight,
        "failedChecks": failed_checks,
        "stableImages": {"podinfod": "stefanprodan/podinfo:6.0.0"},
        "startedAt": (NOW - timedelta(minutes=5)).isoformat(),
        "eventSeq": seq,
        "message": message,
        "events": events or [],
        "notification": notification or {},
    }
    if phase.is_final:
        status["finishedAt"] = (NOW - timedelta(minutes=1)).isoformat()
    if metric_value is not None or failed_checks:
        status["metrics"] = [
            {
                "name": "request-success-rate",
                "value": metric_value,
                "threshold": ">= 99",
                "ok": metric_value is not None and metric_value >= 99,
                "message": "" if metric_value else "no values found",
            }
        ]
    return CanaryRelease.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "creationTimestamp": (NOW - timedelta(minutes=5)).isoformat(),
                "labels": {"canarybot.io/target": "podinfo"},
            },
            "spec": {
                "targetRef": {"name": "podinfo"},
                "ingressRef": {"name": "podinfo"},
                "images": {"podinfod": "stefanprodan/podinfo:6.0.3"},
                "analysis": TUTORIAL_ANALYSIS,
                "cluster": "prod-eu-1",
                "requestedBy": {
                    "user": "U0ALICE",
                    "userName": "alice",
                    "channel": "C0DEPLOYS",
                    "source": "slack",
                },
            },
            "status": status,
        }
    )


def event(
    seq: int,
    type_: str = "StepAdvanced",
    message: str = "advance canary weight 10",
    *,
    severity: str = "info",
    weight: int = 10,
    details: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``status.events`` entry."""
    return {
        "seq": seq,
        "type": type_,
        "message": message,
        "severity": severity,
        "at": NOW.isoformat(),
        "weight": weight,
        "phase": "Progressing",
        "details": details or {},
    }
