"""The flagger-loadtester stand-in: payload handling, simulated commands, failure
injection and gates, checked over HTTP as Flagger (or canary-bot) would call it."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sandbox.loadtester import LoadRequest, LoadTester, parse_hey

ACCEPTANCE = "curl -sd 'test' http://podinfo-canary/token | grep token"
LOAD = "hey -z 1m -q 10 -c 2 http://app.example.com/"


def payload(**metadata: str) -> dict[str, Any]:
    return {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "checksum": "6d4b8f7c",
        "metadata": metadata,
    }


def post(url: str, body: Any, *, raw: bool = False, method: str = "POST") -> tuple[int, str]:
    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


# ------------------------------------------------------------------------- tasks


def test_acceptance_test_passes_and_the_payload_is_recorded(loadtester: LoadTester) -> None:
    body = payload(type="bash", cmd=ACCEPTANCE)
    assert post(f"{loadtester.url}/", body) == (200, "")
    (call,) = loadtester.calls("acceptance-test")
    assert call.payload == body
    assert (call.name, call.namespace, call.phase) == ("podinfo", "test", "Progressing")
    assert call.cmd == ACCEPTANCE
    assert call.status == 200


def test_return_cmd_output_returns_the_simulated_output(loadtester: LoadTester) -> None:
    status, text = post(
        f"{loadtester.url}/", payload(type="bash", cmd=ACCEPTANCE, returnCmdOutput="true")
    )
    assert status == 200
    assert "token" in text


def test_injected_failure_fails_the_acceptance_test_like_a_failed_command(
    loadtester: LoadTester,
) -> None:
    loadtester.fail("acceptance-test")
    status, text = post(f"{loadtester.url}/", payload(type="bash", cmd=ACCEPTANCE))
    assert status == 500
    assert text.startswith(f"command {ACCEPTANCE} failed")
    # Other webhooks are unaffected.
    assert post(f"{loadtester.url}/", payload(cmd=LOAD))[0] == 202


def test_failure_injection_can_be_limited_and_cleared(loadtester: LoadTester) -> None:
    body = payload(type="bash", cmd=ACCEPTANCE)
    loadtester.fail("acceptance-test", status=503, body="down for maintenance", times=2)
    assert post(f"{loadtester.url}/", body) == (503, "down for maintenance")
    assert post(f"{loadtester.url}/", body) == (503, "down for maintenance")
    assert post(f"{loadtester.url}/", body) == (200, "")
    loadtester.fail("acceptance-test")
    loadtester.clear_failures("acceptance-test")
    assert post(f"{loadtester.url}/", body) == (200, "")


def test_a_webhook_pointed_at_its_own_path_is_named_by_it(loadtester: LoadTester) -> None:
    loadtester.fail("smoke-test", status=502)
    assert post(f"{loadtester.url}/smoke-test", payload(type="bash", cmd="true"))[0] == 502
    assert post(f"{loadtester.url}/other", payload(type="bash", cmd="true"))[0] == 200
    assert [c.webhook for c in loadtester.calls()] == ["smoke-test", "other"]


def test_delay_holds_the_answer_back(loadtester: LoadTester) -> None:
    loadtester.delay("acceptance-test", 0.5, times=1)
    started = time.monotonic()
    assert post(f"{loadtester.url}/", payload(type="bash", cmd=ACCEPTANCE))[0] == 200
    assert time.monotonic() - started >= 0.5


def test_load_command_is_queued_and_started_once_while_running() -> None:
    started: list[LoadRequest] = []
    seen = threading.Event()

    def on_load(load: LoadRequest) -> None:
        started.append(load)
        seen.set()

    with LoadTester(on_load=on_load) as tester:
        assert post(f"{tester.url}/", payload(cmd=LOAD)) == (202, "")
        assert seen.wait(5), "the load callback was not called"
        # The same command for the same canary is still "running" (1 minute).
        assert post(f"{tester.url}/", payload(cmd=LOAD)) == (202, "")
        other = payload(cmd=LOAD)
        other["name"] = "frontend"
        assert post(f"{tester.url}/", other) == (202, "")
        deadline = time.monotonic() + 5
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [(load.canary, load.total_rps, load.duration_seconds) for load in started] == [
        ("podinfo", 20.0, 60.0),
        ("frontend", 20.0, 60.0),
    ]
    assert started[0].url == "http://app.example.com/"
    outcomes = [call.outcome for call in tester.calls("load-test")]
    assert outcomes == ["started", "already running", "started"]


def test_commands_are_simulated_never_run(loadtester: LoadTester, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    status, text = post(f"{loadtester.url}/", payload(type="bash", cmd=f"touch {marker}"))
    assert status == 500
    assert "exit status 127" in text
    assert post(f"{loadtester.url}/", payload(cmd=f"touch {marker}")) == (202, "")
    assert not marker.exists()
    assert post(f"{loadtester.url}/", payload(type="bash", cmd="exit 3"))[1].endswith(
        "exit status 3"
    )
    assert post(f"{loadtester.url}/", payload(type="bash", cmd="false"))[0] == 500
    assert post(f"{loadtester.url}/", payload(type="bash", cmd="true")) == (200, "")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", (400, "")),
        (b"[]", (400, "")),
        (b'{"name": 5, "metadata": {"cmd": "true"}}', (400, "")),
        (b'{"name": "a", "metadata": {"cmd": 1}}', (400, "")),
        (b"", (400, "")),
        (b'{"name": "a", "namespace": "b"}', (400, "metadata not found in payload")),
        (b"null", (400, "metadata not found in payload")),
        (b'{"metadata": {"type": "cmd"}}', (400, "cmd not found in metadata")),
        (b'{"metadata": {"type": "python", "cmd": "x"}}', (400, "unknown task type python")),
    ],
)
def test_bad_payloads_are_answered_like_the_real_loadtester(
    loadtester: LoadTester, body: bytes, expected: tuple[int, str]
) -> None:
    assert post(f"{loadtester.url}/", body, raw=True) == expected
    assert loadtester.calls()[-1].status == expected[0]


def test_namespace_allow_list_forbids_other_namespaces() -> None:
    with LoadTester(namespace_pattern=r"^prod-") as tester:
        assert post(f"{tester.url}/", payload(type="bash", cmd="true")) == (403, "Forbidden")
        allowed = payload(type="bash", cmd="true")
        allowed["namespace"] = "prod-eu"
        assert post(f"{tester.url}/", allowed) == (200, "")


def test_hey_parsing() -> None:
    load = parse_hey("hey -z 1m30s -q 5 -c 4 -m post -H 'A: b' -disable-keepalive http://x/")
    assert (load.duration_seconds, load.qps, load.concurrency, load.method, load.url) == (
        90.0, 5.0, 4, "POST", "http://x/",
    )  # fmt: skip
    counted = parse_hey("hey -n 100 -q 10 -c 5 http://x/")
    assert (counted.requests, counted.duration_seconds) == (100, 2.0)
    with pytest.raises(ValueError, match="URL"):
        parse_hey("hey -z 1m")


# ------------------------------------------------------------------------- gates


def test_fixed_gates(loadtester: LoadTester) -> None:
    assert post(f"{loadtester.url}/gate/approve", payload()) == (200, "OK")
    assert post(f"{loadtester.url}/gate/halt", payload()) == (403, "Forbidden")
    assert post(f"{loadtester.url}/healthz", b"", raw=True, method="GET") == (200, "OK")


def test_gate_is_closed_until_opened_and_per_canary(loadtester: LoadTester) -> None:
    url = loadtester.url
    assert post(f"{url}/gate/check", payload()) == (403, "Forbidden")
    assert post(f"{url}/gate/open", payload()) == (202, "")
    assert post(f"{url}/gate/check", payload()) == (200, "Approved")
    other = payload()
    other["namespace"] = "staging"
    assert post(f"{url}/gate/check", other) == (403, "Forbidden")
    assert loadtester.gate_is_open("podinfo", "test")
    assert post(f"{url}/gate/close", payload()) == (202, "")
    assert post(f"{url}/gate/check", payload()) == (403, "Forbidden")
    loadtester.open_gate("podinfo", "test")
    assert post(f"{url}/gate/check", payload()) == (200, "Approved")


def test_rollback_gate_is_separate_from_the_confirm_gate(loadtester: LoadTester) -> None:
    url = loadtester.url
    loadtester.open_gate("podinfo", "test")
    assert post(f"{url}/rollback/check", payload()) == (403, "Forbidden")
    assert post(f"{url}/rollback/open", payload()) == (202, "")
    assert post(f"{url}/rollback/check", payload()) == (200, "Approved")
    assert loadtester.rollback_is_open("podinfo", "test")
    assert post(f"{url}/rollback/close", payload()) == (202, "")
    assert post(f"{url}/rollback/check", payload()) == (403, "Forbidden")


def test_gate_endpoints_reject_undecodable_payloads(loadtester: LoadTester) -> None:
    assert post(f"{loadtester.url}/gate/check", b"{", raw=True) == (400, "")
    assert post(f"{loadtester.url}/rollback/open", b"[1]", raw=True) == (400, "")


def test_wait_for_call_reports_what_it_saw(loadtester: LoadTester) -> None:
    post(f"{loadtester.url}/gate/check", payload())
    assert loadtester.wait_for_call(path="/gate/check", timeout=1).status == 403
    with pytest.raises(TimeoutError, match="/gate/check"):
        loadtester.wait_for_call("load-test", timeout=0.2)
