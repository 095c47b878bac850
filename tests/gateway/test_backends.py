"""The backend simulator answers for kwok's pods on their IPs and follows their lifecycle."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client as k8s

from sandbox.gateway.backends import image_version
from sandbox.gateway.dataplane import DataPlane
from tests.fixtures.gateway import BackendsFactory
from tests.gateway.helpers import create_app, wait_for

pytestmark = pytest.mark.cluster


def _get(url: str | urllib.request.Request) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    return _get(request)


def test_image_version() -> None:
    assert image_version("ghcr.io/stefanprodan/podinfo:6.0.3") == "6.0.3"
    assert image_version("localhost:5000/podinfo") == "latest"
    assert image_version("podinfo:6.1.0@sha256:abc") == "6.1.0"


def test_pods_are_served_on_their_ips_while_ready(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    backends: BackendsFactory,
) -> None:
    create_app(kube_api_client, namespace)
    sim = backends(namespace, {"web": "stable", "web-canary": "canary"})
    sim.wait_serving({"stable": 2, "canary": 1})
    pods = k8s.CoreV1Api(kube_api_client).list_namespaced_pod(namespace).items
    by_name = {p.metadata.name: p for p in pods}
    for address, pod_name in sim.serving().items():
        ip, port = address.split(":")
        assert ip == by_name[pod_name].status.pod_ip and port == "9898"
        status, body = _get(f"http://{address}/")
        expected = "6.0.1" if pod_name.startswith("web-canary") else "6.0.0"
        assert (status, body["hostname"], body["version"]) == (200, pod_name, expected)
    canary_address = next(a for a, p in sim.serving().items() if p.startswith("web-canary"))
    assert _get(f"http://{canary_address}/status/503")[0] == 503

    sim.set_side("canary", error_rate=0.5)
    statuses = [_get(f"http://{canary_address}/")[0] for _ in range(10)]
    assert statuses.count(500) == 5, statuses
    state = sim.state()["canary"]
    assert (state["requests"], state["errors"]) == (12, 6)

    k8s.AppsV1Api(kube_api_client).patch_namespaced_deployment_scale(
        "web", namespace, {"spec": {"replicas": 1}}
    )
    sim.wait_serving({"stable": 1, "canary": 1})
    k8s.AppsV1Api(kube_api_client).patch_namespaced_deployment_scale(
        "web", namespace, {"spec": {"replicas": 3}}
    )
    sim.wait_serving({"stable": 3, "canary": 1})
    wait_for(lambda: len(sim.serving()) == 4, "4 pods served")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"canary": {"error_rate": 2}}', "canary.error_rate must be between 0 and 1"),
        (b'{"canary": {"latency_ms": "slow"}}', "canary.latency_ms must be a number"),
        (b'{"canary": {"error_status": 200}}', "must be an integer 5xx status"),
        (b'{"mirror": {}}', "unknown field(s) ['mirror']"),
        (b'{"canary": {"colour": "red"}}', "unknown field 'canary.colour'"),
        (b"[1, 2]", "the update must be an object"),
        (b"{not json", "Expecting property name"),
    ],
)
def test_the_control_endpoint_refuses_bad_settings(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    backends: BackendsFactory,
    body: bytes,
    message: str,
) -> None:
    sim = backends(namespace, {"web": "stable"})
    status, answer = _post(sim.control_url, body)
    assert status == 400 and message in answer["error"], answer
    assert sim.state()["canary"]["settings"]["error_rate"] == 0.0
    status, answer = _post(sim.control_url, b'{"canary": {"error_rate": 0.25}}')
    assert status == 200 and answer["canary"]["settings"]["error_rate"] == 0.25
