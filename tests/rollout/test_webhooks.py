"""WebhookRunner against the flagger-loadtester stand-in and a tiny local server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from rollout.models import Phase, Webhook
from rollout.webhooks import WebhookResult, WebhookRunner, payload
from sandbox.loadtester import LoadTester

ACCEPTANCE_CMD = "curl -sd 'test' http://podinfo-canary/token | grep token"


def body(phase: Phase = Phase.PROGRESSING) -> dict[str, Any]:
    return payload("podinfo", "test", phase, "0af3c1", {})


def acceptance_test(url: str, **extra: Any) -> Webhook:
    return Webhook.model_validate(
        {
            "name": "acceptance-test",
            "type": "pre-rollout",
            "url": url,
            "timeout": "30s",
            "metadata": {"type": "bash", "cmd": ACCEPTANCE_CMD},
            **extra,
        }
    )


@pytest.fixture
def runner() -> WebhookRunner:
    # A short backoff keeps retry tests quick; the semantics are the same.
    return WebhookRunner(backoff=0.01)


# -- against the load tester -----------------------------------------------------------


async def test_acceptance_test_passes_and_the_tester_gets_flaggers_payload(
    runner: WebhookRunner, loadtester: LoadTester
) -> None:
    result = await runner.call(acceptance_test(f"{loadtester.url}/"), body(Phase.PROGRESSING))

    assert result.ok and result.status == 200
    assert result.message == "pre-rollout check acceptance-test passed: HTTP 200"
    call = loadtester.wait_for_call("acceptance-test")
    assert call.payload == {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "checksum": "0af3c1",
        "metadata": {"type": "bash", "cmd": ACCEPTANCE_CMD},
    }


async def test_failed_command_fails_with_status_and_body(
    runner: WebhookRunner, loadtester: LoadTester
) -> None:
    loadtester.fail("acceptance-test", 500)

    result = await runner.call(acceptance_test(f"{loadtester.url}/"), body())

    assert not result.ok and result.status == 500
    assert result.message == (
        f"pre-rollout check acceptance-test failed: HTTP 500 command {ACCEPTANCE_CMD} "
        "failed: : exit status 1"
    )


async def test_slow_hook_times_out_without_waiting_for_the_answer(
    runner: WebhookRunner, loadtester: LoadTester
) -> None:
    loadtester.delay("acceptance-test", 5)

    result = await runner.call(acceptance_test(f"{loadtester.url}/", timeout="500ms"), body())

    assert not result.ok and result.status == 0
    assert result.message == "pre-rollout check acceptance-test failed: no answer within 500ms"
    assert result.duration_ms < 5000


async def test_retries_ride_out_transient_failures(
    runner: WebhookRunner, loadtester: LoadTester
) -> None:
    loadtester.fail("acceptance-test", 503, times=2)

    result = await runner.call(acceptance_test(f"{loadtester.url}/", retries=2), body())

    assert result.ok, result.message
    assert result.message.endswith("(after 3 attempts)")
    assert len(loadtester.calls("acceptance-test")) == 3


async def test_retries_run_out(runner: WebhookRunner, loadtester: LoadTester) -> None:
    loadtester.fail("acceptance-test", 500, times=5)

    result = await runner.call(acceptance_test(f"{loadtester.url}/", retries=1), body())

    assert not result.ok and result.status == 500
    assert result.message.endswith("(after 2 attempts)")
    assert len(loadtester.calls("acceptance-test")) == 2


async def test_confirm_gate_follows_the_load_testers_gate(
    runner: WebhookRunner, loadtester: LoadTester
) -> None:
    gate = Webhook(
        name="promotion-gate",
        type="confirm-promotion",
        url=f"{loadtester.url}/gate/check",
        retries=3,
    )

    closed = await runner.call(gate, body(Phase.WAITING_PROMOTION))
    loadtester.open_gate("podinfo", "test")
    opened = await runner.call(gate, body(Phase.WAITING_PROMOTION))

    assert not closed.ok and closed.status == 403
    assert closed.message == "confirm-promotion gate promotion-gate closed: HTTP 403 Forbidden"
    assert opened.ok and opened.message == "confirm-promotion gate promotion-gate open: HTTP 200"
    # A closed gate is an answer, not a glitch: it is not retried.
    assert len(loadtester.calls(path="/gate/check")) == 2


async def test_approve_and_halt_gates(runner: WebhookRunner, loadtester: LoadTester) -> None:
    approve = Webhook(name="start", type="confirm-rollout", url=f"{loadtester.url}/gate/approve")
    halt = Webhook(name="stop", type="confirm-rollout", url=f"{loadtester.url}/gate/halt")

    results = await runner.call_all([approve, halt], body(Phase.WAITING))

    assert [(r.name, r.ok, r.status) for r in results] == [
        ("start", True, 200),
        ("stop", False, 403),
    ]


async def test_load_test_command_is_queued_and_started(
    runner: WebhookRunner, loadtester: LoadTester
) -> None:
    hook = Webhook(
        name="load-test",
        type="rollout",
        url=f"{loadtester.url}/",
        timeout="5s",
        metadata={"cmd": "hey -z 1m -q 10 -c 2 http://app.example.com/"},
    )

    result = await runner.call(hook, body())

    assert result.ok and result.status == 202
    assert [(load.qps, load.concurrency, load.url) for load in loadtester.loads] == [
        (10.0, 2, "http://app.example.com/")
    ]


# -- against a local server, for the edges ---------------------------------------------


@dataclass
class Recorder:
    """What the local server saw, and how it should answer."""

    url: str = ""
    answers: dict[str, tuple[int, str]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    hold: float = 0.0


@pytest.fixture
async def server() -> AsyncIterator[Recorder]:
    rec = Recorder()

    async def handle(request: web.Request) -> web.Response:
        rec.in_flight += 1
        rec.max_in_flight = max(rec.max_in_flight, rec.in_flight)
        try:
            rec.requests.append(
                (request.path, await request.json(), request.headers.get("Content-Type", ""))
            )
            if rec.hold:
                await asyncio.sleep(rec.hold)
            status, text = rec.answers.get(request.path, (200, ""))
            return web.Response(status=status, text=text)
        finally:
            rec.in_flight -= 1

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    app_runner = web.AppRunner(app)
    await app_runner.setup()
    site = web.TCPSite(app_runner, "127.0.0.1", 0)
    await site.start()
    port = app_runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await app_runner.cleanup()


@pytest.mark.parametrize(
    ("status", "ok"),
    [(200, True), (201, True), (202, True), (203, False), (302, False), (404, False)],
)
async def test_status_above_202_is_a_failure(
    runner: WebhookRunner, server: Recorder, status: int, ok: bool
) -> None:
    server.answers["/hook"] = (status, "")
    hook = Webhook(name="h", type="rollout", url=f"{server.url}/hook")

    result = await runner.call(hook, body())

    assert (result.ok, result.status) == (ok, status)


async def test_event_hook_gets_event_fields_and_its_own_metadata(
    runner: WebhookRunner, server: Recorder
) -> None:
    hook = Webhook(
        name="events", type="event", url=f"{server.url}/events", metadata={"cluster": "prod-eu"}
    )
    sent = payload(
        "podinfo",
        "test",
        Phase.FAILED,
        "c1",
        {},
        ("Canary failed! Rolling back podinfo.test", "Warning"),
    )

    result = await runner.call(hook, sent)

    assert result.ok and result.message == "event webhook events delivered: HTTP 200"
    path, received, content_type = server.requests[0]
    assert path == "/events" and content_type.startswith("application/json")
    meta = received["metadata"]
    assert meta["eventMessage"] == "Canary failed! Rolling back podinfo.test"
    assert meta["eventType"] == "Warning"
    assert meta["cluster"] == "prod-eu"
    assert meta["timestamp"].isdigit() and len(meta["timestamp"]) == 13
    assert received["phase"] == "Failed"


async def test_long_error_body_is_shortened_to_one_line(
    runner: WebhookRunner, server: Recorder
) -> None:
    server.answers["/check"] = (500, "panic: boom\n\tgoroutine 1 [running]:\n" + "x" * 5000)
    hook = Webhook(name="smoke", type="pre-rollout", url=f"{server.url}/check")

    result = await runner.call(hook, body())

    assert result.message.startswith(
        "pre-rollout check smoke failed: HTTP 500 panic: boom goroutine 1 [running]: xxx"
    )
    assert "\n" not in result.message
    assert len(result.message) < 300


@pytest.mark.parametrize(("status", "calls"), [(403, 1), (400, 1), (501, 1), (503, 3), (429, 3)])
async def test_only_transient_answers_are_retried(
    runner: WebhookRunner, server: Recorder, status: int, calls: int
) -> None:
    server.answers["/h"] = (status, "no")
    hook = Webhook(name="h", type="rollout", url=f"{server.url}/h", retries=2)

    result = await runner.call(hook, body())

    assert not result.ok
    assert len(server.requests) == calls


async def test_timeout_bounds_all_attempts_together(
    server: Recorder,
) -> None:
    server.answers["/h"] = (503, "overloaded")
    hook = Webhook(name="h", type="rollout", url=f"{server.url}/h", retries=10, timeout="1s")

    result = await WebhookRunner(backoff=0.3).call(hook, body())

    assert not result.ok
    assert result.message.startswith(
        "rollout check h failed: no answer within 1s; last answer HTTP 503"
    )
    assert 1 < len(server.requests) < 11


async def test_call_all_calls_hooks_concurrently_and_keeps_their_order(
    runner: WebhookRunner, server: Recorder
) -> None:
    server.hold = 0.3
    server.answers["/b"] = (500, "bad")
    hooks = [Webhook(name=n, type="rollout", url=f"{server.url}/{n}") for n in ("a", "b", "c")]

    results = await runner.call_all(hooks, body())

    assert [(r.name, r.ok) for r in results] == [("a", True), ("b", False), ("c", True)]
    assert server.max_in_flight == 3


@pytest.fixture
def refused_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]  # bound, never listening: connections are refused


async def test_connection_error_is_a_failure_without_credentials_in_the_message(
    runner: WebhookRunner, refused_port: int
) -> None:
    hook = Webhook(
        name="notify",
        type="post-rollout",
        url=f"http://bot:hunter2@127.0.0.1:{refused_port}/hook?token=abc123",
        retries=1,
    )

    result: WebhookResult = await runner.call(hook, body())

    assert not result.ok and result.status == 0
    assert result.message == (
        f"post-rollout check notify failed: cannot connect to 127.0.0.1:{refused_port} "
        "(connection refused) (after 2 attempts)"
    )
    assert "hunter2" not in json.dumps(result.__dict__) and "abc123" not in result.message


async def test_no_hooks_no_calls(runner: WebhookRunner) -> None:
    assert await runner.call_all([], body()) == []
