"""Errors keep their message in logs, masked: the reason an operator needs, never a secret."""

from __future__ import annotations

import logging
import socket
from typing import Any

import kubernetes.client
import pytest
from prometheus_client import CollectorRegistry

from bot.commands import ParseError, parse
from bot.commands import parser as command_parser
from bot.config import Channels
from bot.metrics import BotMetrics
from bot.notifier import SlackNotifier, SlackUnavailable
from bot.slack_client import make_client
from rollout.egress import error_text
from rollout.kube import RELEASES, Kube, KubeError
from tests.bot.factories import NOW, event, release

TOKEN = "xoxb-1111-2222-abcdefghijklmnop"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_error_text_keeps_the_message_and_masks_every_url() -> None:
    exc = ConnectionError(
        "POST http://bot:hunter2@hooks.example.com/services/T0/B0/abcdEFGH12345678xyz?token=s3cr3t "
        "failed: connection refused"
    )
    text = error_text(exc)
    assert text.startswith("ConnectionError: POST http://***@hooks.example.com/services/T0/B0/***")
    assert "connection refused" in text
    assert "hunter2" not in text and "s3cr3t" not in text and "abcdEFGH" not in text
    assert error_text(exc, urls="the hook URL").startswith("ConnectionError: POST the hook URL ")
    assert error_text(ValueError()) == "ValueError"
    assert len(error_text(ValueError("x" * 5000))) == 300


async def test_an_unreachable_api_server_is_reported_with_its_reason() -> None:
    config = kubernetes.client.Configuration()
    config.host = f"https://127.0.0.1:{closed_port()}"
    config.api_key = {"authorization": "Bearer " + TOKEN}
    kube = Kube(kubernetes.client.ApiClient(config), workers=1)
    with pytest.raises(KubeError) as caught:
        await kube.get(RELEASES, "test", "podinfo")
    message = str(caught.value)
    assert message.startswith("API server unreachable: NewConnectionError: "), message
    assert "Failed to establish a new connection: [Errno 111] Connection refused" in message
    assert TOKEN not in message


async def test_an_unreachable_slack_is_logged_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(TOKEN, f"http://127.0.0.1:{closed_port()}/api/", rate_limit_retries=0)
    slack = SlackNotifier(
        client,
        Channels(default="C0DEPLOYS"),
        metrics=BotMetrics(CollectorRegistry()),
        clock=lambda: NOW,
        deadline_seconds=5,
    )
    started = release(events=[event(1)])
    caplog.set_level(logging.WARNING, "canary_bot.notifier")
    with pytest.raises(SlackUnavailable) as caught:
        await slack.publish(started, list(started.status.events))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (str(caught.value), logged):
        assert "ClientConnectorError: Cannot connect to host 127.0.0.1" in text, text
        assert TOKEN not in text


def test_a_parser_defect_is_logged_as_an_error_and_marked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(topic: str, rest: list[str]) -> Any:
        raise IndexError("list index out of range")

    monkeypatch.setattr(command_parser, "_parse_topic", broken)  # a bug in one subcommand
    with pytest.raises(ParseError) as caught:
        parse("status podinfo --token=xoxb-secret")
    assert caught.value.defect
    assert "could not understand the command (IndexError)" in caught.value.message
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "the /canary parser failed on a 34-character command"
    ]
    assert errors[0].exc_info is not None and "xoxb-secret" not in errors[0].getMessage()


def test_an_invalid_command_is_not_a_defect(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ParseError) as caught:
        parse("strat podinfo")
    assert not caught.value.defect
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
