"""The traffic simulator on its own: routing rules, deterministic counts, exposition
format and the control endpoint. No Prometheus, no API server."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.traffic import (
    ANNOTATION_PREFIX,
    DEFAULT_BUCKETS,
    CanaryRouting,
    ControlError,
    TrafficSimulator,
)


def canary_annotations(**values: str) -> dict[str, str]:
    """``canary_weight="20"`` -> ``{"nginx.ingress.kubernetes.io/canary-weight": "20"}``."""
    return {ANNOTATION_PREFIX + key.replace("_", "-"): value for key, value in values.items()}


def simulator(weight: float | CanaryRouting = 0.0, **settings: Any) -> TrafficSimulator:
    """A simulator with a fixed routing that has read it once (no thread started)."""
    sim = TrafficSimulator("shop", "web", "web", 80, weight=lambda: weight, **settings)
    sim.refresh_routing()
    return sim


# --------------------------------------------------------------------- routing rules


def test_annotations_without_canary_true_route_nothing_to_the_canary() -> None:
    routing = CanaryRouting.from_annotations(canary_annotations(canary="false", canary_weight="50"))
    assert not routing.enabled
    assert routing.canary_share() == 0.0


def test_weight_is_read_against_weight_total() -> None:
    routing = CanaryRouting.from_annotations(
        canary_annotations(canary="true", canary_weight="50", canary_weight_total="1000")
    )
    assert routing.canary_share() == pytest.approx(0.05)


def test_missing_or_malformed_weight_counts_as_zero() -> None:
    assert CanaryRouting.from_annotations(canary_annotations(canary="true")).canary_share() == 0
    malformed = CanaryRouting.from_annotations(canary_annotations(canary="true", canary_weight="x"))
    assert malformed.canary_share() == 0


def test_header_beats_cookie_beats_weight() -> None:
    routing = CanaryRouting.from_annotations(
        canary_annotations(
            canary="true", canary_weight="10", canary_by_header="X-Canary", canary_by_cookie="c"
        )
    )
    # Everyone sends the header: all canary, whatever the cookie and weight say.
    assert routing.canary_share(header_share=1.0, cookie_share=0.0) == 1.0
    # Nobody sends the header, everyone the cookie: all canary.
    assert routing.canary_share(header_share=0.0, cookie_share=1.0) == 1.0
    # 20 % header; of the rest 50 % cookie; of the rest 10 % by weight.
    expected = 0.2 + 0.8 * 0.5 + 0.8 * 0.5 * 0.1
    assert routing.canary_share(header_share=0.2, cookie_share=0.5) == pytest.approx(expected)


def test_header_share_is_ignored_without_the_header_annotation() -> None:
    routing = CanaryRouting.from_annotations(canary_annotations(canary="true", canary_weight="10"))
    assert routing.canary_share(header_share=1.0, cookie_share=1.0) == pytest.approx(0.1)


# ----------------------------------------------------------------- deterministic counts


def test_split_and_errors_are_exact_in_aggregate() -> None:
    sim = simulator(20, rps=10, canary={"error_rate": 0.5})
    sim.step(10.0)
    assert sim.totals() == {"stable": {"200": 80}, "canary": {"200": 10, "500": 10}}


def test_fractions_carry_over_between_small_steps() -> None:
    sim = simulator(30, rps=10, stable={"error_rate": 0.1, "error_status": 503})
    for _ in range(400):  # 100 s in quarter-second ticks: 2.5 requests per tick
        sim.step(0.25)
    totals = sim.totals()
    assert sum(totals["canary"].values()) == 300
    assert totals["stable"] == {"200": 630, "503": 70}


def test_zero_rps_produces_no_series_at_all() -> None:
    sim = simulator(50, rps=0)
    sim.step(60)
    assert sim.totals() == {"stable": {}, "canary": {}}
    assert b"nginx_ingress_controller_requests{" not in sim.render_metrics()


def test_weight_change_is_followed_by_the_next_tick() -> None:
    weight = {"value": 10.0}
    sim = TrafficSimulator("shop", "web", "web", weight=lambda: weight["value"], rps=100)
    sim.tick()
    assert sim.current_weight == 10.0
    weight["value"] = 60.0
    before = sim.totals()
    sim.tick()  # reads the new weight first, then serves
    assert sim.current_weight == 60.0
    sim.step(1.0)
    after = sim.totals()
    canary = sum(after["canary"].values()) - sum(before["canary"].values())
    stable = sum(after["stable"].values()) - sum(before["stable"].values())
    assert canary / (canary + stable) == pytest.approx(0.6, abs=0.02)


def test_a_failing_weight_source_keeps_the_last_routing() -> None:
    calls = {"n": 0}

    def flaky() -> float:
        calls["n"] += 1
        if calls["n"] > 1:
            raise ConnectionError("API server unreachable")
        return 25.0

    sim = TrafficSimulator("shop", "web", "web", weight=flaky)
    sim.tick()
    sim.tick()
    assert sim.current_weight == 25.0
    assert sim.last_error is not None and "unreachable" in sim.last_error


# -------------------------------------------------------------------- exposition format


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by metric name, with their labels (a small parser for assertions)."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, rest = head.partition("{")
        labels = dict(
            (pair.split("=", 1)[0], json.loads(pair.split("=", 1)[1]))
            for pair in rest.rstrip("}").split(",")
            if pair
        )
        samples.setdefault(name, []).append((labels, float(value)))
    return samples


def test_exposition_matches_ingress_nginx_names_and_labels() -> None:
    sim = simulator(50, rps=4, canary={"error_rate": 0.5, "error_status": 503})
    sim.step(1.0)
    text = sim.render_metrics().decode()
    assert "# TYPE nginx_ingress_controller_requests counter" in text
    assert "_total" not in text and "_created" not in text
    samples = parse_exposition(text)
    requests = samples["nginx_ingress_controller_requests"]
    expected_labels = {
        "namespace", "ingress", "service", "status", "method", "path", "canary",
        "controller_class", "controller_namespace", "controller_pod",
    }  # fmt: skip
    assert all(set(labels) == expected_labels for labels, _ in requests)
    by_side = {(labels["canary"], labels["status"]): value for labels, value in requests}
    assert by_side == {("", "200"): 2, ("shop-web-canary-80", "200"): 1,
                       ("shop-web-canary-80", "503"): 1}  # fmt: skip
    # Both sides report the main Ingress and Service, as ingress-nginx does.
    assert {labels["ingress"] for labels, _ in requests} == {"web"}
    assert {labels["service"] for labels, _ in requests} == {"web"}


def test_histograms_use_the_default_buckets_and_the_configured_latency() -> None:
    sim = simulator(0, rps=100, stable={"latency_ms": 300, "jitter_ms": 10})
    sim.step(1.0)
    samples = parse_exposition(sim.render_metrics().decode())
    buckets = samples["nginx_ingress_controller_request_duration_seconds_bucket"]
    bounds = [labels["le"] for labels, _ in buckets]
    assert bounds == [format(b, "g") for b in DEFAULT_BUCKETS] + ["+Inf"]
    cumulative = {labels["le"]: value for labels, value in buckets}
    assert cumulative["0.25"] == 0 and cumulative["0.5"] == 100
    (_, total), = samples["nginx_ingress_controller_response_duration_seconds_sum"]  # fmt: skip
    (_, count), = samples["nginx_ingress_controller_response_duration_seconds_count"]  # fmt: skip
    assert count == 100
    assert total / count == pytest.approx(0.300, abs=0.001)


def test_canary_label_follows_the_canary_ingress_backend() -> None:
    routing = CanaryRouting(enabled=True, weight=100, backend_service="web-v2", backend_port="8080")
    sim = simulator(routing, rps=1)
    sim.step(1.0)
    assert sim.canary_upstream == "shop-web-v2-8080"
    assert 'canary="shop-web-v2-8080"' in sim.render_metrics().decode()


# ---------------------------------------------------------------------- control endpoint


@pytest.fixture
def running_sim() -> Iterator[TrafficSimulator]:
    with TrafficSimulator("shop", "web", "web", weight=lambda: 20.0, rps=5) as sim:
        yield sim


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_get_control_reports_settings_and_observed_weight(running_sim: TrafficSimulator) -> None:
    deadline = time.monotonic() + 10
    while running_sim.ticks < 2:
        assert time.monotonic() < deadline, "the simulator did not tick"
        time.sleep(0.05)
    status, state = http("GET", f"{running_sim.url}/control")
    assert status == 200
    assert state["rps"] == 5
    assert state["weight"] == 20
    assert state["source"] == "callable"
    assert state["canary"] == {
        "error_rate": 0.0, "latency_ms": 20.0, "jitter_ms": 5.0, "error_status": 500,
    }  # fmt: skip


def test_post_control_applies_a_partial_update(running_sim: TrafficSimulator) -> None:
    body = {"rps": 20, "canary": {"error_rate": 0.5, "latency_ms": 300}}
    status, state = http("POST", f"{running_sim.url}/control", json.dumps(body).encode())
    assert status == 200
    assert state["rps"] == 20
    assert state["canary"]["error_rate"] == 0.5
    assert state["canary"]["latency_ms"] == 300
    assert state["canary"]["jitter_ms"] == 5.0  # untouched
    assert state["stable"]["error_rate"] == 0.0
    assert running_sim.side("canary").latency_ms == 300


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"rps": -1}', "rps must be between 0"),
        (b'{"rps": "fast"}', "rps must be a number"),
        (b'{"rps": true}', "rps must be a number"),
        (b'{"canary": {"error_rate": 50}}', "canary.error_rate must be between 0 and 1"),
        (b'{"canary": {"error_status": 404}}', "5xx status"),
        (b'{"stable": {"latency": 5}}', "unknown field 'stable.latency'"),
        (b'{"canary": 0.5}', "canary must be an object"),
        (b'{"weight": 50}', "unknown field 'weight'"),
    ],
)
def test_post_control_rejects_bad_input_with_400(
    running_sim: TrafficSimulator, body: bytes, message: str
) -> None:
    status, answer = http("POST", f"{running_sim.url}/control", body)
    assert status == 400
    assert message in answer["error"]


def test_a_rejected_update_changes_nothing(running_sim: TrafficSimulator) -> None:
    body = {"rps": 50, "canary": {"error_rate": 2}}
    status, _ = http("POST", f"{running_sim.url}/control", json.dumps(body).encode())
    assert status == 400
    assert running_sim.rps == 5
    assert running_sim.side("canary").error_rate == 0


def test_python_api_validates_like_the_endpoint() -> None:
    sim = simulator(0)
    with pytest.raises(ControlError, match="error_rate"):
        sim.set_side("canary", error_rate=1.5)
    with pytest.raises(ControlError, match="side must be"):
        sim.set_side("primary", error_rate=0.1)  # type: ignore[arg-type]
    sim.set_rps(0)
    assert sim.rps == 0


def test_metrics_endpoint_serves_the_exposition(running_sim: TrafficSimulator) -> None:
    request = urllib.request.Request(f"{running_sim.url}/metrics")
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain")
        if "nginx_ingress_controller_requests{" in text:
            break
        assert time.monotonic() < deadline, "no requests exported after 10s at 5 rps"
        time.sleep(0.1)


def test_a_constant_weight_needs_no_callable() -> None:
    sim = TrafficSimulator("shop", "web", "web", weight=35, rps=100)
    sim.refresh_routing()
    sim.step(1.0)
    assert sim.current_weight == 35
    assert sum(sim.totals()["canary"].values()) == 35
